/**
 * The messages of a VM's disk channel, between the VMM's disk device (worker thread) and the
 * VMkernel's disk service (main thread), on a MessagePort of their own:
 *
 *   VMM disk device                         VMkernel disk service
 *      | -- DiskCall {tag, op, offset, length, data?} --> |  check, then backend read/write/flush
 *      | <-- DiskReply {tag, ok, data?, error?} --------- |  once the backend acknowledged
 *
 * Each call is answered exactly once. A message holds one call or reply, or a batch (an array)
 * of them: the VMM posts the calls a guest step submitted in one message, the VMkernel the
 * replies of one turn of its event loop in one, so the two threads wake once per batch, not
 * once per request (batches are at most the device's queue depth). Write data and read data travel as transferred buffers;
 * a write's buffer comes back with its successful reply (`returned`) so the VMM reuses it: in
 * steady state no buffer is allocated per request on either thread (a 64 KiB write each time
 * would keep the VMkernel's garbage collector busy).
 * Both sides check what they receive (a worker is code we wrote, but a bug there must not reach
 * the datastore as a wild write).
 */
export type DiskCallOp = 'read' | 'write' | 'flush';

export interface DiskCall {
  tag: number;
  op: DiskCallOp;
  offset: number;
  length: number;
  data?: Uint8Array;
}

export interface DiskReply {
  tag: number;
  ok: boolean;
  data?: Uint8Array;
  /** A successful write's data buffer, given back for reuse. */
  returned?: Uint8Array;
  error?: { code: string; message: string };
}

const OPS: ReadonlySet<string> = new Set<DiskCallOp>(['read', 'write', 'flush']);

export function isDiskCall(m: unknown): m is DiskCall {
  if (!m || typeof m !== 'object') return false;
  const c = m as Record<string, unknown>;
  return (
    Number.isInteger(c['tag']) &&
    typeof c['op'] === 'string' &&
    OPS.has(c['op']) &&
    Number.isInteger(c['offset']) &&
    Number.isInteger(c['length']) &&
    (c['data'] === undefined || c['data'] instanceof Uint8Array)
  );
}

export function isDiskReply(m: unknown): m is DiskReply {
  if (!m || typeof m !== 'object') return false;
  const r = m as Record<string, unknown>;
  return Number.isInteger(r['tag']) && typeof r['ok'] === 'boolean' && (r['data'] === undefined || r['data'] instanceof Uint8Array) && (r['returned'] === undefined || r['returned'] instanceof Uint8Array);
}

/**
 * Messages posted together: what is pushed during one synchronous run (a guest step, a burst of
 * completions) leaves in one postMessage after it, as a microtask, with every buffer to
 * transfer. Both ends of the disk channel use it.
 */
export class PostBatch<T> {
  private items: T[] = [];
  private transfer: ArrayBuffer[] = [];
  private scheduled = false;

  constructor(private readonly post: (message: T | T[], transfer: ArrayBuffer[]) => void) {}

  push(item: T, transfer?: ArrayBuffer): void {
    this.items.push(item);
    if (transfer) this.transfer.push(transfer);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.items;
    const transfer = this.transfer;
    this.items = [];
    this.transfer = [];
    if (items.length) this.post(items.length === 1 ? items[0]! : items, transfer);
  }
}

/** A view that is its whole ArrayBuffer (so transferring that buffer moves exactly these bytes). */
export function whole(v: Uint8Array): boolean {
  return v.byteOffset === 0 && v.byteLength === v.buffer.byteLength && v.buffer instanceof ArrayBuffer;
}
