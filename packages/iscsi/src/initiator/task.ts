/**
 * One SCSI command from submission to status. A task outlives connections: when a connection
 * drops before its status arrived, recovery puts it back in the queue (or fails it, by its
 * replay policy) and it is sent again on the next connection with a new ITT and CmdSN.
 *
 *   queued --(sent)--> inflight --(status)--> done
 *      ^                  | connection lost
 *      +---- reissue -----+----------------> done (failed: not safe to replay / out of time)
 */
import { EsxError } from '@esxemu/shared';
import type { DataInAssembler } from './data-in.js';

export type TaskAttribute = 'simple' | 'ordered' | 'headOfQueue';

/**
 * What to do with a task whose status was lost with its connection:
 * - 'reissue': send it again (reads, writes of the same data at the same LBAs, flushes...)
 * - 'verify-caw': COMPARE AND WRITE: re-read the blocks and decide (see recovery.ts)
 * - 'fail': its effect may have happened and cannot be checked: fail with TASK_INTERRUPTED
 */
export type ReplayPolicy = 'reissue' | 'verify-caw' | 'fail';

export interface CommandSpec {
  lun: number;
  cdb: Buffer;
  /** Data to write (write-type commands), or null. */
  dataOut: Buffer | null;
  /** Data-In length the command may return (read-type commands), 0 otherwise. */
  expectedLength: number;
  attr: TaskAttribute;
  replay: ReplayPolicy;
  /** Bound on waiting for status once the command is on the wire. */
  timeoutMs: number;
}

/** The raw outcome of a command: SAM status, Data-In, sense (a CHECK CONDITION is data). */
export interface CommandResult {
  status: number;
  data: Buffer | null;
  /** Sense bytes as sent (fixed or descriptor format), when status is CHECK CONDITION. */
  sense: Buffer | null;
  /** Residual count: bytes not transferred (underflow) or that did not fit (overflow). */
  residual: number;
  underflow: boolean;
  overflow: boolean;
  /** How many times the command was sent (more than 1 after a recovery). */
  attempts: number;
  /**
   * Set when the status was lost with a connection and the outcome was established afterwards
   * by reading the blocks back (COMPARE AND WRITE, see recovery.ts).
   */
  verifiedByRead?: boolean;
}

let nextTaskId = 1;

export class Task {
  readonly id = nextTaskId++;
  readonly spec: CommandSpec;
  readonly promise: Promise<CommandResult>;
  state: 'queued' | 'inflight' | 'done' = 'queued';
  /** Times sent on a connection. */
  attempts = 0;
  submittedAtMs = Date.now();

  // Per attempt (reset by prepareSend):
  itt = 0;
  cmdSN = 0;
  sentAtMs = 0;
  dataIn: DataInAssembler | null = null;
  /** Data-Out bytes sent in answer to R2Ts, R2Ts honoured (bounded). */
  r2tCount = 0;
  /** An ABORT TASK is under way for this attempt (timeout). */
  aborting = false;

  private resolveFn!: (r: CommandResult) => void;
  private rejectFn!: (e: EsxError) => void;

  constructor(spec: CommandSpec) {
    this.spec = spec;
    this.promise = new Promise<CommandResult>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
  }

  get opcode(): number {
    return this.spec.cdb[0]!;
  }

  get describe(): string {
    return `task ${this.id} op 0x${this.opcode.toString(16).padStart(2, '0')} lun ${this.spec.lun}`;
  }

  resetAttempt(): void {
    this.itt = 0;
    this.cmdSN = 0;
    this.sentAtMs = 0;
    this.dataIn = null;
    this.r2tCount = 0;
    this.aborting = false;
  }

  /**
   * Set when a connection loss (or a submit during recovery) makes the task wait for a new
   * session: it fails with TIMEOUT at this time if it has not been sent again (0 = none).
   */
  recoveryDeadlineMs = 0;
  /** When the task last entered the queue (queue waits are bounded too). */
  queuedSinceMs = Date.now();

  complete(r: Omit<CommandResult, 'attempts'>): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.resolveFn({ ...r, attempts: this.attempts });
  }

  fail(err: EsxError): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.rejectFn(err);
  }
}
