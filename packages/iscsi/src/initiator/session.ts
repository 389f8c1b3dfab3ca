/**
 * A normal session in the full-feature phase over one TCP connection (RFC 7143, ErrorRecovery
 * Level 0): it takes commands from the shared CommandQueue while the target's CmdSN window and
 * our queue depth allow, tracks them by Initiator Task Tag, reassembles Data-In, answers R2Ts
 * with Data-Out, completes them on SCSI Response (or Data-In with status), answers the target's
 * NOP-In pings and pings the target itself when the connection is quiet, and runs task
 * management and logout.
 *
 *   FULL_FEATURE --async logout request--> DRAINING --inflight empty / bound--> LOGGING_OUT
 *   FULL_FEATURE --logout()-------------------------------------------------> LOGGING_OUT
 *   any --connection lost / protocol error / ping timeout / logout done--> DOWN
 *
 * On DOWN the session hands every command whose status it did not receive to `onDown`, in the
 * order they were sent; recovery decides what to do with them. It never retries by itself.
 */
import { EsxError, type Logger } from '@esxemu/shared';
import { ASYNC, DATA_IN, F, LOGOUT_REQ, LOGOUT_RSP, OP, Pdu, R2T, REJECT, RESERVED_TAG, SCSI_RSP, snAdd, snLessThan, TMF_RSP } from '../transport/index.js';
import { CmdWindow } from './cmd-window.js';
import type { CommandQueue } from './command-queue.js';
import type { IscsiConnection } from './connection.js';
import { DataInAssembler, type DataInStatus } from './data-in.js';
import { commandPdus, dataOutSequence } from './data-out.js';
import type { LoginResult } from './login.js';
import type { SessionParams } from './params.js';
import type { Task } from './task.js';
import { tmfRequest, tmfResponseName, type InitiatorTmf } from './task-management.js';
import { TMF_RESPONSE } from '../scsi/types.js';

export interface SessionOptions {
  log: Logger;
  queue: CommandQueue;
  /** Commands on the wire at once (also bounded by the target's window). */
  queueDepth: number;
  /** Ping the target after this long without receiving anything. */
  nopIntervalMs: number;
  /** ...and drop the connection if the ping is not answered within this. */
  nopTimeoutMs: number;
  /** Bound on a task management or logout response. */
  requestTimeoutMs: number;
  /** The session ended; `unacknowledged` are the commands sent whose status never came. */
  onDown(reason: EsxError, unacknowledged: Task[]): void;
}

export type SessionState = 'FULL_FEATURE' | 'DRAINING' | 'LOGGING_OUT' | 'DOWN';

interface Waiter {
  opcode: number;
  resolve(pdu: Pdu): void;
  reject(err: EsxError): void;
  timer: NodeJS.Timeout;
}

/** Recently aborted ITTs whose late PDUs are dropped quietly (bounded). */
const MAX_RECENTLY_ABORTED = 256;

export class IscsiSession {
  state: SessionState = 'FULL_FEATURE';
  readonly params: SessionParams;
  readonly tsih: number;
  readonly conn: IscsiConnection;
  private readonly o: SessionOptions;
  private readonly log: Logger;
  private readonly window: CmdWindow;
  private expStatSN: number;
  private readonly inflight = new Map<number, Task>();
  private readonly waiters = new Map<number, Waiter>();
  private readonly recentlyAborted = new Set<number>();
  private nextItt = 1;
  private ping: { itt: number; sentAtMs: number } | null = null;
  private readonly tick: NodeJS.Timeout;
  private drainDeadlineMs = 0;
  /** Counters, for stats and tests. */
  readonly stats = { commands: 0, maxInflight: 0, r2ts: 0, dataOutPdus: 0, dataInPdus: 0, nopInAnswered: 0, pings: 0, windowWaits: 0 };

  constructor(conn: IscsiConnection, login: LoginResult, o: SessionOptions) {
    this.conn = conn;
    this.o = o;
    this.log = o.log;
    this.params = login.params;
    this.tsih = login.tsih;
    this.window = new CmdWindow(login.cmdSN, login.expCmdSN, login.maxCmdSN);
    this.expStatSN = login.expStatSN;
    // One timer per session checks pings and command timeouts (250 ms granularity at most).
    const tickMs = Math.max(20, Math.min(250, Math.floor(Math.min(o.nopIntervalMs, o.nopTimeoutMs) / 4)));
    this.tick = setInterval(() => this.onTick(), tickMs);
    this.tick.unref();
    conn.setHandler({ onPdu: (pdu) => this.onPdu(pdu), onClose: (reason) => this.die(reason) });
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  get windowState(): { cmdSN: number; expCmdSN: number; maxCmdSN: number } {
    return { cmdSN: this.window.cmdSN, expCmdSN: this.window.expCmdSN, maxCmdSN: this.window.maxCmdSN };
  }

  private setState(next: SessionState, why: string): void {
    if (this.state === next) return;
    this.log.info({ from: this.state, to: next, why }, 'iscsi session: state');
    this.state = next;
  }

  // ---- sending commands -------------------------------------------------------------------

  /** Send queued commands while the window and the queue depth allow. */
  pump(): void {
    while (this.state === 'FULL_FEATURE' && this.o.queue.length > 0) {
      if (this.inflight.size >= this.o.queueDepth) return;
      if (!this.window.open) {
        this.stats.windowWaits++;
        this.log.debug(this.windowState, 'iscsi session: command window closed; commands wait');
        return;
      }
      this.send(this.o.queue.shift()!);
    }
  }

  private send(task: Task): void {
    task.state = 'inflight';
    task.attempts++;
    task.itt = this.allocItt();
    task.cmdSN = this.window.take();
    task.sentAtMs = Date.now();
    task.recoveryDeadlineMs = 0;
    task.dataIn = task.spec.expectedLength > 0 ? new DataInAssembler(task.spec.expectedLength) : null;
    this.inflight.set(task.itt, task);
    this.stats.commands++;
    if (this.inflight.size > this.stats.maxInflight) this.stats.maxInflight = this.inflight.size;
    const pdus = commandPdus(task, this.params, { itt: task.itt, cmdSN: task.cmdSN, expStatSN: this.expStatSN });
    this.stats.dataOutPdus += pdus.length - 1;
    this.log.trace({ task: task.id, itt: task.itt, cmdSN: task.cmdSN, attempt: task.attempts }, 'iscsi session: command sent');
    this.conn.send(pdus);
  }

  private allocItt(): number {
    for (;;) {
      const itt = this.nextItt;
      this.nextItt = snAdd(this.nextItt, 1);
      if (this.nextItt === RESERVED_TAG) this.nextItt = 1;
      if (!this.inflight.has(itt) && !this.waiters.has(itt) && this.ping?.itt !== itt) return itt;
    }
  }

  // ---- receiving ----------------------------------------------------------------------------

  private onPdu(pdu: Pdu): void {
    if (this.state === 'DOWN') return;
    try {
      this.numbers(pdu);
      switch (pdu.opcode) {
        case OP.DATA_IN:
          this.onDataIn(pdu);
          break;
        case OP.SCSI_RESPONSE:
          this.onScsiResponse(pdu);
          break;
        case OP.R2T:
          this.onR2T(pdu);
          break;
        case OP.NOP_IN:
          this.onNopIn(pdu);
          break;
        case OP.TASK_MGMT_RESPONSE:
        case OP.LOGOUT_RESPONSE:
        case OP.TEXT_RESPONSE:
          this.onWaiterResponse(pdu);
          break;
        case OP.ASYNC_MESSAGE:
          this.onAsync(pdu);
          break;
        case OP.REJECT:
          this.onReject(pdu);
          break;
        default:
          throw new EsxError('PROTOCOL_ERROR', `target sent ${pdu.opcodeName} in the full-feature phase`, { reason: 'UNEXPECTED_PDU' });
      }
    } catch (err) {
      const e = err instanceof EsxError ? err : new EsxError('INTERNAL', String(err));
      this.log.warn({ err: e.message, reason: e.details?.['reason'], pdu: pdu.toString() }, 'iscsi session: protocol error; dropping the connection');
      this.die(e);
      return;
    }
    this.pump();
    this.maybeFinishDrain();
  }

  /** ExpCmdSN/MaxCmdSN from every target PDU, StatSN from the ones that carry a status. */
  private numbers(pdu: Pdu): void {
    this.window.update(pdu.u32(F.EXPCMDSN), pdu.u32(F.MAXCMDSN));
    const op = pdu.opcode;
    const carriesStatus =
      op === OP.SCSI_RESPONSE ||
      (op === OP.DATA_IN && (pdu.flags & DATA_IN.FLAG_STATUS) !== 0) ||
      (op === OP.NOP_IN && pdu.itt !== RESERVED_TAG) ||
      op === OP.TASK_MGMT_RESPONSE ||
      op === OP.LOGOUT_RESPONSE ||
      op === OP.TEXT_RESPONSE ||
      op === OP.REJECT ||
      op === OP.ASYNC_MESSAGE;
    if (carriesStatus) {
      const next = snAdd(pdu.u32(F.STATSN), 1);
      if (snLessThan(this.expStatSN, next)) this.expStatSN = next;
    }
  }

  /** The task a target PDU refers to, or null for a late PDU of an aborted task. */
  private taskFor(pdu: Pdu): Task | null {
    const task = this.inflight.get(pdu.itt);
    if (task) return task;
    if (this.recentlyAborted.has(pdu.itt)) return null;
    throw new EsxError('PROTOCOL_ERROR', `${pdu.opcodeName} for unknown ITT 0x${pdu.itt.toString(16)}`, { reason: 'UNKNOWN_ITT' });
  }

  private onDataIn(pdu: Pdu): void {
    this.stats.dataInPdus++;
    const task = this.taskFor(pdu);
    if (!task) return;
    if (!task.dataIn) throw new EsxError('PROTOCOL_ERROR', `Data-In for ${task.describe}, which reads nothing`, { reason: 'UNEXPECTED_DATA_IN' });
    const status = task.dataIn.accept(pdu);
    if (status) this.finish(task, status, null);
  }

  private onScsiResponse(pdu: Pdu): void {
    const task = this.taskFor(pdu);
    if (!task) return;
    const response = pdu.u8(SCSI_RSP.RESPONSE);
    if (response !== SCSI_RSP.COMMAND_COMPLETED) {
      this.forget(task);
      task.fail(new EsxError('INTERNAL', `target failed ${task.describe} (iSCSI response 0x${response.toString(16)})`, { reason: 'TARGET_FAILURE', iscsiResponse: response }));
      return;
    }
    const flags = pdu.flags;
    let sense: Buffer | null = null;
    if (pdu.data.length >= 2) {
      const senseLength = pdu.data.readUInt16BE(0);
      if (2 + senseLength > pdu.data.length) throw new EsxError('PROTOCOL_ERROR', `SCSI Response SenseLength ${senseLength} exceeds its data segment`, { reason: 'BAD_SENSE_LENGTH' });
      if (senseLength > 0) sense = Buffer.from(pdu.data.subarray(2, 2 + senseLength));
    }
    this.finish(
      task,
      {
        status: pdu.u8(SCSI_RSP.STATUS),
        underflow: (flags & SCSI_RSP.FLAG_UNDERFLOW) !== 0,
        overflow: (flags & SCSI_RSP.FLAG_OVERFLOW) !== 0,
        residual: pdu.u32(SCSI_RSP.RESIDUAL),
      },
      sense,
    );
  }

  private finish(task: Task, st: DataInStatus, sense: Buffer | null): void {
    this.forget(task);
    const data = task.dataIn ? task.dataIn.data() : null;
    task.complete({ status: st.status, data, sense, residual: st.residual, underflow: st.underflow, overflow: st.overflow });
  }

  private forget(task: Task): void {
    this.inflight.delete(task.itt);
  }

  private onR2T(pdu: Pdu): void {
    const task = this.taskFor(pdu);
    if (!task) return;
    const data = task.spec.dataOut;
    const offset = pdu.u32(R2T.BUFFER_OFFSET);
    const length = pdu.u32(R2T.DESIRED_LENGTH);
    if (!data) throw new EsxError('PROTOCOL_ERROR', `R2T for ${task.describe}, which writes nothing`, { reason: 'UNEXPECTED_R2T' });
    if (length === 0 || offset + length > data.length) throw new EsxError('PROTOCOL_ERROR', `R2T for ${length} bytes at ${offset} outside the ${data.length}-byte write`, { reason: 'BAD_R2T' });
    if (length > this.params.maxBurstLength) throw new EsxError('PROTOCOL_ERROR', `R2T for ${length} bytes exceeds MaxBurstLength ${this.params.maxBurstLength}`, { reason: 'BAD_R2T' });
    // A target cannot need more R2Ts than bursts of 512 bytes (the smallest MaxBurstLength).
    if (++task.r2tCount > Math.ceil(data.length / 512) + 8) throw new EsxError('PROTOCOL_ERROR', `too many R2Ts for ${task.describe}`, { reason: 'BAD_R2T' });
    this.stats.r2ts++;
    const pdus = dataOutSequence(task, this.params, task.spec.lun, task.itt, pdu.u32(F.TTT), offset, length, this.expStatSN);
    this.stats.dataOutPdus += pdus.length;
    this.conn.send(pdus);
  }

  private onNopIn(pdu: Pdu): void {
    if (pdu.itt !== RESERVED_TAG) {
      if (this.ping?.itt === pdu.itt) this.ping = null;
      return;
    }
    const ttt = pdu.u32(F.TTT);
    if (ttt === RESERVED_TAG) return; // no answer wanted
    const out = Pdu.create(OP.NOP_OUT, { immediate: true, final: true });
    out.bhs.set(pdu.bhs.subarray(F.LUN, F.LUN + 8), F.LUN);
    out.itt = RESERVED_TAG;
    out.setU32(F.TTT, ttt);
    out.setU32(F.CMDSN, this.window.cmdSN);
    out.setU32(F.EXPSTATSN, this.expStatSN);
    out.data = pdu.data.length <= this.params.maxSendDataSegmentLength ? pdu.data : Buffer.alloc(0);
    this.stats.nopInAnswered++;
    this.conn.send([out]);
  }

  private onWaiterResponse(pdu: Pdu): void {
    const w = this.waiters.get(pdu.itt);
    if (!w || w.opcode !== pdu.opcode) throw new EsxError('PROTOCOL_ERROR', `${pdu.opcodeName} for unknown ITT 0x${pdu.itt.toString(16)}`, { reason: 'UNKNOWN_ITT' });
    this.waiters.delete(pdu.itt);
    clearTimeout(w.timer);
    w.resolve(pdu);
  }

  private onAsync(pdu: Pdu): void {
    const event = pdu.u8(ASYNC.EVENT);
    switch (event) {
      case ASYNC.SCSI_EVENT:
        this.log.info({ lun: pdu.lun, sense: pdu.data.toString('hex') }, 'iscsi session: SCSI async event');
        return;
      case ASYNC.LOGOUT_REQUEST: {
        const waitS = Math.min(pdu.u16(ASYNC.PARAM3), 10);
        this.drainDeadlineMs = Date.now() + waitS * 1000;
        this.setState('DRAINING', `target requested logout (within ${pdu.u16(ASYNC.PARAM3)} s)`);
        return;
      }
      case ASYNC.DROP_CONNECTION:
      case ASYNC.DROP_ALL_CONNECTIONS:
        throw new EsxError('PROTOCOL_ERROR', 'target is dropping the connection', { reason: 'TARGET_DROP', time2wait: pdu.u16(ASYNC.PARAM2) });
      default:
        this.log.info({ event }, 'iscsi session: async message ignored');
    }
  }

  private onReject(pdu: Pdu): void {
    const reason = pdu.u8(REJECT.REASON);
    const header = pdu.data.length >= 48 ? new Pdu(Buffer.from(pdu.data.subarray(0, 48))) : null;
    const ref = header ? this.inflight.get(header.itt) : undefined;
    this.log.warn({ reason, rejected: header?.toString() ?? null }, 'iscsi session: target rejected a PDU');
    if (ref && header?.opcode === OP.SCSI_COMMAND) {
      this.forget(ref);
      ref.fail(new EsxError('PROTOCOL_ERROR', `target rejected ${ref.describe} (reason 0x${reason.toString(16)})`, { reason: 'REJECTED', rejectReason: reason }));
      return;
    }
    const w = header ? this.waiters.get(header.itt) : undefined;
    if (w) {
      this.waiters.delete(header!.itt);
      clearTimeout(w.timer);
      w.reject(new EsxError('PROTOCOL_ERROR', `target rejected our request (reason 0x${reason.toString(16)})`, { reason: 'REJECTED', rejectReason: reason }));
      return;
    }
    // A rejected Data-Out or NOP-Out cannot be repaired at ErrorRecoveryLevel 0.
    throw new EsxError('PROTOCOL_ERROR', `target rejected a PDU (reason 0x${reason.toString(16)})`, { reason: 'REJECTED', rejectReason: reason });
  }

  // ---- timers -------------------------------------------------------------------------------

  private onTick(): void {
    if (this.state === 'DOWN') return;
    const now = Date.now();
    if (this.ping && now - this.ping.sentAtMs > this.o.nopTimeoutMs) {
      this.die(new EsxError('TIMEOUT', `target did not answer a NOP-Out ping within ${this.o.nopTimeoutMs} ms`, { reason: 'PING_TIMEOUT' }));
      return;
    }
    if (!this.ping && now - this.conn.lastReceiveMs >= this.o.nopIntervalMs) this.sendPing();
    for (const task of this.inflight.values()) {
      if (!task.aborting && now - task.sentAtMs > task.spec.timeoutMs) this.timeOut(task);
    }
    this.maybeFinishDrain();
  }

  private sendPing(): void {
    const itt = this.allocItt();
    const p = Pdu.create(OP.NOP_OUT, { immediate: true, final: true });
    p.itt = itt;
    p.setU32(F.TTT, RESERVED_TAG);
    p.setU32(F.CMDSN, this.window.cmdSN);
    p.setU32(F.EXPSTATSN, this.expStatSN);
    this.ping = { itt, sentAtMs: Date.now() };
    this.stats.pings++;
    this.conn.send([p]);
  }

  /** A command got no status in time: abort it and fail it with TIMEOUT. */
  private timeOut(task: Task): void {
    this.log.warn({ task: task.id, itt: task.itt, timeoutMs: task.spec.timeoutMs }, 'iscsi session: command timed out; aborting it');
    void this.abort(task, (extra) => new EsxError('TIMEOUT', `${task.describe} got no status within ${task.spec.timeoutMs} ms`, { reason: 'COMMAND_TIMEOUT', ...extra })).catch(() => undefined);
  }

  /**
   * ABORT TASK for a command on the wire. When the target answers (the task is gone, or never
   * existed) the command fails with `makeError`; if the target does not answer, the command
   * fails the same way and the connection is dropped (recovery takes the others over).
   * Resolves with the TMF response code.
   */
  async abort(task: Task, makeError: (extra: Record<string, unknown>) => EsxError): Promise<number> {
    if (task.aborting || this.inflight.get(task.itt) !== task) return TMF_RESPONSE.TASK_DOES_NOT_EXIST;
    task.aborting = true;
    let response: number;
    try {
      response = await this.taskManagement('abortTask', task.spec.lun, { itt: task.itt, cmdSN: task.cmdSN });
    } catch (e) {
      if (this.inflight.get(task.itt) === task) {
        this.forget(task);
        task.fail(makeError({ abortError: (e as Error).message }));
        this.die(new EsxError('TIMEOUT', `ABORT TASK for ${task.describe} failed: ${(e as Error).message}`, { reason: 'ABORT_FAILED' }));
      }
      throw e;
    }
    if (this.inflight.get(task.itt) === task) {
      // No status came before the TMF response: the task is gone at the target.
      this.forget(task);
      this.rememberAborted(task.itt);
      task.fail(makeError({ tmfResponse: tmfResponseName(response) }));
      this.pump();
    }
    return response;
  }

  private rememberAborted(itt: number): void {
    if (this.recentlyAborted.size >= MAX_RECENTLY_ABORTED) this.recentlyAborted.delete(this.recentlyAborted.values().next().value!);
    this.recentlyAborted.add(itt);
  }

  // ---- immediate requests: task management, logout -----------------------------------------

  private request(pdu: Pdu, responseOpcode: number): Promise<Pdu> {
    if (this.state === 'DOWN') return Promise.reject(new EsxError('INVALID_STATE', 'the iSCSI session is down', { reason: 'SESSION_DOWN' }));
    return new Promise<Pdu>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(pdu.itt);
        reject(new EsxError('TIMEOUT', `no answer to ${pdu.opcodeName} within ${this.o.requestTimeoutMs} ms`, { reason: 'REQUEST_TIMEOUT' }));
      }, this.o.requestTimeoutMs);
      this.waiters.set(pdu.itt, { opcode: responseOpcode, resolve, reject, timer });
      this.conn.send([pdu]);
    });
  }

  /**
   * Run a task management function; resolves with the TMF response code. Commands it
   * terminated (the referenced task, or every command of the LUN for a reset) are failed with
   * CANCELLED: the target sends no status for them.
   */
  async taskManagement(fn: InitiatorTmf, lun: number, ref?: { itt: number; cmdSN: number }): Promise<number> {
    const pdu = tmfRequest(fn, lun, { itt: this.allocItt(), cmdSN: this.window.cmdSN, expStatSN: this.expStatSN }, ref);
    const affected = [...this.inflight.values()].filter((t) => (fn === 'abortTask' ? t.itt === ref?.itt : fn === 'targetWarmReset' || t.spec.lun === lun));
    this.log.info({ fn, lun, refItt: ref?.itt ?? null, affected: affected.length }, 'iscsi session: task management request');
    const rsp = await this.request(pdu, OP.TASK_MGMT_RESPONSE);
    const response = rsp.u8(TMF_RSP.RESPONSE);
    this.log.info({ fn, lun, response: tmfResponseName(response) }, 'iscsi session: task management response');
    if (response === 0 && fn !== 'abortTask') {
      for (const t of affected) {
        if (this.inflight.get(t.itt) !== t) continue;
        this.forget(t);
        this.rememberAborted(t.itt);
        t.fail(new EsxError('CANCELLED', `${t.describe} terminated by ${fn}`, { reason: 'TASK_MANAGEMENT', fn }));
      }
    }
    return response;
  }

  /** Logout (close the session), bounded; the session is DOWN afterwards either way. */
  async logout(end: EsxError = new EsxError('CANCELLED', 'iSCSI session logged out', { reason: 'LOGGED_OUT' })): Promise<void> {
    if (this.state === 'DOWN' || this.state === 'LOGGING_OUT') return;
    this.setState('LOGGING_OUT', end.message);
    const pdu = Pdu.create(OP.LOGOUT_REQUEST, { immediate: true, final: true });
    pdu.flags = 0x80 | LOGOUT_REQ.CLOSE_SESSION;
    pdu.itt = this.allocItt();
    pdu.setU32(F.CMDSN, this.window.cmdSN);
    pdu.setU32(F.EXPSTATSN, this.expStatSN);
    try {
      const rsp = await this.request(pdu, OP.LOGOUT_RESPONSE);
      const response = rsp.u8(LOGOUT_RSP.RESPONSE);
      if (response !== LOGOUT_RSP.CLOSED_SUCCESSFULLY) this.log.warn({ response }, 'iscsi session: logout answered with an error');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'iscsi session: logout got no answer; closing anyway');
    }
    this.die(end);
  }

  private maybeFinishDrain(): void {
    if (this.state !== 'DRAINING') return;
    if (this.inflight.size === 0 || Date.now() >= this.drainDeadlineMs) {
      // After a target-requested logout the session ends like a lost connection: recovery
      // logs in again and reissues what was left.
      void this.logout(new EsxError('PROTOCOL_ERROR', 'logged out at the target\'s request', { reason: 'TARGET_LOGOUT_REQUEST' }));
    }
  }

  /** End the session: close the connection, hand the unacknowledged commands over. Once. */
  die(reason: EsxError): void {
    if (this.state === 'DOWN') return;
    this.setState('DOWN', reason.message);
    clearInterval(this.tick);
    this.conn.close(reason);
    for (const [itt, w] of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new EsxError(reason.code, `iSCSI session ended: ${reason.message}`, { ...reason.details }));
      this.waiters.delete(itt);
    }
    const unacknowledged = [...this.inflight.values()].sort((a, b) => (snLessThan(a.cmdSN, b.cmdSN) ? -1 : 1));
    this.inflight.clear();
    this.o.onDown(reason, unacknowledged);
  }
}
