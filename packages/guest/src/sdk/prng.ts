/**
 * xoshiro128** (Blackman & Vigna) with its whole state in four vCPU registers, so the guest's
 * randomness is part of the VM's state: the same seed gives the same run, migrated or not.
 */
import { R_PRNG0, R_PRNG1, R_PRNG2, R_PRNG3, type Registers } from './registers.js';

/** Seed the PRNG registers from a 32-bit seed with splitmix32, never all zero. */
export function seedPrng(regs: Registers, seed: number): void {
  let s = seed >>> 0;
  for (const i of [R_PRNG0, R_PRNG1, R_PRNG2, R_PRNG3]) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    regs.set(i, z);
  }
  if ((regs.get(R_PRNG0) | regs.get(R_PRNG1) | regs.get(R_PRNG2) | regs.get(R_PRNG3)) === 0) regs.set(R_PRNG0, 1);
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Next 32-bit unsigned value. */
export function nextU32(regs: Registers): number {
  const r = regs.r;
  const s0 = r[R_PRNG0]!;
  const s1 = r[R_PRNG1]!;
  const s2 = r[R_PRNG2]!;
  const s3 = r[R_PRNG3]!;
  const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
  const t = (s1 << 9) >>> 0;
  let n2 = (s2 ^ s0) >>> 0;
  let n3 = (s3 ^ s1) >>> 0;
  const n1 = (s1 ^ n2) >>> 0;
  const n0 = (s0 ^ n3) >>> 0;
  n2 = (n2 ^ t) >>> 0;
  n3 = rotl(n3, 11);
  r[R_PRNG0] = n0;
  r[R_PRNG1] = n1;
  r[R_PRNG2] = n2;
  r[R_PRNG3] = n3;
  return result;
}

/** Uniform integer in [0, n) for n <= 2^32 (multiply-shift, tiny bias acceptable for workloads). */
export function nextBelow(regs: Registers, n: number): number {
  return Math.floor((nextU32(regs) / 0x1_0000_0000) * n);
}
