/**
 * A bitmap over a Uint32Array that may live in a SharedArrayBuffer, so that the VMkernel (main
 * thread) and a VMM worker see the same bits. Writers that race with a harvester use the
 * atomic operations; `harvest` takes and clears the set bits word by word with Atomics.exchange
 * so no bit set concurrently is lost.
 */
export class Bitmap {
  readonly words: Uint32Array;
  readonly size: number;

  constructor(size: number, buffer?: SharedArrayBuffer | ArrayBuffer) {
    const nwords = Bitmap.wordsFor(size);
    if (buffer) {
      if (buffer.byteLength < nwords * 4) throw new RangeError(`bitmap buffer too small: ${buffer.byteLength} bytes for ${size} bits`);
      this.words = new Uint32Array(buffer, 0, nwords);
    } else {
      this.words = new Uint32Array(new SharedArrayBuffer(nwords * 4));
    }
    this.size = size;
  }

  static wordsFor(size: number): number {
    return Math.ceil(size / 32);
  }

  static bytesFor(size: number): number {
    return Bitmap.wordsFor(size) * 4;
  }

  get buffer(): SharedArrayBuffer | ArrayBuffer {
    return this.words.buffer as SharedArrayBuffer | ArrayBuffer;
  }

  private check(i: number): void {
    if (!(i >= 0 && i < this.size)) throw new RangeError(`bit ${i} out of range 0..${this.size - 1}`);
  }

  /** Set a bit atomically; safe against concurrent harvest. */
  set(i: number): void {
    this.check(i);
    Atomics.or(this.words, i >>> 5, 1 << (i & 31));
  }

  clear(i: number): void {
    this.check(i);
    Atomics.and(this.words, i >>> 5, ~(1 << (i & 31)));
  }

  test(i: number): boolean {
    this.check(i);
    return (Atomics.load(this.words, i >>> 5) & (1 << (i & 31))) !== 0;
  }

  clearAll(): void {
    for (let w = 0; w < this.words.length; w++) Atomics.store(this.words, w, 0);
  }

  count(): number {
    let n = 0;
    for (let w = 0; w < this.words.length; w++) n += popcount32(Atomics.load(this.words, w));
    return n;
  }

  /** Indices of the set bits, ascending, without clearing them. */
  list(): number[] {
    const out: number[] = [];
    for (let w = 0; w < this.words.length; w++) pushBits(out, w, Atomics.load(this.words, w));
    return out;
  }

  /** Take the set bits and clear them atomically (one word at a time). */
  harvest(): number[] {
    const out: number[] = [];
    for (let w = 0; w < this.words.length; w++) {
      if (this.words[w] === 0) continue;
      pushBits(out, w, Atomics.exchange(this.words, w, 0));
    }
    return out;
  }
}

function pushBits(out: number[], w: number, bits: number): void {
  while (bits !== 0) {
    const low = bits & -bits;
    out.push(w * 32 + (31 - Math.clz32(low)));
    bits ^= low;
  }
}

export function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
