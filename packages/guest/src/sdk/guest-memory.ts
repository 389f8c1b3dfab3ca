/**
 * GuestMemory: the guest MMU. Guests never touch raw buffers; every access goes through here,
 * translated guest page -> machine page by the VM's pmap. On a write it
 *   (a) sets the page's bit in the dirty bitmap while dirty logging is on (migration pre-copy),
 *   (b) breaks sharing of a copy-on-write page (transparent page sharing),
 *   (c) faults in a page that has no machine page yet (first touch, or swapped out).
 * A read of a page that was never written returns zeros and allocates nothing.
 *
 * Ordering for pre-copy: the dirty bit of a page is set AFTER the bytes are in machine memory.
 * The VMkernel harvests the bitmap (Atomics.exchange) and then copies the pages it took, while
 * the guest keeps running. Were the bit set first, a harvest between the bit and the copy of the
 * bytes would send the old contents and clear the only record that the page changed. Setting it
 * after means a page whose bit was harvested is copied after its bytes landed, and a write still
 * in flight leaves its bit set for the next round.
 *
 * The pmap, flags, bitmaps and control words live in SharedArrayBuffers owned by the VMkernel
 * (main thread), which reads them while the VMM worker runs the guest.
 */
import { createHash } from 'node:crypto';
import { Bitmap, PAGE_SHIFT, PAGE_SIZE } from '@esxemu/shared/core';

/** pmap entry of a guest page with no machine page. */
export const PMAP_NONE = -1;

/** Per-page flags (Uint8Array, one byte per guest page). */
export const PF_COW = 1 << 0;
export const PF_SWAPPED = 1 << 1;

/** Control words shared by the VMkernel and the VMM (Int32Array). */
export const CTL_DIRTY_LOG = 0;
export const CTL_WORDS = 8;

/** What the VMkernel provides to a guest's MMU. */
export interface MmuBacking {
  /** All machine memory of the host, 4 KiB pages. */
  machine: Uint8Array;
  /** Guest page number -> machine page number, PMAP_NONE if not present. */
  pmap: Int32Array;
  /** Per-guest-page flags (PF_*). */
  flags: Uint8Array;
  /** Pages written while dirty logging is on. */
  dirty: Bitmap;
  /** Pages read or written since the VMkernel last sampled them (active memory). */
  accessed: Bitmap;
  /** Control words (CTL_*). */
  control: Int32Array;
  /**
   * Give guest page `gpn` a machine page, zeroed or with its former contents (swapped in), map
   * it and return its number. Throws EsxError INSUFFICIENT_RESOURCES when none can be had.
   */
  fault(gpn: number): number;
  /** Give a copy-on-write page a private copy, map it and return the new machine page. */
  breakCow?(gpn: number): number;
}

export class GuestMemory {
  readonly pages: number;
  readonly bytes: number;
  private readonly b: MmuBacking;

  constructor(backing: MmuBacking) {
    this.b = backing;
    this.pages = backing.pmap.length;
    this.bytes = this.pages * PAGE_SIZE;
    if (backing.flags.length < this.pages) throw new RangeError('flags shorter than pmap');
    if (backing.dirty.size < this.pages || backing.accessed.size < this.pages) throw new RangeError('bitmaps shorter than pmap');
  }

  get dirtyLogging(): boolean {
    return Atomics.load(this.b.control, CTL_DIRTY_LOG) !== 0;
  }

  private checkRange(gpa: number, len: number): void {
    if (!(Number.isInteger(gpa) && Number.isInteger(len) && gpa >= 0 && len >= 0 && gpa + len <= this.bytes)) {
      throw new RangeError(`guest access ${gpa}+${len} outside guest memory of ${this.bytes} bytes`);
    }
  }

  /** Machine byte offset of `gpn` for reading, or -1 if the page reads as zeros. */
  private readBase(gpn: number): number {
    this.b.accessed.set(gpn);
    let mpn = this.b.pmap[gpn]!;
    if (mpn === PMAP_NONE) {
      if ((this.b.flags[gpn]! & PF_SWAPPED) === 0) return -1;
      mpn = this.b.fault(gpn);
    }
    return mpn * PAGE_SIZE;
  }

  /**
   * Machine byte offset of `gpn` for writing: faults, breaks sharing. The caller writes the bytes
   * and then calls `written(gpn)` (see the ordering note at the top of the file).
   */
  private writeBase(gpn: number): number {
    this.b.accessed.set(gpn);
    let mpn = this.b.pmap[gpn]!;
    if (mpn === PMAP_NONE) {
      mpn = this.b.fault(gpn);
    } else if ((this.b.flags[gpn]! & PF_COW) !== 0) {
      if (!this.b.breakCow) throw new Error(`page ${gpn} is copy-on-write but the VMkernel offers no breakCow`);
      mpn = this.b.breakCow(gpn);
    }
    return mpn * PAGE_SIZE;
  }

  /** Log `gpn` dirty once its new bytes are in machine memory. */
  private written(gpn: number): void {
    if (Atomics.load(this.b.control, CTL_DIRTY_LOG) !== 0) this.b.dirty.set(gpn);
  }

  readU32(gpa: number): number {
    this.checkRange(gpa, 4);
    if ((gpa & 3) !== 0) return new DataView(this.read(gpa, 4).buffer).getUint32(0, true);
    const base = this.readBase(gpa >>> PAGE_SHIFT);
    if (base < 0) return 0;
    const m = this.b.machine;
    const o = base + (gpa & (PAGE_SIZE - 1));
    return (m[o]! | (m[o + 1]! << 8) | (m[o + 2]! << 16) | (m[o + 3]! << 24)) >>> 0;
  }

  writeU32(gpa: number, value: number): void {
    this.checkRange(gpa, 4);
    if ((gpa & 3) !== 0) {
      const tmp = new Uint8Array(4);
      new DataView(tmp.buffer).setUint32(0, value >>> 0, true);
      this.write(gpa, tmp);
      return;
    }
    const gpn = gpa >>> PAGE_SHIFT;
    const base = this.writeBase(gpn);
    const m = this.b.machine;
    const o = base + (gpa & (PAGE_SIZE - 1));
    m[o] = value & 0xff;
    m[o + 1] = (value >>> 8) & 0xff;
    m[o + 2] = (value >>> 16) & 0xff;
    m[o + 3] = (value >>> 24) & 0xff;
    this.written(gpn);
  }

  /** Copy `len` bytes starting at `gpa` out of guest memory. */
  read(gpa: number, len: number): Uint8Array {
    this.checkRange(gpa, len);
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(len - done, PAGE_SIZE - off);
      const base = this.readBase(a >>> PAGE_SHIFT);
      if (base >= 0) out.set(this.b.machine.subarray(base + off, base + off + n), done);
      done += n;
    }
    return out;
  }

  /** Copy `data` into guest memory at `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    this.checkRange(gpa, data.length);
    let done = 0;
    while (done < data.length) {
      const a = gpa + done;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(data.length - done, PAGE_SIZE - off);
      const gpn = a >>> PAGE_SHIFT;
      const base = this.writeBase(gpn);
      this.b.machine.set(data.subarray(done, done + n), base + off);
      this.written(gpn);
      done += n;
    }
  }

  fill(gpa: number, len: number, value: number): void {
    this.checkRange(gpa, len);
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(len - done, PAGE_SIZE - off);
      const gpn = a >>> PAGE_SHIFT;
      const base = this.writeBase(gpn);
      this.b.machine.fill(value & 0xff, base + off, base + off + n);
      this.written(gpn);
      done += n;
    }
  }

  /** Is guest page `gpn` backed by a machine page? */
  present(gpn: number): boolean {
    if (!(Number.isInteger(gpn) && gpn >= 0 && gpn < this.pages)) throw new RangeError(`guest page ${gpn} outside 0..${this.pages - 1}`);
    return this.b.pmap[gpn] !== PMAP_NONE;
  }

  /**
   * SHA-256 of the whole guest-physical address space as the guest sees it: never-written pages
   * count as zeros, swapped-out pages are faulted back in (their contents are not zeros). Does
   * not touch the accessed or dirty bits. Call it on a stopped vCPU.
   */
  hash(): string {
    const h = createHash('sha256');
    const zero = new Uint8Array(PAGE_SIZE);
    for (let gpn = 0; gpn < this.pages; gpn++) {
      let mpn = this.b.pmap[gpn]!;
      if (mpn === PMAP_NONE && (this.b.flags[gpn]! & PF_SWAPPED) !== 0) mpn = this.b.fault(gpn);
      if (mpn === PMAP_NONE) h.update(zero);
      else h.update(this.b.machine.subarray(mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE));
    }
    return h.digest('hex');
  }
}
