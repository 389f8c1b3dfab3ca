/**
 * A hand-built iSCSI initiator for the target's tests: real TCP, real PDUs (transport's Pdu,
 * encodePdu, PduReader), and nothing else, so every byte the target sees is what the test wrote.
 * Also the target factory of the session tests (over the fake device of session-fake-device.ts).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { EsxError, silentLogger, type Logger } from '@esxemu/shared';
import { encodePdu, type DigestSettings } from '../src/transport/pdu-writer.js';
import { PduReader } from '../src/transport/pdu-reader.js';
import { F, LOGIN, SCSI_CMD, DATA_OUT, TMF_REQ, LOGOUT_REQ } from '../src/transport/fields.js';
import { OP } from '../src/transport/opcodes.js';
import { Pdu, RESERVED_TAG } from '../src/transport/pdu.js';
import { encodeText, parseText, type TextPairs } from '../src/transport/text.js';
import { FakeDevice } from './session-fake-device.js';
import { startIscsiTarget, type IscsiTarget } from '../src/target/target-server.js';
import { parseTargetConfig, type TargetConfig } from '../src/target/config.js';

export const TARGET = 'iqn.2026-11.io.esxemu:test';
export const INITIATOR = 'iqn.2026-11.io.esxemu:initiator1';

export class TestInitiator {
  readonly socket: net.Socket;
  private readonly reader: PduReader;
  private queue: Pdu[] = [];
  private waiters: ((p: Pdu | null) => void)[] = [];
  closed = false;
  digestErrors = 0;
  out: DigestSettings = { headerDigest: false, dataDigest: false };
  itt = 0x100;
  cmdSN = 1;
  expStatSN = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.reader = new PduReader(
      { maxRecvDataSegmentLength: 16 * 1024 * 1024, headerDigest: false, dataDigest: false },
      {
        onPdu: (p) => this.deliver(p),
        onDataDigestError: () => this.digestErrors++,
        onError: () => this.socket.destroy(),
      },
    );
    socket.on('data', (c: Buffer) => this.reader.push(c));
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters) w(null);
      this.waiters = [];
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<TestInitiator> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => resolve(new TestInitiator(s)));
      s.once('error', reject);
    });
  }

  private deliver(p: Pdu): void {
    if (p.opcode !== OP.DATA_IN || (p.flags & 0x01) !== 0) {
      const statSN = p.u32(F.STATSN);
      if (p.opcode !== OP.R2T && !(p.opcode === OP.NOP_IN && p.itt === RESERVED_TAG)) this.expStatSN = (statSN + 1) >>> 0;
    }
    const w = this.waiters.shift();
    if (w) w(p);
    else this.queue.push(p);
  }

  /** Apply digests to both directions (after the final Login Response). */
  useDigests(d: DigestSettings): void {
    this.out = d;
    this.reader.settings = { ...this.reader.settings, headerDigest: d.headerDigest, dataDigest: d.dataDigest };
  }

  send(...pdus: Pdu[]): void {
    for (const p of pdus) for (const part of encodePdu(p, this.out)) this.socket.write(part);
  }

  /** Raw bytes, for garbage tests. */
  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** The next PDU from the target, or null if the connection closed / nothing came in time. */
  next(timeoutMs = 3000): Promise<Pdu | null> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(null);
      }, timeoutMs);
      const w = (p: Pdu | null) => {
        clearTimeout(t);
        resolve(p);
      };
      this.waiters.push(w);
    });
  }

  async expect(opcode: number, timeoutMs = 3000): Promise<Pdu> {
    const p = await this.next(timeoutMs);
    if (!p) throw new Error(`expected ${opcode.toString(16)}, got nothing (closed=${this.closed})`);
    if (p.opcode !== opcode) throw new Error(`expected opcode 0x${opcode.toString(16)}, got ${p.toString()}`);
    return p;
  }

  /** Resolves true once the target has closed the connection (within the bound). */
  waitClosed(timeoutMs = 3000): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  nextItt(): number {
    return this.itt++;
  }

  // ---- PDU builders ----

  loginPdu(o: { csg: number; nsg: number; transit: boolean; cont?: boolean; pairs?: TextPairs; data?: Buffer; isid?: Buffer; tsih?: number; cid?: number; itt?: number; versionMin?: number }): Pdu {
    const p = Pdu.create(OP.LOGIN_REQUEST, { immediate: true });
    p.flags = (o.transit ? LOGIN.FLAG_TRANSIT : 0) | (o.cont ? LOGIN.FLAG_CONTINUE : 0) | (o.csg << LOGIN.CSG_SHIFT) | (o.transit ? o.nsg : 0);
    p.setU8(LOGIN.VERSION_MAX, 0);
    p.setU8(LOGIN.VERSION_MIN, o.versionMin ?? 0);
    (o.isid ?? ISID).copy(p.bhs, LOGIN.ISID);
    p.setU16(LOGIN.TSIH, o.tsih ?? 0);
    p.itt = o.itt ?? 0x1;
    p.setU16(LOGIN.CID, o.cid ?? 0);
    p.setU32(F.CMDSN, this.cmdSN);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    p.data = o.data ?? (o.pairs ? encodeText(o.pairs) : Buffer.alloc(0));
    return p;
  }

  /** Send one Login Request, return the response and its keys. */
  async loginStep(o: Parameters<TestInitiator['loginPdu']>[0]): Promise<{ pdu: Pdu; keys: Map<string, string>; status: number }> {
    this.send(this.loginPdu(o));
    const pdu = await this.expect(OP.LOGIN_RESPONSE);
    const status = (pdu.u8(LOGIN.STATUS_CLASS) << 8) | pdu.u8(LOGIN.STATUS_DETAIL);
    return { pdu, keys: new Map(parseText(pdu.data)), status };
  }

  /**
   * A whole login: security stage (AuthMethod, CHAP) when `chap` is given, then the operational
   * stage with `keys`. Returns the final response's keys and status.
   */
  async login(o: { initiatorName?: string; targetName?: string | null; discovery?: boolean; keys?: TextPairs; chap?: { user: string; secret: string; mutual?: { user: string; secret: string } }; isid?: Buffer }): Promise<{ status: number; keys: Map<string, string>; tsih: number; pdu: Pdu }> {
    const lead: TextPairs = [['InitiatorName', o.initiatorName ?? INITIATOR]];
    if (o.discovery) lead.push(['SessionType', 'Discovery']);
    else if (o.targetName !== null) lead.push(['TargetName', o.targetName ?? TARGET]);
    const isid = o.isid ?? ISID;
    let keys = new Map<string, string>();
    if (o.chap) {
      let r = await this.loginStep({ csg: 0, nsg: 1, transit: true, pairs: [...lead, ['AuthMethod', 'CHAP,None']], isid });
      if (r.status) return { status: r.status, keys: r.keys, tsih: 0, pdu: r.pdu };
      r = await this.loginStep({ csg: 0, nsg: 1, transit: false, pairs: [['CHAP_A', '5']], isid });
      if (r.status) return { status: r.status, keys: r.keys, tsih: 0, pdu: r.pdu };
      const id = Number(r.keys.get('CHAP_I'));
      const challenge = Buffer.from(r.keys.get('CHAP_C')!.slice(2), 'hex');
      const resp = createHash('md5').update(Buffer.from([id])).update(o.chap.secret).update(challenge).digest();
      const pairs: TextPairs = [['CHAP_N', o.chap.user], ['CHAP_R', `0x${resp.toString('hex')}`]];
      const myChallenge = Buffer.alloc(16, 0x5a);
      if (o.chap.mutual) pairs.push(['CHAP_I', '7'], ['CHAP_C', `0x${myChallenge.toString('hex')}`]);
      r = await this.loginStep({ csg: 0, nsg: 1, transit: true, pairs, isid });
      if (r.status) return { status: r.status, keys: r.keys, tsih: 0, pdu: r.pdu };
      if (o.chap.mutual) {
        const want = createHash('md5').update(Buffer.from([7])).update(o.chap.mutual.secret).update(myChallenge).digest();
        if (r.keys.get('CHAP_N') !== o.chap.mutual.user || r.keys.get('CHAP_R') !== `0x${want.toString('hex')}`) throw new Error('target failed mutual CHAP');
      }
      keys = r.keys;
      const r2 = await this.loginStep({ csg: 1, nsg: 3, transit: true, pairs: o.keys ?? [], isid });
      for (const [k, v] of r2.keys) keys.set(k, v);
      return { status: r2.status, keys, tsih: r2.pdu.u16(LOGIN.TSIH), pdu: r2.pdu };
    }
    const r = await this.loginStep({ csg: 1, nsg: 3, transit: true, pairs: [...lead, ...(o.keys ?? [])], isid });
    return { status: r.status, keys: r.keys, tsih: r.pdu.u16(LOGIN.TSIH), pdu: r.pdu };
  }

  scsiCommand(o: { cdb: number[] | Buffer; edtl: number; read?: boolean; write?: boolean; data?: Buffer; final?: boolean; lun?: number; itt?: number; cmdSN?: number; immediate?: boolean; attr?: number }): Pdu {
    const p = Pdu.create(OP.SCSI_COMMAND, { immediate: o.immediate ?? false });
    p.flags = (o.final === false ? 0 : 0x80) | (o.read ? SCSI_CMD.FLAG_READ : 0) | (o.write ? SCSI_CMD.FLAG_WRITE : 0) | (o.attr ?? 1);
    p.lun = o.lun ?? 0;
    p.itt = o.itt ?? this.nextItt();
    p.setU32(SCSI_CMD.EDTL, o.edtl);
    p.setU32(F.CMDSN, o.cmdSN ?? this.cmdSN);
    if (o.cmdSN === undefined && !o.immediate) this.cmdSN = (this.cmdSN + 1) >>> 0;
    p.setU32(F.EXPSTATSN, this.expStatSN);
    Buffer.from(o.cdb).copy(p.bhs, SCSI_CMD.CDB);
    if (o.data) p.data = o.data;
    return p;
  }

  dataOut(o: { itt: number; ttt: number; dataSN: number; offset: number; data: Buffer; final: boolean; lun?: number }): Pdu {
    const p = Pdu.create(OP.DATA_OUT);
    p.flags = o.final ? 0x80 : 0;
    p.lun = o.lun ?? 0;
    p.itt = o.itt;
    p.setU32(F.TTT, o.ttt);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    p.setU32(DATA_OUT.DATASN, o.dataSN);
    p.setU32(DATA_OUT.BUFFER_OFFSET, o.offset);
    p.data = o.data;
    return p;
  }

  nopOut(o: { itt?: number; ttt?: number; data?: Buffer; immediate?: boolean } = {}): Pdu {
    const p = Pdu.create(OP.NOP_OUT, { immediate: o.immediate ?? true, final: true });
    p.itt = o.itt ?? this.nextItt();
    p.setU32(F.TTT, o.ttt ?? RESERVED_TAG);
    p.setU32(F.CMDSN, this.cmdSN);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    if (o.data) p.data = o.data;
    return p;
  }

  textRequest(o: { pairs: TextPairs; itt?: number; ttt?: number; final?: boolean; cont?: boolean }): Pdu {
    const p = Pdu.create(OP.TEXT_REQUEST, { immediate: true });
    p.flags = (o.final === false ? 0 : 0x80) | (o.cont ? 0x40 : 0);
    p.itt = o.itt ?? this.nextItt();
    p.setU32(F.TTT, o.ttt ?? RESERVED_TAG);
    p.setU32(F.CMDSN, this.cmdSN);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    p.data = encodeText(o.pairs);
    return p;
  }

  tmf(o: { fn: number; lun?: number; rtt?: number; refCmdSN?: number }): Pdu {
    const p = Pdu.create(OP.TASK_MGMT_REQUEST, { immediate: true });
    p.flags = 0x80 | o.fn;
    p.lun = o.lun ?? 0;
    p.itt = this.nextItt();
    p.setU32(TMF_REQ.REFERENCED_TASK_TAG, o.rtt ?? RESERVED_TAG);
    p.setU32(F.CMDSN, this.cmdSN);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    p.setU32(TMF_REQ.REFCMDSN, o.refCmdSN ?? 0);
    return p;
  }

  logout(reason: number = LOGOUT_REQ.CLOSE_SESSION, cid = 0): Pdu {
    const p = Pdu.create(OP.LOGOUT_REQUEST, { immediate: true });
    p.flags = 0x80 | reason;
    p.itt = this.nextItt();
    p.setU16(LOGOUT_REQ.CID, cid);
    p.setU32(F.CMDSN, this.cmdSN);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    return p;
  }
}

export { FakeDevice, SLOW_OPCODE } from './session-fake-device.js';

export const ISID = Buffer.from([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);

export function cdbRead10(lba: number, blocks: number): number[] {
  return [0x28, 0, (lba >>> 24) & 0xff, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0, (blocks >> 8) & 0xff, blocks & 0xff, 0];
}

export function cdbWrite10(lba: number, blocks: number): number[] {
  return [0x2a, 0, (lba >>> 24) & 0xff, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0, (blocks >> 8) & 0xff, blocks & 0xff, 0];
}

export interface TestTarget {
  target: IscsiTarget;
  device: FakeDevice;
  port: number;
}

/** A target process over the fake device, on an ephemeral port. `json` extends the config. */
export async function startTestTarget(json: Record<string, unknown> = {}, o: { logger?: Logger; session?: Record<string, unknown>; limits?: Partial<TargetConfig['limits']>; extraTargets?: Record<string, unknown>[] } = {}): Promise<TestTarget> {
  const device = new FakeDevice();
  const config = parseTargetConfig({
    targets: [{ name: TARGET, alias: 'test', luns: [{ lun: 0, memory: true, size: 1 }], ...json }, ...(o.extraTargets ?? []).map((x) => ({ luns: [{ lun: 0, memory: true, size: 1 }], ...x }))],
    ...(o.session ? { session: o.session } : {}),
  });
  Object.assign(config.limits, o.limits ?? {});
  const target = await startIscsiTarget({
    listenHost: '127.0.0.1',
    port: 0,
    logger: o.logger ?? silentLogger(),
    config,
    closeGraceMs: 100,
    deviceFactory: async () => ({ device, close: async () => undefined }),
  });
  return { target, device, port: target.port };
}

/** Connect and log in to the test target; returns the peer in full feature phase. */
export async function loggedIn(port: number, keys: TextPairs = [], opts: { initiatorName?: string; isid?: Buffer } = {}): Promise<TestInitiator> {
  const peer = await TestInitiator.connect(port);
  const r = await peer.login({ keys, ...(opts.initiatorName ? { initiatorName: opts.initiatorName } : {}), ...(opts.isid ? { isid: opts.isid } : {}) });
  if (r.status !== 0) throw new EsxError('INTERNAL', `login failed with status 0x${r.status.toString(16)}`);
  const hd = r.keys.get('HeaderDigest') === 'CRC32C';
  const dd = r.keys.get('DataDigest') === 'CRC32C';
  peer.useDigests({ headerDigest: hd, dataDigest: dd });
  return peer;
}
