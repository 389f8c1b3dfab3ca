/**
 * Session recovery at ErrorRecoveryLevel 0 (RFC 7143 7.1.4, 6.3.5): when the connection drops,
 * the target restarts, or the session dies of a protocol error or an unanswered ping, the
 * supervisor logs in again on a new connection with the SAME ISID and TSIH 0 (session
 * reinstatement: the target drops whatever is left of the old session), with bounded
 * exponential backoff, and sends again the commands whose status never came.
 *
 *   READY ──session down──> RECOVERING ──login ok──> READY
 *                               │ recoveryMs elapsed: queued/unacknowledged commands fail (TIMEOUT)
 *                               v
 *                             DOWN ──login ok──> READY       (reconnect attempts go on, at the
 *                                                             max backoff; new commands fail fast
 *   any ──close()──> CLOSED                                   with TARGET_UNREACHABLE)
 *
 * What is sent again (a task's ReplayPolicy, set per command in scsi-commands.ts):
 * - 'reissue': reads, WRITE (the same data to the same LBAs: idempotent, so re-running a write
 *   that did happen changes nothing), SYNCHRONIZE CACHE, UNMAP, WRITE SAME, RESERVE/RELEASE(6)
 *   (SPC-2 reservations die with the I_T nexus anyway), PR OUT RESERVE/RELEASE/REGISTER AND
 *   IGNORE EXISTING KEY.
 * - 'verify-caw': COMPARE AND WRITE must not be blindly reissued: it may have succeeded, and a
 *   second run would then miscompare (and a lock holder would think it lost its lock). After the
 *   new login the supervisor READS the blocks back:
 *     data == the write half    -> the CAW took effect: success, flagged `verifiedByRead`
 *                                  (sound when the written image is unique to this writer, as
 *                                  VMFS/ATS lock records are: they carry the owner's id);
 *     data == the compare half  -> it did not take effect: the CAW is reissued;
 *     anything else             -> TASK_INTERRUPTED, reason CAW_OUTCOME_INDETERMINATE (someone
 *                                  else changed the blocks: re-read and decide).
 * - 'fail': PR OUT REGISTER/CLEAR/PREEMPT (a second run conflicts): TASK_INTERRUPTED, reason
 *   OUTCOME_INDETERMINATE.
 * A command that was only queued (never on the wire) is always safe to send later.
 * Each command is sent at most `maxAttempts` times (a command that kills the target every time
 * does not loop forever): then TASK_INTERRUPTED, reason TOO_MANY_ATTEMPTS.
 *
 * Bounds: the whole recovery (from the loss to the new login) is bounded by `recoveryMs`; each
 * connect and login attempt by its own timeout, capped by what is left of the window. The
 * backoff starts after DefaultTime2Wait (RFC 7143 13.15: the minimum wait before an implicit
 * logout, which reinstatement is), capped by `maxTime2WaitMs`.
 */
import { Backoff, EsxError, type Logger } from '@esxemu/shared';
import { CommandQueue } from './command-queue.js';
import { portalString, type Portal } from './connection.js';
import { loginToPortal, type LoginOptions } from './login.js';
import { read16 } from './scsi-commands.js';
import { decodeSense, SENSE_KEY } from './sense.js';
import { IscsiSession } from './session.js';
import { Task, type CommandResult } from './task.js';
import { SAM_STAT } from '../scsi/types.js';
import type { InitiatorTmf } from './task-management.js';

export interface RecoveryTimeouts {
  connectMs: number;
  loginMs: number;
  /** Bound on getting a session back after a loss; then waiting commands fail with TIMEOUT. */
  recoveryMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  /** Cap on the negotiated DefaultTime2Wait honoured before reconnecting. */
  maxTime2WaitMs: number;
  nopIntervalMs: number;
  nopTimeoutMs: number;
  /** Task management, logout. */
  requestMs: number;
  /** Bound on a command waiting in the queue while the session is up. */
  queueWaitMs: number;
}

export interface SupervisorOptions {
  portal: Portal;
  login: Omit<LoginOptions, 'tsih' | 'cid' | 'cmdSN'>;
  timeouts: RecoveryTimeouts;
  queueDepth: number;
  maxQueued: number;
  maxAttempts: number;
  log: Logger;
}

export type SupervisorState =
  | { kind: 'READY'; session: IscsiSession }
  | { kind: 'RECOVERING'; sinceMs: number; deadlineMs: number; attempts: number; lastError: EsxError }
  | { kind: 'DOWN'; sinceMs: number; attempts: number; lastError: EsxError }
  | { kind: 'CLOSED' };

export class SessionSupervisor {
  state: SupervisorState;
  readonly queue: CommandQueue;
  private readonly o: SupervisorOptions;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  /** COMPARE AND WRITE tasks whose status was lost, waiting for a read-back after re-login. */
  private cawToVerify: Task[] = [];
  private readonly tick: NodeJS.Timeout;
  private wake: (() => void) | null = null;
  private loopRunning = false;
  /** DefaultTime2Wait of the last session (seconds). */
  private lastTime2WaitS = 0;
  /** Counters for stats and tests. */
  readonly stats = { sessions: 0, recoveries: 0, reissued: 0, failedUnsafe: 0, cawVerified: 0 };

  private constructor(o: SupervisorOptions, session: IscsiSession | null) {
    this.o = o;
    this.log = o.log;
    this.queue = new CommandQueue(o.maxQueued);
    this.backoff = new Backoff(o.timeouts.backoffMinMs, o.timeouts.backoffMaxMs);
    this.state = { kind: 'CLOSED' };
    if (session) this.state = { kind: 'READY', session };
    this.tick = setInterval(() => this.onTick(), Math.max(20, Math.min(500, Math.floor(o.timeouts.recoveryMs / 10))));
    this.tick.unref();
  }

  /** Log in once (no retry: a wrong secret or target name should say so at once). */
  static async start(o: SupervisorOptions): Promise<SessionSupervisor> {
    const sup = new SessionSupervisor(o, null);
    try {
      const session = await sup.login(o.timeouts.connectMs, o.timeouts.loginMs);
      sup.setState({ kind: 'READY', session }, 'logged in');
      return sup;
    } catch (err) {
      clearInterval(sup.tick);
      throw err;
    }
  }

  /** A getter, so that TypeScript does not narrow the state across awaits. */
  get closed(): boolean {
    return this.state.kind === 'CLOSED';
  }

  get session(): IscsiSession | null {
    return this.state.kind === 'READY' ? this.state.session : null;
  }

  private setState(next: SupervisorState, why: string): void {
    const from = this.state.kind;
    this.state = next;
    this.log.info({ from, to: next.kind, why, portal: portalString(this.o.portal) }, 'iscsi initiator: state');
  }

  private async login(connectMs: number, loginMs: number): Promise<IscsiSession> {
    const { conn, result } = await loginToPortal(this.o.portal, { ...this.o.login, tsih: 0, cid: 0, cmdSN: 1 }, { connectMs, loginMs }, this.log);
    this.stats.sessions++;
    this.lastTime2WaitS = result.params.defaultTime2Wait;
    return new IscsiSession(conn, result, {
      log: this.log.child({ tsih: result.tsih }),
      queue: this.queue,
      queueDepth: this.o.queueDepth,
      nopIntervalMs: this.o.timeouts.nopIntervalMs,
      nopTimeoutMs: this.o.timeouts.nopTimeoutMs,
      requestTimeoutMs: this.o.timeouts.requestMs,
      onDown: (reason, unacked) => this.onSessionDown(reason, unacked),
    });
  }

  // ---- commands -----------------------------------------------------------------------------

  /** Queue a command; its promise settles with its status or an EsxError. */
  submit(task: Task): Promise<CommandResult> {
    switch (this.state.kind) {
      case 'CLOSED':
        task.fail(new EsxError('INVALID_STATE', 'the iSCSI initiator is closed', { reason: 'CLOSED' }));
        return task.promise;
      case 'DOWN':
        task.fail(this.downError(this.state));
        return task.promise;
      default:
        break;
    }
    if (this.state.kind === 'RECOVERING') task.recoveryDeadlineMs = this.state.deadlineMs;
    try {
      this.queue.push(task);
    } catch (err) {
      task.fail(err as EsxError);
      return task.promise;
    }
    this.session?.pump();
    return task.promise;
  }

  /** Withdraw a command (caller's AbortSignal): dequeue it, or ABORT TASK it on the wire. */
  async cancel(task: Task): Promise<void> {
    if (task.state === 'done') return;
    if (this.queue.removeWhere((t) => t === task).length) {
      task.fail(new EsxError('CANCELLED', `${task.describe} cancelled before it was sent`, { reason: 'CANCELLED' }));
      return;
    }
    const s = this.session;
    if (s && task.state === 'inflight') {
      await s.abort(task, (extra) => new EsxError('CANCELLED', `${task.describe} aborted`, { reason: 'ABORTED', ...extra }));
    }
  }

  async taskManagement(fn: Exclude<InitiatorTmf, 'abortTask'>, lun: number): Promise<number> {
    const s = this.session;
    if (!s) throw this.notReady();
    return s.taskManagement(fn, lun);
  }

  private notReady(): EsxError {
    return this.state.kind === 'DOWN' ? this.downError(this.state) : new EsxError('INVALID_STATE', `the iSCSI session is ${this.state.kind}`, { reason: 'NOT_READY' });
  }

  private downError(s: Extract<SupervisorState, { kind: 'DOWN' }>): EsxError {
    return new EsxError('TARGET_UNREACHABLE', `iSCSI target at ${portalString(this.o.portal)} unreachable since ${new Date(s.sinceMs).toISOString()}: ${s.lastError.message}`, {
      reason: 'SESSION_DOWN',
      portal: portalString(this.o.portal),
      lastError: s.lastError.toJSON(),
    });
  }

  // ---- loss and recovery --------------------------------------------------------------------

  private onSessionDown(reason: EsxError, unacked: Task[]): void {
    if (this.state.kind === 'CLOSED') {
      for (const t of unacked) t.fail(new EsxError('CANCELLED', `${t.describe} cancelled: the initiator closed`, { reason: 'CLOSED' }));
      return;
    }
    const reissue: Task[] = [];
    for (const t of unacked) {
      if (t.attempts >= this.o.maxAttempts) {
        t.fail(new EsxError('TASK_INTERRUPTED', `${t.describe} was sent ${t.attempts} times and lost its connection each time`, { reason: 'TOO_MANY_ATTEMPTS', lastError: reason.toJSON() }));
      } else if (t.spec.replay === 'reissue') {
        reissue.push(t);
      } else if (t.spec.replay === 'verify-caw') {
        t.state = 'queued';
        t.resetAttempt();
        this.cawToVerify.push(t);
      } else {
        this.stats.failedUnsafe++;
        t.fail(new EsxError('TASK_INTERRUPTED', `${t.describe}: status lost with the connection; it may or may not have taken effect, and running it again is not safe`, { reason: 'OUTCOME_INDETERMINATE', lastError: reason.toJSON() }));
      }
    }
    this.stats.reissued += reissue.length;
    this.queue.requeueFront(reissue);
    this.stats.recoveries++;
    const now = Date.now();
    // Every waiting command gets a bound from now (kept if it already had one).
    for (const t of this.cawToVerify) if (!t.recoveryDeadlineMs) t.recoveryDeadlineMs = now + this.o.timeouts.recoveryMs;
    this.queue.forEach((t) => {
      if (!t.recoveryDeadlineMs) t.recoveryDeadlineMs = now + this.o.timeouts.recoveryMs;
    });
    this.log.warn({ err: reason.message, reason: reason.details?.['reason'], reissue: reissue.length, cawToVerify: this.cawToVerify.length, queued: this.queue.length }, 'iscsi initiator: session lost');
    this.setState({ kind: 'RECOVERING', sinceMs: now, deadlineMs: now + this.o.timeouts.recoveryMs, attempts: 0, lastError: reason }, reason.message);
    void this.reconnectLoop(Math.min(this.o.timeouts.maxTime2WaitMs, this.lastTime2WaitS * 1000));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async reconnectLoop(firstDelayMs: number): Promise<void> {
    if (this.loopRunning) return;
    this.loopRunning = true;
    try {
      if (firstDelayMs > 0) await this.sleep(firstDelayMs);
      this.backoff.reset();
      while (this.state.kind === 'RECOVERING' || this.state.kind === 'DOWN') {
        const st = this.state;
        const left = st.kind === 'RECOVERING' ? Math.max(1, st.deadlineMs - Date.now()) : this.o.timeouts.connectMs + this.o.timeouts.loginMs;
        st.attempts++;
        try {
          const session = await this.login(Math.min(this.o.timeouts.connectMs, left), Math.min(this.o.timeouts.loginMs, left));
          if (this.closed) {
            void session.logout();
            return;
          }
          // It may have died already (a PDU processed as it started): onSessionDown ran.
          if (session.state === 'DOWN') continue;
          this.queue.restartClocks();
          this.setState({ kind: 'READY', session }, `logged in again after ${st.attempts} attempt(s), ${Date.now() - st.sinceMs} ms`);
          this.verifyCaws();
          session.pump();
          return;
        } catch (err) {
          const e = err instanceof EsxError ? err : new EsxError('INTERNAL', String(err));
          const cur = this.state;
          if (cur.kind === 'RECOVERING' || cur.kind === 'DOWN') cur.lastError = e;
          this.log.info({ attempt: st.attempts, err: e.message, code: e.code }, 'iscsi initiator: reconnect attempt failed');
        }
        if (this.closed) return;
        const delay = this.state.kind === 'DOWN' ? this.o.timeouts.backoffMaxMs : Math.min(this.backoff.next(), Math.max(0, (this.state as { deadlineMs: number }).deadlineMs - Date.now()));
        await this.sleep(delay);
        this.expireIfDue();
      }
    } finally {
      this.loopRunning = false;
      this.wake = null;
    }
  }

  private recoveryTimeout(attempts: number, lastError: EsxError | null): EsxError {
    return new EsxError('TIMEOUT', `iSCSI session to ${portalString(this.o.portal)} not recovered within ${this.o.timeouts.recoveryMs} ms (${attempts} login attempts; last error: ${lastError?.message ?? 'none'})`, {
      reason: 'SESSION_RECOVERY_TIMEOUT',
      portal: portalString(this.o.portal),
      recoveryMs: this.o.timeouts.recoveryMs,
      attempts,
      lastError: lastError?.toJSON() ?? null,
    });
  }

  /**
   * Bounds: a waiting command whose own recovery deadline passed fails (TIMEOUT); when the
   * recovery window is over, everything waiting fails and the state goes DOWN (reconnect
   * attempts continue, at the max backoff).
   */
  private expireIfDue(): void {
    const st = this.state;
    const now = Date.now();
    const attempts = st.kind === 'RECOVERING' || st.kind === 'DOWN' ? st.attempts : 0;
    const lastError = st.kind === 'RECOVERING' || st.kind === 'DOWN' ? st.lastError : null;
    const late = (t: Task): boolean => t.recoveryDeadlineMs > 0 && now >= t.recoveryDeadlineMs;
    const lateTasks = [...this.queue.removeWhere(late), ...this.cawToVerify.filter(late)];
    if (lateTasks.length) {
      this.cawToVerify = this.cawToVerify.filter((t) => !late(t));
      const err = this.recoveryTimeout(attempts, lastError);
      for (const t of lateTasks) t.fail(err);
    }
    if (st.kind !== 'RECOVERING' || now < st.deadlineMs) return;
    const err = this.recoveryTimeout(st.attempts, st.lastError);
    const waiting = [...this.cawToVerify, ...this.queue.drain()];
    this.cawToVerify = [];
    this.log.error({ failed: waiting.length, attempts: st.attempts, lastError: st.lastError.message }, 'iscsi initiator: recovery window over; failing waiting commands');
    for (const t of waiting) t.fail(err);
    this.setState({ kind: 'DOWN', sinceMs: st.sinceMs, attempts: st.attempts, lastError: st.lastError }, 'recovery window over');
  }

  private onTick(): void {
    this.expireIfDue();
    if (this.state.kind === 'READY') {
      const now = Date.now();
      const limit = this.o.timeouts.queueWaitMs;
      const late = this.queue.removeWhere((t) => now - t.queuedSinceMs > limit);
      for (const t of late) t.fail(new EsxError('TIMEOUT', `${t.describe} waited ${limit} ms in the queue (target command window closed or queue depth reached)`, { reason: 'QUEUE_TIMEOUT' }));
    }
  }

  /** Read back the blocks of each COMPARE AND WRITE whose status was lost, then decide. */
  private verifyCaws(): void {
    const caws = this.cawToVerify;
    this.cawToVerify = [];
    for (const caw of caws) void this.verifyCaw(caw);
  }

  private async verifyCaw(caw: Task): Promise<void> {
    const cdb = caw.spec.cdb;
    const lba = Number(cdb.readBigUInt64BE(2));
    const blocks = cdb[13]!;
    const dataOut = caw.spec.dataOut!;
    const half = dataOut.length / 2;
    const compare = dataOut.subarray(0, half);
    const write = dataOut.subarray(half);
    const readCmd = read16(lba, blocks, half / blocks);
    this.log.info({ task: caw.id, lba, blocks }, 'iscsi initiator: COMPARE AND WRITE status lost; reading the blocks back');
    let r: CommandResult;
    try {
      // The first command after a target restart meets a UNIT ATTENTION: read again (bounded).
      for (let i = 0; ; i++) {
        const read = new Task({ lun: caw.spec.lun, cdb: readCmd.cdb, dataOut: null, expectedLength: half, attr: 'simple', replay: 'reissue', timeoutMs: caw.spec.timeoutMs });
        read.recoveryDeadlineMs = caw.recoveryDeadlineMs;
        this.queue.requeueFront([read]);
        this.session?.pump();
        r = await read.promise;
        if (i >= 3 || !isUnitAttention(r)) break;
      }
    } catch (err) {
      caw.fail(new EsxError('TASK_INTERRUPTED', `${caw.describe}: status lost and the read-back failed: ${(err as Error).message}`, { reason: 'CAW_OUTCOME_INDETERMINATE', readError: (err as EsxError).toJSON?.() ?? String(err) }));
      return;
    }
    const current = r.data ?? Buffer.alloc(0);
    if (r.status === SAM_STAT.GOOD && current.equals(write)) {
      this.stats.cawVerified++;
      this.log.info({ task: caw.id }, 'iscsi initiator: COMPARE AND WRITE had taken effect (blocks hold the written image)');
      caw.complete({ status: SAM_STAT.GOOD, data: null, sense: null, residual: 0, underflow: false, overflow: false, verifiedByRead: true });
    } else if (r.status === SAM_STAT.GOOD && current.equals(compare)) {
      this.log.info({ task: caw.id }, 'iscsi initiator: COMPARE AND WRITE had not taken effect; sending it again');
      if (this.state.kind === 'CLOSED') caw.fail(new EsxError('CANCELLED', 'the initiator closed', { reason: 'CLOSED' }));
      else {
        this.queue.requeueFront([caw]);
        this.session?.pump();
      }
    } else {
      caw.fail(
        new EsxError('TASK_INTERRUPTED', `${caw.describe}: status lost with the connection and the blocks now hold neither the compare nor the write image; re-read and decide`, {
          reason: 'CAW_OUTCOME_INDETERMINATE',
          lba,
          blocks,
          readStatus: r.status,
        }),
      );
    }
  }

  // ---- close --------------------------------------------------------------------------------

  /**
   * Close: let the commands on the wire finish (bounded by `drainMs`), log out, and fail what
   * is left with CANCELLED.
   */
  async close(drainMs: number): Promise<void> {
    if (this.state.kind === 'CLOSED') return;
    const prev = this.state;
    const deadline = Date.now() + drainMs;
    if (prev.kind === 'READY') {
      while (Date.now() < deadline && (prev.session.inflightCount > 0 || this.queue.length > 0) && prev.session.state !== 'DOWN') {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    this.setState({ kind: 'CLOSED' }, 'closed by the caller');
    clearInterval(this.tick);
    this.wake?.();
    const cancelled = (t: Task): void => t.fail(new EsxError('CANCELLED', `${t.describe} cancelled: the initiator closed`, { reason: 'CLOSED' }));
    for (const t of [...this.cawToVerify, ...this.queue.drain()]) cancelled(t);
    this.cawToVerify = [];
    if (prev.kind === 'READY') await prev.session.logout();
  }
}

function isUnitAttention(r: CommandResult): boolean {
  return r.status === SAM_STAT.CHECK_CONDITION && r.sense !== null && decodeSense(r.sense).key === SENSE_KEY.UNIT_ATTENTION;
}
