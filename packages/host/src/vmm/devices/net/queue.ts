/**
 * The NIC's receive queue: the requests the device accepted that the guest has not taken yet,
 * in arrival order, bounded. Its state is the frames themselves (no sockets), so it can be
 * saved at quiesce and restored in another VMM (Firecracker's Persist: save / restore).
 */
import { EsxError } from '@esxemu/shared/core';
import type { NicRequest } from '@esxemu/guest';

export const NIC_QUEUE_STATE_VERSION = 1;

export interface NicQueueState {
  version: number;
  capacity: number;
  frames: NicRequest[];
}

export class RequestQueue {
  private frames: NicRequest[] = [];

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new EsxError('INVALID_ARGUMENT', `NIC queue capacity must be a positive integer, got ${capacity}`);
  }

  get length(): number {
    return this.frames.length;
  }

  get full(): boolean {
    return this.frames.length >= this.capacity;
  }

  /** Append a frame; false (and nothing queued) when the queue is full. */
  push(frame: NicRequest): boolean {
    if (this.full) return false;
    this.frames.push(frame);
    return true;
  }

  shift(): NicRequest | null {
    return this.frames.shift() ?? null;
  }

  /** Drop the frame with this id if it is still queued. */
  remove(id: number): boolean {
    const i = this.frames.findIndex((f) => f.id === id);
    if (i < 0) return false;
    this.frames.splice(i, 1);
    return true;
  }

  /** Take every queued frame. */
  clear(): NicRequest[] {
    const all = this.frames;
    this.frames = [];
    return all;
  }

  save(): NicQueueState {
    return {
      version: NIC_QUEUE_STATE_VERSION,
      capacity: this.capacity,
      frames: this.frames.map((f) => ({ id: f.id, method: f.method, path: f.path, body: f.body.slice() })),
    };
  }

  /** A queue from saved state; refuses state of another version or over capacity. */
  static restore(state: NicQueueState): RequestQueue {
    if (!state || state.version !== NIC_QUEUE_STATE_VERSION) {
      throw new EsxError('INVALID_ARGUMENT', `NIC queue state version ${String(state?.version)} is not ${NIC_QUEUE_STATE_VERSION}`);
    }
    const q = new RequestQueue(state.capacity);
    if (!Array.isArray(state.frames) || state.frames.length > q.capacity) {
      throw new EsxError('INVALID_ARGUMENT', `NIC queue state holds more frames than its capacity of ${q.capacity}`);
    }
    for (const f of state.frames) {
      if (!(Number.isInteger(f.id) && typeof f.method === 'string' && typeof f.path === 'string' && f.body instanceof Uint8Array)) {
        throw new EsxError('INVALID_ARGUMENT', 'NIC queue state holds a malformed frame');
      }
      q.frames.push({ id: f.id, method: f.method, path: f.path, body: f.body.slice() });
    }
    return q;
  }
}
