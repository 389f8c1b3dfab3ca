/**
 * The vCPU register file: 64 32-bit registers in a SharedArrayBuffer. Everything a workload
 * knows between two steps lives here or in guest memory, never in JavaScript variables, so
 * that a VM can be stopped at any step boundary, serialized and resumed elsewhere.
 *
 * Fixed registers (all workloads):
 *   R_STEP_LO/HI   steps executed since boot (64-bit)
 *   R_PRNG0..3     xoshiro128** state
 *   R_WORKLOAD     workload kind id
 *   R_CYCLES_LO/HI virtual CPU cycles consumed since boot (64-bit, in units of 1,000 cycles)
 * R_GP0.. are the workload's own.
 */
export const REGISTER_COUNT = 64;
export const R_STEP_LO = 0;
export const R_STEP_HI = 1;
export const R_PRNG0 = 2;
export const R_PRNG1 = 3;
export const R_PRNG2 = 4;
export const R_PRNG3 = 5;
export const R_WORKLOAD = 6;
export const R_KCYCLES_LO = 7;
export const R_KCYCLES_HI = 8;
/** First general-purpose register free for workloads. */
export const R_GP0 = 16;

export class Registers {
  readonly r: Uint32Array;

  constructor(buffer: SharedArrayBuffer | ArrayBuffer = new SharedArrayBuffer(REGISTER_COUNT * 4)) {
    if (buffer.byteLength < REGISTER_COUNT * 4) throw new RangeError('register buffer too small');
    this.r = new Uint32Array(buffer, 0, REGISTER_COUNT);
  }

  get buffer(): SharedArrayBuffer | ArrayBuffer {
    return this.r.buffer as SharedArrayBuffer | ArrayBuffer;
  }

  get(i: number): number {
    return this.r[i]!;
  }

  set(i: number, v: number): void {
    this.r[i] = v >>> 0;
  }

  /** A 53-bit-safe unsigned value stored in two registers. */
  get64(lo: number): number {
    return this.r[lo + 1]! * 0x1_0000_0000 + this.r[lo]!;
  }

  set64(lo: number, v: number): void {
    this.r[lo] = v >>> 0;
    this.r[lo + 1] = Math.floor(v / 0x1_0000_0000) >>> 0;
  }

  get steps(): number {
    return this.get64(R_STEP_LO);
  }

  /** Serialize (for migration, snapshot): a copy of all registers. */
  save(): Uint32Array {
    return Uint32Array.from(this.r);
  }

  restore(state: Uint32Array): void {
    if (state.length !== REGISTER_COUNT) throw new RangeError(`register state has ${state.length} registers, expected ${REGISTER_COUNT}`);
    this.r.set(state);
  }
}
