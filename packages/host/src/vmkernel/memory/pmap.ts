/**
 * A VM's pmap: guest page number -> machine page number, with per-page flags, the dirty and
 * accessed bitmaps and the control words the guest MMU reads. Every array lives in a
 * SharedArrayBuffer: the VMkernel creates them at power-on, the VMM worker attaches to them, and
 * both see the same state.
 *
 * Writers: the pmap and flags are written by whoever holds the vCPU (the VMM worker while the VM
 * runs, the VMkernel once the worker is gone); the bitmaps use atomic operations on both sides.
 *
 * This is also the guest MMU's MmuBacking: fault() gives a guest page a zeroed machine page at
 * first touch, taken from the host's shared allocator.
 */
import { Bitmap, EsxError, PAGE_SIZE } from '@esxemu/shared/core';
import { CTL_DIRTY_LOG, CTL_WORDS, PF_SWAPPED, PMAP_NONE, type MmuBacking } from '@esxemu/guest';
import type { MachineMemory } from './machine-memory.js';

/** meta words (Int32Array): figures both sides read. */
const META_CONSUMED = 0;
const META_WORDS = 4;

export interface PmapHandle {
  pages: number;
  pmap: SharedArrayBuffer;
  flags: SharedArrayBuffer;
  dirty: SharedArrayBuffer;
  accessed: SharedArrayBuffer;
  control: SharedArrayBuffer;
  meta: SharedArrayBuffer;
}

export class Pmap implements MmuBacking {
  readonly pages: number;
  readonly machine: Uint8Array;
  readonly pmap: Int32Array;
  readonly flags: Uint8Array;
  readonly dirty: Bitmap;
  readonly accessed: Bitmap;
  readonly control: Int32Array;
  private readonly meta: Int32Array;
  private readonly mm: MachineMemory;
  private readonly h: PmapHandle;
  /** Pages accessed during the last completed sampling period. */
  private lastActivePages = 0;
  private sampled = false;

  private constructor(h: PmapHandle, mm: MachineMemory) {
    this.h = h;
    this.mm = mm;
    this.pages = h.pages;
    this.machine = mm.bytes;
    this.pmap = new Int32Array(h.pmap, 0, h.pages);
    this.flags = new Uint8Array(h.flags, 0, h.pages);
    this.dirty = new Bitmap(h.pages, h.dirty);
    this.accessed = new Bitmap(h.pages, h.accessed);
    this.control = new Int32Array(h.control, 0, CTL_WORDS);
    this.meta = new Int32Array(h.meta, 0, META_WORDS);
  }

  /** A new, empty pmap of `pages` guest pages over the host's machine memory. */
  static create(pages: number, mm: MachineMemory): Pmap {
    if (!(Number.isInteger(pages) && pages >= 1 && pages <= mm.pageCount)) {
      throw new EsxError('INVALID_ARGUMENT', `a pmap needs 1 to ${mm.pageCount} guest pages, got ${pages}`);
    }
    const pmap = new Int32Array(new SharedArrayBuffer(pages * 4));
    pmap.fill(PMAP_NONE);
    return new Pmap(
      {
        pages,
        pmap: pmap.buffer as SharedArrayBuffer,
        flags: new SharedArrayBuffer(pages),
        dirty: new SharedArrayBuffer(Bitmap.bytesFor(pages)),
        accessed: new SharedArrayBuffer(Bitmap.bytesFor(pages)),
        control: new SharedArrayBuffer(CTL_WORDS * 4),
        meta: new SharedArrayBuffer(META_WORDS * 4),
      },
      mm,
    );
  }

  /** The same pmap seen from another thread. */
  static attach(h: PmapHandle, mm: MachineMemory): Pmap {
    return new Pmap(h, mm);
  }

  handle(): PmapHandle {
    return this.h;
  }

  /** First touch: map a zeroed machine page. */
  fault(gpn: number): number {
    if (!(gpn >= 0 && gpn < this.pages)) throw new RangeError(`guest page ${gpn} out of range 0..${this.pages - 1}`);
    const cur = Atomics.load(this.pmap, gpn);
    if (cur !== PMAP_NONE) return cur;
    if ((this.flags[gpn]! & PF_SWAPPED) !== 0) {
      throw new EsxError('NOT_IMPLEMENTED', `guest page ${gpn} is swapped out and swap-in is not implemented yet`);
    }
    const mpn = this.mm.allocate();
    if (mpn < 0) {
      throw new EsxError('INSUFFICIENT_RESOURCES', `host machine memory exhausted (${this.mm.pageCount} pages in use): cannot back guest page ${gpn}`, {
        gpn,
        machinePages: this.mm.pageCount,
      });
    }
    Atomics.store(this.pmap, gpn, mpn);
    Atomics.add(this.meta, META_CONSUMED, 1);
    return mpn;
  }

  /** Machine pages backing this VM. */
  get consumedPages(): number {
    return Atomics.load(this.meta, META_CONSUMED);
  }

  get dirtyLogging(): boolean {
    return Atomics.load(this.control, CTL_DIRTY_LOG) !== 0;
  }

  setDirtyLogging(on: boolean): void {
    Atomics.store(this.control, CTL_DIRTY_LOG, on ? 1 : 0);
  }

  /** A copy of guest page `gpn` as the guest sees it (zeros if absent); touches no bit. */
  readPage(gpn: number): Uint8Array {
    if (!(gpn >= 0 && gpn < this.pages)) throw new RangeError(`guest page ${gpn} out of range 0..${this.pages - 1}`);
    const mpn = Atomics.load(this.pmap, gpn);
    if (mpn === PMAP_NONE) return new Uint8Array(PAGE_SIZE);
    return this.machine.slice(mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE);
  }

  /**
   * End a sampling period: take the accessed bits (clearing them) and remember their count as
   * the VM's active pages. Returns that count.
   */
  sampleActive(): number {
    this.lastActivePages = this.accessed.harvest().length;
    this.sampled = true;
    return this.lastActivePages;
  }

  /** Active pages: the last sample, or the pages accessed so far if none was taken yet. */
  get activePages(): number {
    return this.sampled ? this.lastActivePages : this.accessed.count();
  }

  /**
   * Free every machine page of the VM and forget all mappings, flags and bits. Only the holder
   * of the vCPU may call it (the VM is stopped, or the VMM resets it). Returns the pages freed.
   */
  release(): number {
    let freed = 0;
    for (let gpn = 0; gpn < this.pages; gpn++) {
      const mpn = Atomics.exchange(this.pmap, gpn, PMAP_NONE);
      if (mpn !== PMAP_NONE) {
        this.mm.free(mpn);
        freed++;
      }
    }
    Atomics.sub(this.meta, META_CONSUMED, freed);
    this.flags.fill(0);
    this.dirty.clearAll();
    this.accessed.clearAll();
    this.lastActivePages = 0;
    this.sampled = false;
    return freed;
  }
}
