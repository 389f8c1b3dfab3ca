/**
 * SAM task attributes, honoured minimally for one task set: SIMPLE tasks run concurrently but
 * after every earlier ORDERED task; an ORDERED task runs after every earlier task and before
 * every later one; HEAD OF QUEUE tasks run at once. Admission happens in CmdSN order (delivery),
 * so "earlier" is CmdSN order.
 */
import type { TaskAttribute } from '../scsi/types.js';

export interface Admission {
  /** Resolves when the task may start. */
  ready: Promise<void>;
  /** The task may start now (no need to wait for `ready`). */
  now: boolean;
  /** The task is over (completed or aborted): let the tasks waiting on it go. Idempotent. */
  release(): void;
}

export class TaskOrder {
  /** Completion of the last ORDERED task admitted. */
  private barrier: Promise<void> = Promise.resolve();
  /** Completions of the tasks admitted since that ORDERED task. */
  private sinceBarrier = new Set<Promise<void>>();
  /** An ORDERED task admitted earlier has not completed yet. */
  private barrierPending = false;

  admit(attr: TaskAttribute): Admission {
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    if (attr === 'headOfQueue') return { ready: Promise.resolve(), now: true, release };
    if (attr === 'ordered') {
      const now = !this.barrierPending && this.sinceBarrier.size === 0;
      const ready = Promise.all([this.barrier, ...this.sinceBarrier]).then(() => undefined);
      this.barrier = done;
      this.barrierPending = true;
      this.sinceBarrier = new Set();
      void done.then(() => {
        if (this.barrier === done) this.barrierPending = false;
      });
      return { ready, now, release };
    }
    const ready = this.barrier;
    const set = this.sinceBarrier;
    set.add(done);
    void done.then(() => set.delete(done));
    return { ready, now: !this.barrierPending, release };
  }
}
