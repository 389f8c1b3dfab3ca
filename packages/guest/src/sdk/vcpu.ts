/**
 * Boot and step a guest: the part of the vCPU loop that belongs to the guest's architecture
 * (register conventions), not to the VMM's scheduling. The VMM decides when and how many steps
 * run; these functions keep the step and cycle counters in the registers.
 */
import type { WorkloadSpec } from '@esxemu/shared';
import { seedPrng } from './prng.js';
import { REGISTER_COUNT, R_KCYCLES_LO, R_STEP_LO, R_WORKLOAD } from './registers.js';
import type { GuestContext, Workload } from './workload.js';

export const WORKLOAD_IDS: Record<WorkloadSpec['kind'], number> = { idle: 1, memstress: 2, cpuburn: 3, webserver: 4, diskrecords: 5, diskio: 6 };

/** Reset the registers, seed the PRNG and boot the workload. Memory is left as it is. */
export function bootGuest(ctx: GuestContext, workload: Workload, spec: WorkloadSpec, seed: number): void {
  if (workload.kind !== spec.kind) throw new Error(`workload ${workload.kind} cannot boot a ${spec.kind} spec`);
  for (let i = 0; i < REGISTER_COUNT; i++) ctx.regs.set(i, 0);
  seedPrng(ctx.regs, seed);
  ctx.regs.set(R_WORKLOAD, WORKLOAD_IDS[spec.kind]);
  workload.boot(ctx, spec as never);
}

/** Run one guest step; returns its cost in virtual cycles. */
export function stepGuest(ctx: GuestContext, workload: Workload): number {
  const cycles = workload.step(ctx);
  const regs = ctx.regs;
  regs.set64(R_STEP_LO, regs.get64(R_STEP_LO) + 1);
  regs.set64(R_KCYCLES_LO, regs.get64(R_KCYCLES_LO) + Math.max(1, Math.round(cycles / 1000)));
  return cycles;
}
