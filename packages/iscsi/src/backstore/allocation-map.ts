/**
 * Which parts of a thin LUN are allocated, at a fixed granularity (one bit per granule).
 *
 * The invariant every backstore keeps: a granule whose bit is clear reads as zeros. A write
 * sets the bits it touches before the data is written; an unmap clears only the granules it
 * covers completely, after their data has been zeroed or punched out. Partially covered
 * granules stay mapped (their unmapped part is zeroed), which SBC allows: a mapped LBA may hold
 * zeros. GET LBA STATUS reports the runs of this map.
 */
import { EsxError } from '@esxemu/shared';

export interface MappingRun {
  offset: number;
  length: number;
  mapped: boolean;
}

export class AllocationMap {
  readonly granuleBytes: number;
  readonly sizeBytes: number;
  readonly granules: number;
  /** One bit per granule, LSB first within each byte. */
  readonly bits: Uint8Array;

  constructor(sizeBytes: number, granuleBytes: number, bits?: Uint8Array) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new EsxError('INVALID_ARGUMENT', `bad size ${sizeBytes}`);
    if (!Number.isInteger(granuleBytes) || granuleBytes <= 0) throw new EsxError('INVALID_ARGUMENT', `bad granule ${granuleBytes}`);
    this.granuleBytes = granuleBytes;
    this.sizeBytes = sizeBytes;
    this.granules = Math.ceil(sizeBytes / granuleBytes);
    const nbytes = AllocationMap.bytesFor(sizeBytes, granuleBytes);
    if (bits && bits.length !== nbytes) throw new EsxError('INVALID_ARGUMENT', `allocation map of ${bits.length} bytes, expected ${nbytes}`);
    this.bits = bits ?? new Uint8Array(nbytes);
  }

  static bytesFor(sizeBytes: number, granuleBytes: number): number {
    return Math.ceil(Math.ceil(sizeBytes / granuleBytes) / 8);
  }

  isMapped(g: number): boolean {
    return (this.bits[g >>> 3]! & (1 << (g & 7))) !== 0;
  }

  /** Mark every granule touched by [offset, offset+length) mapped; returns the bitmap bytes changed. */
  markMapped(offset: number, length: number): { lo: number; hi: number } | null {
    if (length <= 0) return null;
    const g0 = Math.floor(offset / this.granuleBytes);
    const g1 = Math.ceil((offset + length) / this.granuleBytes);
    let lo = -1;
    let hi = -1;
    for (let g = g0; g < g1; g++) {
      if (this.isMapped(g)) continue;
      this.bits[g >>> 3]! |= 1 << (g & 7);
      if (lo < 0) lo = g >>> 3;
      hi = (g >>> 3) + 1;
    }
    return lo < 0 ? null : { lo, hi };
  }

  /** Granules [first, end) lying completely inside [offset, offset+length) (the last granule may be short). */
  coveredGranules(offset: number, length: number): { first: number; end: number } {
    const first = Math.ceil(offset / this.granuleBytes);
    const stop = offset + length;
    const end = stop >= this.sizeBytes ? this.granules : Math.floor(stop / this.granuleBytes);
    return { first, end: Math.max(first, end) };
  }

  /** Clear granules [first, end); returns the bitmap bytes changed. */
  clear(first: number, end: number): { lo: number; hi: number } | null {
    let lo = -1;
    let hi = -1;
    for (let g = first; g < end; g++) {
      if (!this.isMapped(g)) continue;
      this.bits[g >>> 3]! &= ~(1 << (g & 7));
      if (lo < 0) lo = g >>> 3;
      hi = (g >>> 3) + 1;
    }
    return lo < 0 ? null : { lo, hi };
  }

  setAll(): void {
    this.bits.fill(0xff);
    const tail = this.granules & 7;
    if (tail) this.bits[this.bits.length - 1] = (1 << tail) - 1;
  }

  countMapped(): number {
    let n = 0;
    for (let g = 0; g < this.granules; g++) if (this.isMapped(g)) n++;
    return n;
  }

  /**
   * Runs of mapped/unmapped bytes covering [offset, offset+length), clipped to that range,
   * at most maxRuns of them (the last run then stops early: the caller asks again from there).
   */
  runs(offset: number, length: number, maxRuns = 1024): MappingRun[] {
    const out: MappingRun[] = [];
    const stop = Math.min(offset + length, this.sizeBytes);
    let pos = offset;
    while (pos < stop && out.length < maxRuns) {
      const g = Math.floor(pos / this.granuleBytes);
      const mapped = this.isMapped(g);
      const same = mapped ? 0xff : 0x00;
      let h = g + 1;
      while (h < this.granules && h * this.granuleBytes < stop) {
        if ((h & 7) === 0 && h + 8 <= this.granules && this.bits[h >>> 3] === same) {
          h += 8; // a whole byte of equal bits
          continue;
        }
        if (this.isMapped(h) !== mapped) break;
        h++;
      }
      h = Math.min(h, this.granules);
      const end = Math.min(h * this.granuleBytes, stop);
      out.push({ offset: pos, length: end - pos, mapped });
      pos = end;
    }
    return out;
  }
}
