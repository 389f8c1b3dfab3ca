/**
 * The host's machine memory: one SharedArrayBuffer of 4 KiB machine pages, and the page
 * allocator, which lives in shared memory too so that the VMkernel (main thread) and every VMM
 * worker allocate and free pages directly, without messages.
 *
 * The allocator is a bitmap (one bit per machine page, 1 = allocated) claimed with
 * Atomics.compareExchange, word by word: no lock, so a worker that is terminated at any point
 * can never leave the allocator locked. A rotating hint keeps allocation amortized O(1).
 * allocate() hands out a zeroed page; free() of a page that is not allocated is refused.
 *
 *   handle = { pageCount, pages, allocMap, ctl }   (all SharedArrayBuffers, structured-cloned
 *                                                   to a worker, which calls attach(handle))
 */
import { EsxError, MIB, PAGES_PER_MIB, PAGE_SIZE } from '@esxemu/shared/core';

/** A typed array addresses at most 4 GiB, so one machine memory does too. */
export const MAX_MACHINE_MEMORY_MIB = 4096;

/** ctl words (Int32Array). */
const CTL_USED = 0;
const CTL_HINT = 1;
const CTL_WORDS = 4;

const FULL_WORD = -1;

export interface MachineMemoryHandle {
  pageCount: number;
  pages: SharedArrayBuffer;
  allocMap: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
}

export class MachineMemory {
  readonly pageCount: number;
  /** All machine pages, PAGE_SIZE bytes each. */
  readonly bytes: Uint8Array;
  private readonly map: Int32Array;
  private readonly ctl: Int32Array;
  private readonly h: MachineMemoryHandle;

  private constructor(h: MachineMemoryHandle) {
    if (!(Number.isInteger(h.pageCount) && h.pageCount > 0) || h.pages.byteLength < h.pageCount * PAGE_SIZE) {
      throw new EsxError('INVALID_ARGUMENT', `machine memory handle is inconsistent (${h.pageCount} pages, ${h.pages.byteLength} bytes)`);
    }
    this.h = h;
    this.pageCount = h.pageCount;
    this.bytes = new Uint8Array(h.pages, 0, h.pageCount * PAGE_SIZE);
    this.map = new Int32Array(h.allocMap);
    this.ctl = new Int32Array(h.ctl);
  }

  /** Create the machine memory of a host: `memoryMiB` of zeroed pages, all free. */
  static create(memoryMiB: number): MachineMemory {
    if (!(Number.isInteger(memoryMiB) && memoryMiB >= 1 && memoryMiB <= MAX_MACHINE_MEMORY_MIB)) {
      throw new EsxError('INVALID_ARGUMENT', `machine memory must be an integer from 1 to ${MAX_MACHINE_MEMORY_MIB} MiB, got ${memoryMiB}`);
    }
    return MachineMemory.createPages(memoryMiB * PAGES_PER_MIB);
  }

  /** Create a machine memory of exactly `pageCount` pages (tests use small ones). */
  static createPages(pageCount: number): MachineMemory {
    if (!(Number.isInteger(pageCount) && pageCount >= 1 && pageCount <= (MAX_MACHINE_MEMORY_MIB * MIB) / PAGE_SIZE)) {
      throw new EsxError('INVALID_ARGUMENT', `machine memory must have 1 to ${(MAX_MACHINE_MEMORY_MIB * MIB) / PAGE_SIZE} pages, got ${pageCount}`);
    }
    const words = Math.ceil(pageCount / 32);
    const map = new Int32Array(new SharedArrayBuffer(words * 4));
    // Bits past the last page are permanently "allocated" so they are never handed out.
    const tail = pageCount & 31;
    if (tail !== 0) map[words - 1] = ~((1 << tail) - 1);
    return new MachineMemory({
      pageCount,
      pages: new SharedArrayBuffer(pageCount * PAGE_SIZE),
      allocMap: map.buffer as SharedArrayBuffer,
      ctl: new SharedArrayBuffer(CTL_WORDS * 4),
    });
  }

  /** Rebuild the view of an existing machine memory (in a worker) from its shared buffers. */
  static attach(h: MachineMemoryHandle): MachineMemory {
    return new MachineMemory(h);
  }

  handle(): MachineMemoryHandle {
    return this.h;
  }

  get usedPages(): number {
    return Atomics.load(this.ctl, CTL_USED);
  }

  get freePages(): number {
    return this.pageCount - this.usedPages;
  }

  get memoryMiB(): number {
    return this.pageCount / PAGES_PER_MIB;
  }

  /** Allocate a zeroed machine page; returns its number, or -1 when none is left. */
  allocate(): number {
    const map = this.map;
    const n = map.length;
    let w = Atomics.load(this.ctl, CTL_HINT);
    if (!(w >= 0 && w < n)) w = 0;
    for (let scanned = 0; scanned < n; scanned++) {
      let cur = Atomics.load(map, w);
      while (cur !== FULL_WORD) {
        const bit = ~cur & ((cur + 1) | 0); // lowest clear bit
        const prev = Atomics.compareExchange(map, w, cur, cur | bit);
        if (prev === cur) {
          Atomics.add(this.ctl, CTL_USED, 1);
          Atomics.store(this.ctl, CTL_HINT, (cur | bit) === FULL_WORD ? (w + 1) % n : w);
          const mpn = w * 32 + (31 - Math.clz32(bit));
          this.bytes.fill(0, mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE);
          return mpn;
        }
        cur = prev;
      }
      w = w + 1 === n ? 0 : w + 1;
    }
    return -1;
  }

  /** Free an allocated page. Freeing a page that is not allocated throws (and changes nothing). */
  free(mpn: number): void {
    if (!(Number.isInteger(mpn) && mpn >= 0 && mpn < this.pageCount)) {
      throw new EsxError('INTERNAL', `machine page ${mpn} out of range 0..${this.pageCount - 1}`);
    }
    const bit = 1 << (mpn & 31);
    const prev = Atomics.and(this.map, mpn >>> 5, ~bit);
    if ((prev & bit) === 0) throw new EsxError('INTERNAL', `machine page ${mpn} freed but not allocated`);
    Atomics.sub(this.ctl, CTL_USED, 1);
  }

  isAllocated(mpn: number): boolean {
    return (Atomics.load(this.map, mpn >>> 5) & (1 << (mpn & 31))) !== 0;
  }

  /** The bytes of one machine page (a view, not a copy). */
  page(mpn: number): Uint8Array {
    return this.bytes.subarray(mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE);
  }
}
