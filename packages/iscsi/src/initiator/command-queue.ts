/**
 * Commands waiting to be sent: FIFO, bounded. They wait here while the target's command window
 * is closed, while the session's queue depth is reached, or while a connection is being
 * recovered. Reissued commands go back to the front, in their original order.
 */
import { EsxError } from '@esxemu/shared';
import type { Task } from './task.js';

export class CommandQueue {
  private items: Task[] = [];
  readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get length(): number {
    return this.items.length;
  }

  /** Queue a new command; throws INSUFFICIENT_RESOURCES when the queue is full. */
  push(task: Task): void {
    if (this.items.length >= this.capacity) {
      throw new EsxError('INSUFFICIENT_RESOURCES', `iSCSI command queue full (${this.capacity} commands waiting)`, { reason: 'QUEUE_FULL', capacity: this.capacity });
    }
    task.state = 'queued';
    task.queuedSinceMs = Date.now();
    this.items.push(task);
  }

  /** Put tasks back at the front (reissue after recovery), keeping their order. */
  requeueFront(tasks: readonly Task[]): void {
    for (const t of tasks) {
      t.state = 'queued';
      t.queuedSinceMs = Date.now();
      t.resetAttempt();
    }
    this.items.unshift(...tasks);
  }

  shift(): Task | undefined {
    return this.items.shift();
  }

  /** Remove and return the tasks matching `pred`. */
  removeWhere(pred: (t: Task) => boolean): Task[] {
    const out: Task[] = [];
    this.items = this.items.filter((t) => (pred(t) ? (out.push(t), false) : true));
    return out;
  }

  forEach(fn: (t: Task) => void): void {
    for (const t of this.items) fn(t);
  }

  /** Restart every queued task's wait clock (the session came back). */
  restartClocks(now = Date.now()): void {
    for (const t of this.items) t.queuedSinceMs = now;
  }

  /** Remove and return every task (to fail them). */
  drain(): Task[] {
    const all = this.items;
    this.items = [];
    return all;
  }
}
