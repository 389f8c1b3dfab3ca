/** Deterministic, seed-dependent test data (xorshift32): a block written at the wrong place is detected. */
export function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(Math.ceil(bytes / 4) * 4);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b.subarray(0, bytes);
}
