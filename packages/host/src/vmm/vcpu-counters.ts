/**
 * The vCPU's shared counters: a small Float64Array in a SharedArrayBuffer through which the VMM
 * publishes what its guest asks for and did, and the VMkernel publishes what it grants, with no
 * message on either path. Each slot has exactly one writer (named below), so plain aligned
 * 64-bit stores suffice; readers may see a value one tick old, never a mix of two.
 */

/** CPU the workload asks for, MHz (VMM writes). */
export const VC_DEMAND_MHZ = 0;
/** CPU the VMkernel grants, MHz (VMkernel writes). */
export const VC_ENTITLEMENT_MHZ = 1;
/** Virtual cycles the guest used since power-on (VMM writes). */
export const VC_CYCLES = 2;
/** Guest steps since boot (VMM writes). */
export const VC_STEPS = 3;
/** 1 while the vCPU runs, 0 while it is paused or stopped (VMM writes). */
export const VC_RUNNING = 4;
/** Real milliseconds the vCPU loop spent running guest steps since power-on (VMM writes). */
export const VC_REAL_MS = 5;
const VC_SLOTS = 8;

export class VcpuCounters {
  readonly f: Float64Array;

  constructor(buffer: SharedArrayBuffer = new SharedArrayBuffer(VC_SLOTS * 8)) {
    this.f = new Float64Array(buffer, 0, VC_SLOTS);
  }

  get buffer(): SharedArrayBuffer {
    return this.f.buffer as SharedArrayBuffer;
  }

  get demandMhz(): number {
    return this.f[VC_DEMAND_MHZ]!;
  }
  get entitlementMhz(): number {
    return this.f[VC_ENTITLEMENT_MHZ]!;
  }
  get cycles(): number {
    return this.f[VC_CYCLES]!;
  }
  get steps(): number {
    return this.f[VC_STEPS]!;
  }
  get running(): boolean {
    return this.f[VC_RUNNING] === 1;
  }
  get realMs(): number {
    return this.f[VC_REAL_MS]!;
  }

  set(slot: number, value: number): void {
    this.f[slot] = value;
  }
}
