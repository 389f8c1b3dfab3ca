/**
 * A scripted iSCSI target for the initiator's tests of what Linux tgt cannot show: COMPARE AND
 * WRITE (tgt 1.0.85 does not implement it), a status lost at an exact moment (after or before
 * the command took effect), a command that never gets an answer, a command window of one.
 *
 * Deliberately small and strict: AuthMethod=None, no digests, ImmediateData=Yes, InitialR2T=Yes,
 * one R2T for whatever the immediate data did not carry, Data-In in 8 KiB PDUs with the status
 * in the last one. One in-memory disk of 512-byte blocks, shared by every session.
 */
import net from 'node:net';
import { encodePdu, encodeText, F, DATA_IN, LOGIN, OP, parseText, Pdu, PduReader, R2T, RESERVED_TAG, SCSI_CMD, SCSI_RSP, TMF_RSP } from '../src/transport/index.js';

export type Fault = 'drop-before' | 'drop-after' | 'hold' | undefined;

export interface ScriptedTargetOptions {
  blocks: number;
  /** Decide the fate of each SCSI command (called with the CDB and the session number). */
  fault?: (cdb: Buffer, session: number) => Fault;
  /** Called after a command executed and before its status is dropped ('drop-after'). */
  afterDrop?: (cdb: Buffer) => void;
  /** The first command of every session after the first gets UNIT ATTENTION 29/00. */
  unitAttentionOnRelogin?: boolean;
  /** MaxCmdSN - ExpCmdSN + 1 (default 32). */
  window?: number;
}

const BS = 512;
const SEG = 8192;

function sense(key: number, asc: number, ascq: number, info?: number): Buffer {
  const s = Buffer.alloc(18);
  s[0] = 0x70 | (info !== undefined ? 0x80 : 0);
  s[2] = key;
  if (info !== undefined) s.writeUInt32BE(info, 3);
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}

export class ScriptedTarget {
  readonly disk: Buffer;
  port = 0;
  sessions = 0;
  readonly seen: number[] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly o: ScriptedTargetOptions;

  private constructor(o: ScriptedTargetOptions) {
    this.o = o;
    this.disk = Buffer.alloc(o.blocks * BS);
    this.server = net.createServer((s) => this.serve(s));
  }

  static async start(o: ScriptedTargetOptions): Promise<ScriptedTarget> {
    const t = new ScriptedTarget(o);
    await new Promise<void>((resolve) => t.server.listen(0, '127.0.0.1', resolve));
    t.port = (t.server.address() as net.AddressInfo).port;
    return t;
  }

  get portal(): string {
    return `127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => undefined);
    const session = ++this.sessions;
    let statSN = 100;
    let expCmdSN = 0;
    let ua = this.o.unitAttentionOnRelogin === true && session > 1;
    const window = this.o.window ?? 32;
    const pending = new Map<number, { cmd: Pdu; data: Buffer[]; got: number; edtl: number }>();
    const send = (p: Pdu, status = true): void => {
      if (status) p.setU32(F.STATSN, statSN++);
      p.setU32(F.EXPCMDSN, expCmdSN);
      p.setU32(F.MAXCMDSN, (expCmdSN + window - 1) >>> 0);
      sock.write(Buffer.concat(encodePdu(p, { headerDigest: false, dataDigest: false })));
    };
    const reader = new PduReader(
      { maxRecvDataSegmentLength: 262144, headerDigest: false, dataDigest: false },
      {
        onPdu: (p) => {
          switch (p.opcode) {
            case OP.LOGIN_REQUEST:
              return login(p);
            case OP.SCSI_COMMAND:
              return command(p);
            case OP.DATA_OUT:
              return dataOut(p);
            case OP.NOP_OUT:
              if (p.itt !== RESERVED_TAG) {
                const r = Pdu.create(OP.NOP_IN, { final: true });
                r.itt = p.itt;
                r.setU32(F.TTT, RESERVED_TAG);
                send(r);
              }
              return;
            case OP.TASK_MGMT_REQUEST: {
              const r = Pdu.create(OP.TASK_MGMT_RESPONSE, { final: true });
              r.itt = p.itt;
              r.setU8(TMF_RSP.RESPONSE, 0);
              send(r);
              return;
            }
            case OP.LOGOUT_REQUEST: {
              const r = Pdu.create(OP.LOGOUT_RESPONSE, { final: true });
              r.itt = p.itt;
              send(r);
              sock.end();
              return;
            }
            default:
              sock.destroy();
          }
        },
        onDataDigestError: () => sock.destroy(),
        onError: () => sock.destroy(),
      },
    );
    sock.on('data', (c: Buffer) => reader.push(c));

    const login = (p: Pdu): void => {
      const keys = parseText(p.data);
      const csg = (p.flags & LOGIN.CSG_MASK) >> LOGIN.CSG_SHIFT;
      const transit = (p.flags & LOGIN.FLAG_TRANSIT) !== 0;
      expCmdSN = p.u32(F.CMDSN);
      const r = Pdu.create(OP.LOGIN_RESPONSE);
      p.bhs.copy(r.bhs, LOGIN.ISID, LOGIN.ISID, LOGIN.ISID + LOGIN.ISID_BYTES);
      r.itt = p.itt;
      const answers: [string, string][] = [];
      if (csg === LOGIN.STAGE_SECURITY) {
        answers.push(['AuthMethod', 'None'], ['TargetPortalGroupTag', '1']);
        r.flags = (transit ? LOGIN.FLAG_TRANSIT | LOGIN.STAGE_OPERATIONAL : 0) | (csg << LOGIN.CSG_SHIFT);
      } else {
        for (const [k, v] of keys) {
          if (k === 'HeaderDigest' || k === 'DataDigest') answers.push([k, 'None']);
          else if (k === 'InitialR2T') answers.push([k, 'Yes']);
          else if (k === 'ImmediateData') answers.push([k, v]);
          else if (k === 'MaxRecvDataSegmentLength') continue;
          else answers.push([k, v]); // our answer equals the offer: within every result function
        }
        answers.push(['MaxRecvDataSegmentLength', String(SEG)]);
        r.flags = (transit ? LOGIN.FLAG_TRANSIT | LOGIN.STAGE_FULL_FEATURE : 0) | (csg << LOGIN.CSG_SHIFT);
        r.setU16(LOGIN.TSIH, session);
      }
      r.data = encodeText(answers);
      send(r);
    };

    const command = (p: Pdu): void => {
      if (!p.immediate) expCmdSN = (expCmdSN + 1) >>> 0;
      const edtl = p.u32(SCSI_CMD.EDTL);
      const write = (p.flags & SCSI_CMD.FLAG_WRITE) !== 0;
      if (write && p.data.length < edtl) {
        pending.set(p.itt, { cmd: p, data: [p.data], got: p.data.length, edtl });
        const r2t = Pdu.create(OP.R2T, { final: true });
        r2t.lun = p.lun;
        r2t.itt = p.itt;
        r2t.setU32(F.TTT, p.itt ^ 0x5a5a);
        r2t.setU32(R2T.BUFFER_OFFSET, p.data.length);
        r2t.setU32(R2T.DESIRED_LENGTH, edtl - p.data.length);
        send(r2t, false);
        return;
      }
      execute(p, write ? p.data : null);
    };

    const dataOut = (p: Pdu): void => {
      const w = pending.get(p.itt);
      if (!w) return;
      w.data.push(p.data);
      w.got += p.data.length;
      if (w.got >= w.edtl) {
        pending.delete(p.itt);
        execute(w.cmd, Buffer.concat(w.data));
      }
    };

    const respond = (cmd: Pdu, status: number, senseData: Buffer | null, dataIn: Buffer | null): void => {
      if (dataIn && status === 0) {
        const edtl = cmd.u32(SCSI_CMD.EDTL);
        const out = dataIn.subarray(0, edtl);
        for (let off = 0, sn = 0; off < out.length || sn === 0; sn++) {
          const n = Math.min(SEG, out.length - off);
          const d = Pdu.create(OP.DATA_IN);
          d.itt = cmd.itt;
          d.setU32(F.TTT, RESERVED_TAG);
          d.setU32(DATA_IN.DATASN, sn);
          d.setU32(DATA_IN.BUFFER_OFFSET, off);
          d.data = out.subarray(off, off + n);
          off += n;
          const last = off >= out.length;
          if (last) {
            d.flags = 0x80 | DATA_IN.FLAG_STATUS | (out.length < edtl ? DATA_IN.FLAG_UNDERFLOW : 0);
            d.setU32(DATA_IN.RESIDUAL, edtl - out.length);
          }
          send(d, last);
          if (last) break;
        }
        return;
      }
      const r = Pdu.create(OP.SCSI_RESPONSE, { final: true });
      r.itt = cmd.itt;
      r.setU8(SCSI_RSP.STATUS, status);
      if (senseData) {
        const seg = Buffer.alloc(2 + senseData.length);
        seg.writeUInt16BE(senseData.length, 0);
        senseData.copy(seg, 2);
        r.data = seg;
      }
      send(r);
    };

    const execute = (cmd: Pdu, data: Buffer | null): void => {
      const cdb = Buffer.from(cmd.bhs.subarray(SCSI_CMD.CDB, SCSI_CMD.CDB + 16));
      this.seen.push(cdb[0]!);
      const fault = this.o.fault?.(cdb, session);
      if (fault === 'drop-before') return void sock.destroy();
      if (fault === 'hold') return;
      if (ua && cdb[0] !== 0x12 && cdb[0] !== 0xa0) {
        ua = false;
        return respond(cmd, 2, sense(6, 0x29, 0), null);
      }
      const lba = Number(cdb.readBigUInt64BE(2));
      let status = 0;
      let senseData: Buffer | null = null;
      let dataIn: Buffer | null = null;
      switch (cdb[0]) {
        case 0x00:
        case 0x5f:
          break;
        case 0x9e: {
          dataIn = Buffer.alloc(32);
          dataIn.writeBigUInt64BE(BigInt(this.o.blocks - 1), 0);
          dataIn.writeUInt32BE(BS, 8);
          break;
        }
        case 0x88:
          dataIn = Buffer.from(this.disk.subarray(lba * BS, (lba + cdb.readUInt32BE(10)) * BS));
          break;
        case 0x8a:
          data!.copy(this.disk, lba * BS);
          break;
        case 0x89: {
          const n = cdb[13]! * BS;
          const cur = this.disk.subarray(lba * BS, lba * BS + n);
          const cmp = data!.subarray(0, n);
          let off = -1;
          for (let i = 0; i < n; i++) if (cur[i] !== cmp[i]) (off = i), (i = n);
          if (off >= 0) {
            status = 2;
            senseData = sense(0x0e, 0x1d, 0, off);
          } else data!.copy(this.disk, lba * BS, n);
          break;
        }
        default:
          status = 2;
          senseData = sense(5, 0x20, 0);
      }
      if (fault === 'drop-after') {
        this.o.afterDrop?.(cdb);
        return void sock.destroy();
      }
      respond(cmd, status, senseData, dataIn);
    };
  }
}
