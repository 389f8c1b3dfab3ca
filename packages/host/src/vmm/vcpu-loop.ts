/**
 * The vCPU run loop of a VMM. Every tick (tickMs of real time) the guest gets a budget of
 * min(demand, entitlement) x dt virtual cycles and runs steps until the budget is spent, so it
 * runs at its entitled rate in virtual time. Real work per tick is bounded (steps and real
 * milliseconds): the machine's few real cores are shared by every host process, so a tick that
 * hits the bound carries its unspent budget (a few ticks' worth at most) to the next one.
 *
 * The loop only ever stops between two guest steps: pause, runUntil and stop act at the next
 * step boundary, which, the loop being synchronous, is whenever a message is handled.
 */
import { performance } from 'node:perf_hooks';
import { stepGuest, type GuestContext, type Workload } from '@esxemu/guest';
import { VC_CYCLES, VC_DEMAND_MHZ, VC_REAL_MS, VC_RUNNING, VC_STEPS, type VcpuCounters } from './vcpu-counters.js';

export interface VcpuLoopOptions {
  /** Real milliseconds between ticks. */
  tickMs: number;
  /** Guest steps per tick at most. */
  maxStepsPerTick: number;
  /** Real milliseconds of guest steps per tick at most. */
  maxRealMsPerTick: number;
  /** Unspent budget is carried over for at most this many ticks' worth. */
  maxCarryTicks: number;
}

export const DEFAULT_VCPU_LOOP_OPTIONS: VcpuLoopOptions = {
  tickMs: 10,
  maxStepsPerTick: 2000,
  maxRealMsPerTick: 3,
  maxCarryTicks: 5,
};

export type VcpuState = 'running' | 'paused' | 'stopped' | 'faulted';

export interface VcpuHooks {
  /** The guest reached the step given to runUntil (or at boot) and the vCPU paused. */
  onStopAtStep(steps: number): void;
  /** A guest step threw: the guest cannot go on. The loop is stopped. */
  onFault(err: unknown): void;
}

export class VcpuLoop {
  private st: VcpuState = 'paused';
  private timer: NodeJS.Timeout | null = null;
  private budgetCycles = 0;
  private lastTickAt = 0;
  private stopAt: number | null = null;
  private kicked = false;

  constructor(
    private readonly ctx: GuestContext,
    private readonly workload: Workload,
    private readonly counters: VcpuCounters,
    /** Most MHz the VM may use (vcpus x MHz per core). */
    private readonly capMhz: number,
    private readonly opts: VcpuLoopOptions,
    private readonly hooks: VcpuHooks,
  ) {}

  get state(): VcpuState {
    return this.st;
  }

  get steps(): number {
    return this.ctx.regs.steps;
  }

  /** Start running after boot; stops at once if `stopAtStep` is already reached. */
  start(stopAtStep: number | null): void {
    this.stopAt = stopAtStep;
    this.publish();
    this.setRunning();
    this.checkStopAt();
  }

  pause(): number {
    if (this.st === 'running') this.setPaused();
    return this.steps;
  }

  resume(): number {
    if (this.st === 'paused') {
      this.stopAt = null;
      this.setRunning();
    }
    return this.steps;
  }

  /** Run (or keep running) until the guest has done `step` steps, then pause. */
  runUntil(step: number): number {
    this.stopAt = step;
    if (this.st === 'paused') this.setRunning();
    this.checkStopAt();
    return this.steps;
  }

  stop(): number {
    this.clearTimer();
    this.st = 'stopped';
    this.counters.set(VC_RUNNING, 0);
    return this.steps;
  }

  /**
   * Reboot the guest in place: `boot` runs with the vCPU halted; then it runs again (and stops
   * at `stopAtStep` if given).
   */
  reboot(boot: () => void, stopAtStep: number | null): void {
    this.clearTimer();
    this.st = 'paused';
    this.counters.set(VC_RUNNING, 0);
    boot();
    this.start(stopAtStep);
  }

  private setRunning(): void {
    this.st = 'running';
    this.counters.set(VC_RUNNING, 1);
    this.lastTickAt = performance.now();
    this.budgetCycles = 0;
    if (!this.timer) this.timer = setInterval(() => this.tick(), this.opts.tickMs);
  }

  private setPaused(): void {
    this.clearTimer();
    this.st = 'paused';
    this.counters.set(VC_RUNNING, 0);
    this.budgetCycles = 0;
  }

  private clearTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * A device has something for the guest (a disk completion: an interrupt): run the guest soon,
   * within the budget it has earned, instead of waiting for the next tick. At most one kick is
   * pending at a time, so a storm of completions costs one extra tick.
   */
  kick(): void {
    if (this.st !== 'running' || this.kicked) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      this.tick();
    });
  }

  /** Pause if the step given to runUntil is reached; true if it paused. */
  private checkStopAt(): boolean {
    if (this.st !== 'running' || this.stopAt === null || this.steps < this.stopAt) return false;
    this.stopAt = null;
    this.setPaused();
    this.hooks.onStopAtStep(this.steps);
    return true;
  }

  private demandMhz(): number {
    const d = this.workload.demandMhz(this.ctx);
    return Number.isFinite(d) ? Math.max(0, Math.min(d, this.capMhz)) : 0;
  }

  private publish(): void {
    this.counters.set(VC_DEMAND_MHZ, this.demandMhz());
    this.counters.set(VC_STEPS, this.steps);
  }

  /** One tick: earn budget for the real time elapsed, spend it on guest steps. */
  tick(): void {
    if (this.st !== 'running') return;
    const t0 = performance.now();
    const o = this.opts;
    const dtMs = Math.min(t0 - this.lastTickAt, o.tickMs * o.maxCarryTicks);
    this.lastTickAt = t0;
    const rateMhz = Math.min(this.demandMhz(), this.counters.entitlementMhz);
    const maxBudget = rateMhz * 1000 * o.tickMs * o.maxCarryTicks;
    this.budgetCycles = Math.min(this.budgetCycles + rateMhz * 1000 * Math.max(0, dtMs), maxBudget);
    let cycles = 0;
    let n = 0;
    try {
      while (this.budgetCycles > 0 && n < o.maxStepsPerTick) {
        if (this.checkStopAt()) break;
        const c = stepGuest(this.ctx, this.workload);
        cycles += c;
        this.budgetCycles -= c;
        n++;
        if (performance.now() - t0 >= o.maxRealMsPerTick) break;
      }
    } catch (err) {
      this.account(cycles, t0);
      this.clearTimer();
      this.st = 'faulted';
      this.counters.set(VC_RUNNING, 0);
      this.hooks.onFault(err);
      return;
    }
    this.account(cycles, t0);
    this.checkStopAt();
  }

  private account(cycles: number, t0: number): void {
    const c = this.counters;
    c.set(VC_CYCLES, c.cycles + cycles);
    c.set(VC_REAL_MS, c.realMs + (performance.now() - t0));
    this.publish();
  }
}
