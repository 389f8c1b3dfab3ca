/**
 * idle: a guest that does nothing but its timer tick: each step costs a few cycles and writes
 * the tick count into the first page, like an idle kernel updating jiffies.
 */
import type { Workload } from '../sdk/workload.js';

/** Cycles of one idle tick. */
const IDLE_TICK_CYCLES = 10_000;
/** Idle CPU demand, MHz (an idle OS still takes timer interrupts). */
const IDLE_DEMAND_MHZ = 10;

export const idle: Workload<{ kind: 'idle' }> = {
  kind: 'idle',
  boot(ctx) {
    ctx.mem.writeU32(0, 0);
  },
  step(ctx) {
    ctx.mem.writeU32(0, (ctx.mem.readU32(0) + 1) >>> 0);
    return IDLE_TICK_CYCLES;
  },
  demandMhz() {
    return IDLE_DEMAND_MHZ;
  },
};
