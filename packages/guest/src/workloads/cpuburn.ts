/**
 * cpuburn: a guest that asks for a fixed amount of CPU. Each step stands for CPUBURN_STEP_CYCLES
 * of virtual work; the real work is kept tiny (CPUBURN_MIXES_PER_STEP PRNG draws folded into an
 * accumulator) because every host process shares the same few real cores. The accumulator and
 * the step count live in guest page 0, so the computation survives a migration and its result
 * can be checked.
 *
 * Registers: R_CB_DEMAND_MHZ (the configured demand).
 * Page 0: CB_OFF_ACC (u32 accumulator), CB_OFF_STEPS_LO/HI (u64 steps done, two u32).
 */
import { EsxError, type WorkloadSpec } from '@esxemu/shared/core';
import { nextU32 } from '../sdk/prng.js';
import { R_GP0 } from '../sdk/registers.js';
import type { Workload } from '../sdk/workload.js';

export const R_CB_DEMAND_MHZ = R_GP0;

export const CB_OFF_ACC = 0;
export const CB_OFF_STEPS_LO = 4;
export const CB_OFF_STEPS_HI = 8;

/** Virtual cycles of one cpuburn step. */
export const CPUBURN_STEP_CYCLES = 1_000_000;
/** PRNG draws mixed into the accumulator per step (the real work of a step). */
export const CPUBURN_MIXES_PER_STEP = 32;

export type CpuburnSpec = Extract<WorkloadSpec, { kind: 'cpuburn' }>;

/** The fold of one PRNG draw into the accumulator (murmur3's finalizer over acc ^ x). */
export function cpuburnMix(acc: number, x: number): number {
  let z = (acc ^ x) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export const cpuburn: Workload<CpuburnSpec> = {
  kind: 'cpuburn',

  boot(ctx, spec) {
    if (!(Number.isInteger(spec.demandMhz) && spec.demandMhz >= 1 && spec.demandMhz <= 0xffffffff)) {
      throw new EsxError('INVALID_ARGUMENT', `cpuburn demandMhz must be a positive integer, got ${spec.demandMhz}`);
    }
    ctx.regs.set(R_CB_DEMAND_MHZ, spec.demandMhz);
    ctx.mem.writeU32(CB_OFF_ACC, 0);
    ctx.mem.writeU32(CB_OFF_STEPS_LO, 0);
    ctx.mem.writeU32(CB_OFF_STEPS_HI, 0);
  },

  step(ctx) {
    const { mem, regs } = ctx;
    let acc = mem.readU32(CB_OFF_ACC);
    for (let i = 0; i < CPUBURN_MIXES_PER_STEP; i++) acc = cpuburnMix(acc, nextU32(regs));
    mem.writeU32(CB_OFF_ACC, acc);
    const lo = (mem.readU32(CB_OFF_STEPS_LO) + 1) >>> 0;
    mem.writeU32(CB_OFF_STEPS_LO, lo);
    if (lo === 0) mem.writeU32(CB_OFF_STEPS_HI, (mem.readU32(CB_OFF_STEPS_HI) + 1) >>> 0);
    return CPUBURN_STEP_CYCLES;
  },

  demandMhz(ctx) {
    return ctx.regs.get(R_CB_DEMAND_MHZ);
  },
};
