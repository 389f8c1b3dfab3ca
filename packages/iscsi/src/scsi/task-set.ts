/**
 * The task set of a logical unit (SAM-5 8.6, QUEUE ALGORITHM MODIFIER 1: unrestricted
 * reordering of simple tasks):
 *  - SIMPLE (and untagged, ACA) tasks run concurrently, but not before the last ORDERED task
 *    received before them has completed;
 *  - an ORDERED task runs once every task received before it has completed, and tasks
 *    received after it wait for it;
 *  - HEAD OF QUEUE runs at once.
 * At most `max` tasks are in the set; beyond that the caller reports TASK SET FULL.
 */
import type { TaskAttribute } from './types.js';

export const MAX_TASKS_PER_LU = 1024;

export interface TaskSlot {
  /** Resolves when the task may start. */
  ready: Promise<void>;
  /** Call exactly once when the task has completed. */
  done(): void;
}

export class TaskSet {
  private readonly inflight = new Set<Promise<void>>();
  private lastOrdered: Promise<void> = Promise.resolve();

  constructor(private readonly max = MAX_TASKS_PER_LU) {}

  get size(): number {
    return this.inflight.size;
  }

  /** Admit a task, or return null when the task set is full. */
  enter(attr: TaskAttribute): TaskSlot | null {
    if (this.inflight.size >= this.max) return null;
    let release!: () => void;
    const finished = new Promise<void>((r) => (release = r));
    let ready: Promise<void>;
    if (attr === 'headOfQueue') {
      ready = Promise.resolve();
    } else if (attr === 'ordered') {
      ready = Promise.all([...this.inflight]).then(() => undefined);
      this.lastOrdered = finished;
    } else {
      ready = this.lastOrdered;
    }
    this.inflight.add(finished);
    let called = false;
    return {
      ready,
      done: () => {
        if (called) return;
        called = true;
        this.inflight.delete(finished);
        release();
      },
    };
  }
}
