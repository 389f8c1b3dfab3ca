/**
 * Reusable data buffers: what backstore reads fill and what a write's Data-Out is collected in.
 * A READ of 64 KiB at 30 000 IOPS would otherwise allocate 2 GB/s of ArrayBuffers (Node's own
 * slab only serves allocations under 4 KiB), and the garbage collector would spend a fifth of
 * the target's time finalizing them.
 *
 * Size classes are powers of two from 4 KiB to 1 MiB; a request outside them is a plain
 * allocation (below 4 KiB that is Node's slab, as cheap as a pool). Free buffers are kept up to `maxFreeBytes` in all; beyond that a released buffer
 * is left to the garbage collector.
 *
 * Ownership is the whole point and is checked, not trusted:
 *  - take() hands out a Buffer over an ArrayBuffer the pool created and marks it as out;
 *  - release() takes it back only if its ArrayBuffer is one of the pool's and is out. Releasing
 *    a buffer the pool did not issue (a memory LUN's copy, a sense buffer) or releasing twice does
 *    nothing, so a caller may release any response buffer without knowing where it came from.
 *  - A buffer that is never released is simply collected: forgetting costs an allocation, never
 *    correctness. Releasing too early would be a bug (the bytes would change under a pending
 *    write), so the transport releases only from the socket's write callback.
 */
const MIN_CLASS = 4096;
const MAX_CLASS = 1024 * 1024;

export interface BufferPoolOptions {
  /** Bytes of free buffers kept for reuse (default 32 MiB). */
  maxFreeBytes?: number;
}

export interface BufferPoolStats {
  taken: number;
  reused: number;
  released: number;
  freeBytes: number;
}

export class BufferPool {
  private readonly maxFreeBytes: number;
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly out = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;
  private readonly counters = { taken: 0, reused: 0, released: 0 };

  constructor(o: BufferPoolOptions = {}) {
    this.maxFreeBytes = o.maxFreeBytes ?? 32 * 1024 * 1024;
  }

  get stats(): BufferPoolStats {
    return { ...this.counters, freeBytes: this.freeBytes };
  }

  /** A buffer of exactly `length` bytes with unspecified contents. */
  take(length: number): Buffer {
    if (length < MIN_CLASS || length > MAX_CLASS) return Buffer.allocUnsafe(length);
    const size = classOf(length);
    this.counters.taken++;
    let ab = this.free.get(size)?.pop();
    if (ab) {
      this.freeBytes -= size;
      this.counters.reused++;
    } else {
      ab = new ArrayBuffer(size);
    }
    this.out.add(ab);
    return Buffer.from(ab, 0, length);
  }

  /** Give a buffer back once nothing refers to its bytes any more (see the ownership rules above). */
  release(buf: Buffer | null | undefined): void {
    if (!buf) return;
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || !this.out.has(ab)) return;
    this.out.delete(ab);
    this.counters.released++;
    if (this.freeBytes + ab.byteLength > this.maxFreeBytes) return;
    let list = this.free.get(ab.byteLength);
    if (!list) this.free.set(ab.byteLength, (list = []));
    list.push(ab);
    this.freeBytes += ab.byteLength;
  }
}

function classOf(length: number): number {
  return 2 ** Math.ceil(Math.log2(length));
}

/** The pool file backstores read into and write collectors fill; the target's sessions give back to it. */
export const dataBuffers = new BufferPool();
