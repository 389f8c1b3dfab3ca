/**
 * The tasks of one session, by Initiator Task Tag, with a hard cap. A task is a SCSI command
 * from delivery (CmdSN order) to its last response PDU, or to its abort.
 *
 *   collecting (write data) -> waiting (task attribute order) -> running (SCSI layer)
 *     -> responding -> done          any state --abort--> aborted (no response is ever sent)
 */
import type { DataDirection, TaskAttribute } from '../scsi/types.js';
import { TaskSignal } from './task-signal.js';
import type { WriteCollector } from './write-collector.js';

export type TaskPhase = 'collecting' | 'waiting' | 'running' | 'responding' | 'done' | 'aborted';

export class Task {
  readonly itt: number;
  readonly cmdSN: number;
  readonly lun: number;
  readonly cdb: Buffer;
  readonly direction: DataDirection;
  readonly attr: TaskAttribute;
  /** Expected Data Transfer Length (the write length for bidirectional commands). */
  readonly expectedLength: number;
  /** Bytes the initiator expects to read (EDTL, or the bidi read length). */
  readonly expectedReadLength: number;
  readonly immediate: boolean;
  phase: TaskPhase;
  /** Given to the SCSI layer; aborted by task management, logout or session loss. */
  readonly signal = new TaskSignal();
  write: WriteCollector | null = null;
  /** Bytes this task holds against the session's write budget. */
  writeBytes = 0;
  private resolveSettled!: () => void;
  private abortWaiters: (() => void)[] | null = null;
  /** Resolves when the task is over (its response sent, or aborted and wound down). */
  readonly settled: Promise<void>;

  constructor(o: { itt: number; cmdSN: number; lun: number; cdb: Buffer; direction: DataDirection; attr: TaskAttribute; expectedLength: number; expectedReadLength: number; immediate: boolean }) {
    this.itt = o.itt;
    this.cmdSN = o.cmdSN;
    this.lun = o.lun;
    this.cdb = o.cdb;
    this.direction = o.direction;
    this.attr = o.attr;
    this.expectedLength = o.expectedLength;
    this.expectedReadLength = o.expectedReadLength;
    this.immediate = o.immediate;
    this.phase = 'collecting';
    this.settled = new Promise((r) => (this.resolveSettled = r));
  }

  get aborted(): boolean {
    return this.phase === 'aborted';
  }

  /** Mark the task aborted and signal the SCSI layer. Idempotent. */
  markAborted(): void {
    if (this.phase === 'done' || this.phase === 'aborted') return;
    this.phase = 'aborted';
    this.signal.abort();
    const waiters = this.abortWaiters;
    this.abortWaiters = null;
    if (waiters) for (const w of waiters) w();
  }

  /**
   * Resolves when the task is aborted. (Not an 'abort' listener on the signal: in Node 20 adding
   * one costs microseconds, which shows at tens of thousands of commands per second.)
   */
  whenAborted(): Promise<void> {
    if (this.phase === 'aborted') return Promise.resolve();
    return new Promise((resolve) => (this.abortWaiters ??= []).push(resolve));
  }

  settle(): void {
    if (this.phase !== 'aborted') this.phase = 'done';
    this.resolveSettled();
  }

  toString(): string {
    return `task itt=0x${this.itt.toString(16)} cmdsn=${this.cmdSN} lun=${this.lun} op=0x${(this.cdb[0] ?? 0).toString(16)}`;
  }
}

export class TaskTable {
  private readonly tasks = new Map<number, Task>();
  readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.tasks.size;
  }

  get full(): boolean {
    return this.tasks.size >= this.max;
  }

  get(itt: number): Task | undefined {
    return this.tasks.get(itt);
  }

  has(itt: number): boolean {
    return this.tasks.has(itt);
  }

  add(task: Task): void {
    if (this.tasks.has(task.itt)) throw new Error(`ITT 0x${task.itt.toString(16)} already in use`);
    if (this.full) throw new Error('task table full');
    this.tasks.set(task.itt, task);
  }

  /** Remove this exact task (not a later task that reused its ITT). */
  remove(task: Task): void {
    if (this.tasks.get(task.itt) === task) this.tasks.delete(task.itt);
  }

  values(): Task[] {
    return [...this.tasks.values()];
  }
}
