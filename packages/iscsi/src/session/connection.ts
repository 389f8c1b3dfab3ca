/**
 * One iSCSI connection on the target: the socket, the PDU reader, the login state machine, then
 * the full feature phase of its session.
 *
 *   login --final Login Response--> fullFeature --Logout--> loggingOut --> closed
 *     |                                 |
 *     +--login failure / timeout--------+--peer gone / framing error / exception / NOP timeout--> closed
 *
 * Output: every target PDU goes through `send`, which stamps StatSN, ExpCmdSN and MaxCmdSN in
 * sending order and applies the negotiated digests. When more than `maxOutputBytes` wait in the
 * socket, the connection stops reading from the initiator and further sends wait for 'drain'
 * (backpressure both ways, memory bounded).
 *
 * Robustness: any exception while handling a PDU closes this connection (with a log line) and
 * nothing else; framing errors (header digest, oversized segment) close it too, as ERL 0 offers
 * no way to resynchronize.
 */
import { randomInt } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Logger } from '@esxemu/shared';
import { toEsxError } from '@esxemu/shared';
import { F } from '../transport/fields.js';
import { LOGIN_STATUS, OP } from '../transport/opcodes.js';
import type { Pdu } from '../transport/pdu.js';
import { PduReader } from '../transport/pdu-reader.js';
import { writePdus, type DigestSettings } from '../transport/pdu-writer.js';
import { RESERVED_TAG } from '../transport/pdu.js';
import { formatPortal } from './discovery.js';
import { dispatchFullFeature, onDigestError } from './dispatch.js';
import type { SessionLimits } from './limits.js';
import { LOGIN_MAX_DATA_SEGMENT, LoginMachine, type EstablishOutcome, type LoginResult } from './login.js';
import type { TargetKeySettings } from './negotiation.js';
import { Keepalive, nopInPing } from './nop.js';
import type { OutPdu } from './outbound.js';
import { rejectPdu, rejectReasonName } from './reject.js';
import { Session, type SessionConnection } from './session.js';
import type { SessionRegistry } from './session-registry.js';
import type { TargetDirectory } from './target-node.js';
import { TextExchange } from './text-exchange.js';

export interface ConnectionEnv {
  directory: TargetDirectory;
  registry: SessionRegistry;
  settings: TargetKeySettings;
  limits: SessionLimits;
  log: Logger;
  random?: (n: number) => Buffer;
  onClosed?(conn: Connection): void;
}

export type ConnectionState = 'login' | 'fullFeature' | 'loggingOut' | 'closed';

let connectionSerial = 0;

export class Connection implements SessionConnection {
  readonly id = ++connectionSerial;
  readonly env: ConnectionEnv;
  readonly log: Logger;
  readonly socket: Socket;
  readonly peer: string;
  readonly localPortal: string;
  readonly text = new TextExchange();
  readonly keepalive: Keepalive;
  cid = 0;
  session: Session | null = null;
  private st: ConnectionState = 'login';
  private readonly reader: PduReader;
  private readonly login: LoginMachine;
  private statSN: number;
  private digests: DigestSettings = { headerDigest: false, dataDigest: false };
  private tag = randomInt(1, 0x10000);
  private congested = false;
  private waiting: { items: OutPdu[]; resolve: () => void }[] = [];
  /** PDUs stamped and waiting for this turn's write (see writeBatch). */
  private batch: Pdu[] = [];
  private batchScheduled = false;
  private loginTimer: NodeJS.Timeout | null;
  private closeTimer: NodeJS.Timeout | null = null;

  constructor(socket: Socket, env: ConnectionEnv) {
    this.socket = socket;
    this.env = env;
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.localPortal = formatPortal(socket.localAddress ?? '127.0.0.1', socket.localPort ?? 3260);
    this.log = env.log.child({ conn: this.id, peer: this.peer });
    this.statSN = randomInt(1, 0x1000000);
    socket.setNoDelay(true);
    this.reader = new PduReader(
      { maxRecvDataSegmentLength: LOGIN_MAX_DATA_SEGMENT, headerDigest: false, dataDigest: false },
      {
        onPdu: (pdu) => this.guard(pdu, () => this.onPdu(pdu)),
        onDataDigestError: (pdu) => this.guard(pdu, () => this.onDataDigestError(pdu)),
        onError: (err) => this.close(`framing error: ${err.message}`, { level: 'warn' }),
      },
    );
    this.login = new LoginMachine({
      directory: env.directory,
      settings: env.settings,
      queueDepth: env.limits.queueDepth,
      maxLoginPdus: env.limits.maxLoginPdus,
      log: this.log,
      nextStatSN: () => this.takeStatSN(),
      establish: (r) => this.establish(r),
      ...(env.random ? { random: env.random } : {}),
    });
    this.keepalive = new Keepalive(env.limits.nopIntervalMs, env.limits.nopTimeoutMs, {
      newTag: () => this.newTag(),
      ping: (ttt) => void this.send([nopInPing(ttt)]),
      dead: (why) => this.close(why, { level: 'warn' }),
      onTransition: (from, to) => this.log.debug({ from, to }, 'keepalive state'),
    });
    this.loginTimer = setTimeout(() => {
      if (this.st !== 'login') return;
      const rsp = this.login.failNow(LOGIN_STATUS.TARGET_ERROR, `login not complete within ${env.limits.loginTimeoutMs} ms`);
      if (rsp) this.writeRaw([rsp]);
      this.close(`login timed out after ${env.limits.loginTimeoutMs} ms`, { level: 'warn', graceful: true });
    }, env.limits.loginTimeoutMs);
    this.loginTimer.unref();
    socket.on('data', (chunk: Buffer) => this.reader.push(chunk));
    socket.on('drain', () => this.flush());
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.close('connection closed by the peer', { level: 'debug' }));
    this.log.info('initiator connected');
  }

  get state(): ConnectionState {
    return this.st;
  }

  get settings(): TargetKeySettings {
    return this.env.settings;
  }

  private transition(next: ConnectionState, why: string, level: 'info' | 'debug' | 'warn' = 'debug'): void {
    this.log[level]({ from: this.st, to: next, why }, 'connection state');
    this.st = next;
  }

  private takeStatSN(): number {
    const s = this.statSN;
    this.statSN = (this.statSN + 1) >>> 0;
    return s;
  }

  newTag(): number {
    this.tag = (this.tag + 1) >>> 0;
    if (this.tag === RESERVED_TAG || this.tag === 0) this.tag = 1;
    return this.tag;
  }

  /** Run a PDU handler; an exception closes this connection and nothing else. */
  private guard(pdu: Pdu, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.fail(err, pdu);
    }
  }

  /** An unexpected error while serving this connection: log it and close the connection. */
  fail(err: unknown, pdu?: Pdu): void {
    const e = toEsxError(err);
    this.log.error({ err: e.message, stack: (err as Error)?.stack, pdu: pdu?.toString() }, 'error while handling a PDU; closing the connection');
    this.close(`internal error: ${e.message}`, { level: 'warn' });
  }

  private onPdu(pdu: Pdu): void {
    this.keepalive.activity();
    switch (this.st) {
      case 'login':
        return this.onLoginPdu(pdu);
      case 'fullFeature':
        return dispatchFullFeature(this, this.session!, pdu);
      case 'loggingOut':
        this.log.debug({ pdu: pdu.toString() }, 'PDU after Logout ignored');
        return;
      case 'closed':
        return;
    }
  }

  private onLoginPdu(pdu: Pdu): void {
    if (pdu.opcode !== OP.LOGIN_REQUEST) {
      this.close(`${pdu.opcodeName} before the login completed`, { level: 'warn' });
      return;
    }
    const step = this.login.step(pdu);
    switch (step.kind) {
      case 'respond':
        this.writeRaw([step.pdu]);
        return;
      case 'fail':
        this.log.warn({ status: `0x${step.status.toString(16).padStart(4, '0')}`, reason: step.reason }, 'login failed');
        this.writeRaw([step.pdu]);
        this.close(`login failed: ${step.reason}`, { graceful: true });
        return;
      case 'complete': {
        // The final Login Response goes out without digests; everything after uses them.
        this.writeRaw([step.pdu]);
        const p = step.result.params;
        this.digests = { headerDigest: p.headerDigest, dataDigest: p.dataDigest };
        this.reader.settings = { maxRecvDataSegmentLength: p.targetMaxRecvDataSegmentLength, headerDigest: p.headerDigest, dataDigest: p.dataDigest };
        if (this.loginTimer) clearTimeout(this.loginTimer);
        this.loginTimer = null;
        this.transition('fullFeature', `login complete, TSIH ${step.tsih}`, 'info');
        this.session!.open();
        this.keepalive.start();
        return;
      }
    }
  }

  private onDataDigestError(pdu: Pdu): void {
    this.keepalive.activity();
    if (this.st !== 'fullFeature') {
      this.close(`data digest error on ${pdu.opcodeName} outside full feature phase`, { level: 'warn' });
      return;
    }
    onDigestError(this, this.session!, pdu);
  }

  /**
   * Login: the session for this connection (RFC 7143 6.3.5). TSIH 0: a new session, closing any
   * session with the same InitiatorName, ISID and target first (session reinstatement). TSIH set:
   * adding a connection, which MaxConnections=1 never allows.
   */
  private establish(r: LoginResult): EstablishOutcome {
    const reg = this.env.registry;
    if (r.requestTsih !== 0) {
      const s = reg.get(r.requestTsih);
      if (!s || s.initiatorName !== r.initiatorName || !s.isid.equals(r.isid)) return { ok: false, status: LOGIN_STATUS.SESSION_DOES_NOT_EXIST, reason: `no session with TSIH ${r.requestTsih} for this initiator` };
      return { ok: false, status: LOGIN_STATUS.TOO_MANY_CONNECTIONS, reason: `session ${r.requestTsih} already has its one connection (MaxConnections=1)` };
    }
    const old = reg.findByIdentity(r.initiatorName, r.isid, r.target?.name ?? null);
    if (old) {
      this.log.info({ tsih: old.tsih }, 'session reinstatement: closing the previous session with the same ISID');
      old.close('reinstated by a new login with the same ISID');
    }
    const tsih = reg.allocateTsih();
    if (tsih === null) return { ok: false, status: LOGIN_STATUS.OUT_OF_RESOURCES, reason: `the target already serves ${reg.size} sessions` };
    const session = new Session({
      tsih,
      isid: r.isid,
      initiatorName: r.initiatorName,
      ...(r.initiatorAlias !== undefined ? { initiatorAlias: r.initiatorAlias } : {}),
      kind: r.sessionType,
      target: r.target,
      params: { ...r.params },
      cmdSN: r.cmdSN,
      limits: this.env.limits,
      log: this.env.log,
      onClosed: (s) => reg.remove(s),
    });
    session.connection = this;
    reg.add(session);
    this.session = session;
    this.cid = r.cid;
    return { ok: true, tsih };
  }

  /** Write already-complete PDUs (login phase: no stamping, no digests). */
  private writeRaw(pdus: Pdu[]): void {
    if (this.st === 'closed' || this.socket.destroyed) return;
    writePdus(this.socket, pdus, { headerDigest: false, dataDigest: false });
  }

  /** Send target PDUs in order; resolves once they are handed to the socket (or dropped on close). */
  send(items: OutPdu[]): Promise<void> {
    if (this.st === 'closed' || this.socket.destroyed) return Promise.resolve();
    if (this.congested || this.waiting.length > 0) return new Promise((resolve) => this.waiting.push({ items, resolve }));
    this.writeItems(items);
    return Promise.resolve();
  }

  private writeItems(items: OutPdu[]): void {
    const s = this.session;
    for (const o of items) {
      if (o.statSN === 'advance') o.pdu.setU32(F.STATSN, this.takeStatSN());
      else if (o.statSN === 'peek') o.pdu.setU32(F.STATSN, this.statSN);
      if (s) {
        o.pdu.setU32(F.EXPCMDSN, s.window.expCmdSN);
        o.pdu.setU32(F.MAXCMDSN, s.maxCmdSN());
      }
      this.batch.push(o.pdu);
    }
    if (!this.batchScheduled) {
      this.batchScheduled = true;
      setImmediate(() => this.writeBatch());
    }
  }

  /**
   * Write every PDU stamped during this turn of the event loop in one corked batch: responses
   * that complete together (backstore reads finishing in the same poll phase) leave in one
   * writev instead of one system call each.
   */
  private writeBatch(): void {
    this.batchScheduled = false;
    if (this.batch.length === 0) return;
    const pdus = this.batch;
    this.batch = [];
    if (this.socket.destroyed || this.socket.writableEnded) return;
    writePdus(this.socket, pdus, this.digests);
    if (this.socket.writableLength > this.env.limits.maxOutputBytes && !this.congested) {
      this.congested = true;
      this.socket.pause();
    }
  }

  private flush(): void {
    this.congested = false;
    while (this.waiting.length > 0 && !this.congested) {
      const w = this.waiting.shift()!;
      if (this.st !== 'closed') this.writeItems(w.items);
      w.resolve();
    }
    if (!this.congested && this.st !== 'closed') this.socket.resume();
  }

  /** Answer a PDU with a Reject. */
  reject(reason: number, pdu: Pdu, why: string): void {
    this.log.warn({ reason: rejectReasonName(reason), pdu: pdu.toString(), why }, 'Reject');
    void this.send([rejectPdu(reason, pdu)]);
  }

  /** Stop accepting PDUs: a Logout is being answered. */
  beginLogout(): void {
    if (this.st === 'fullFeature') this.transition('loggingOut', 'Logout Request', 'info');
  }

  /**
   * Close the connection (idempotent). graceful: let what was written reach the peer (FIN after
   * the data), bounded by a timer; otherwise reset now. The session goes with it (ERL 0).
   */
  close(reason: string, o: { graceful?: boolean; level?: 'debug' | 'info' | 'warn' } = {}): void {
    if (this.st === 'closed') return;
    this.transition('closed', reason, o.level ?? 'info');
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
    this.keepalive.stop();
    this.reader.destroy();
    for (const w of this.waiting) w.resolve();
    this.waiting = [];
    const session = this.session;
    this.session = null;
    if (session) {
      session.connection = null;
      session.close(reason);
    }
    if (o.graceful && !this.socket.destroyed) {
      this.writeBatch();
      // Flush what is queued (a final Login or Logout Response), then FIN; never wait forever.
      this.socket.end();
      this.closeTimer = setTimeout(() => this.socket.destroy(), 5000);
      this.closeTimer.unref();
      this.socket.once('close', () => this.closeTimer && clearTimeout(this.closeTimer));
    } else {
      this.socket.destroy();
    }
    this.env.onClosed?.(this);
  }
}
