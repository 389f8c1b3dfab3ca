/**
 * The VMkernel's CPU scheduler, in virtual time. The host's capacity is cores x MHz; each VM
 * asks for its workload's demand (published by its VMM), capped at vcpus x MHz per core. The
 * scheduler grants the demands max-min fairly with equal shares (water-filling): a VM that asks
 * for less than its fair share gets all it asks, the rest is split evenly among the others.
 * The grant (entitlement) is written to the VM's shared vCPU counters; the VMM runs the guest
 * at min(demand, entitlement).
 *
 * Nothing here measures the real machine: the figures are virtual, so DRS and the stats do not
 * see the noise of the few real cores every host process shares.
 */

export interface CpuClaim {
  /** What the workload asks for, MHz. */
  demandMhz: number;
  /** The most it may get (vcpus x MHz per core), MHz. */
  capMhz: number;
}

/** Max-min fair grants of `claims` from `capacityMhz`, equal shares; same order as `claims`. */
export function maxMinFair(capacityMhz: number, claims: readonly CpuClaim[]): number[] {
  const wants = claims.map((c) => Math.max(0, Math.min(finiteOr0(c.demandMhz), finiteOr0(c.capMhz))));
  const order = wants.map((_, i) => i).sort((a, b) => wants[a]! - wants[b]!);
  const grants = new Array<number>(claims.length).fill(0);
  let remaining = Math.max(0, capacityMhz);
  for (let k = 0; k < order.length; k++) {
    const i = order[k]!;
    const share = remaining / (order.length - k);
    const g = Math.min(wants[i]!, share);
    grants[i] = g;
    remaining -= g;
  }
  return grants;
}

function finiteOr0(x: number): number {
  return Number.isFinite(x) ? x : 0;
}

/** A VM as the scheduler sees it. */
export interface SchedulableVm {
  readonly cpuClaim: CpuClaim;
  setEntitlementMhz(mhz: number): void;
}

export class CpuScheduler {
  readonly capacityMhz: number;

  constructor(
    readonly cpuCores: number,
    readonly cpuMhz: number,
  ) {
    this.capacityMhz = cpuCores * cpuMhz;
  }

  /** Cap of a VM with `vcpus` virtual CPUs. */
  capFor(vcpus: number): number {
    return vcpus * this.cpuMhz;
  }

  /** Recompute and publish every VM's entitlement. */
  rebalance(vms: readonly SchedulableVm[]): void {
    const grants = maxMinFair(
      this.capacityMhz,
      vms.map((v) => v.cpuClaim),
    );
    vms.forEach((v, i) => v.setEntitlementMhz(grants[i]!));
  }
}
