/**
 * When to stop pre-copying and switch over, and how hard to slow a guest that dirties memory
 * faster than the link can carry it: the decisions of vMotion's phase B, as a pure function of
 * what the last pass measured, so that they can be tested without a VM.
 *
 * After each pass over the dirty set the source knows the pages still dirty, how many bytes the
 * pass sent and how long it took. With bandwidth = bytes / time:
 *   expected downtime = dirty pages x page size / bandwidth
 *   - expected downtime <= the downtime budget (QEMU's downtime-limit, default 300 ms): switch over
 *   - pass count at the cap, or total bytes at the cap: switch over anyway if the expected
 *     downtime is within the switchover limit, else give up (the VM stays on the source)
 *   - the dirty set did not shrink by a fair margin in two passes in a row (the guest dirties
 *     as fast as we send): throttle the vCPU, as QEMU's auto-converge and vSphere's Stun During
 *     Page Send do: start at 20% and add 10% each time it happens again, up to 99%
 *   - otherwise: another pass
 */
import { PAGE_SIZE } from '@esxemu/shared/core';

export interface ConvergenceSettings {
  /** The downtime the switchover may cost, ms (QEMU's downtime-limit). */
  downtimeBudgetMs: number;
  /** Passes of pre-copy at most. */
  maxPasses: number;
  /** Bytes sent in all at most, as a multiple of the VM's memory. */
  maxBytesFactor: number;
  /** When the caps are reached: switch over only if the expected downtime is below this. */
  maxSwitchoverDowntimeMs: number;
  /** First throttle, percent of the vCPU taken away. */
  throttleInitialPct: number;
  /** Added each time the guest still outruns the link. */
  throttleStepPct: number;
  throttleMaxPct: number;
  /** A pass "converges" when the dirty set shrinks to at most this fraction of the last one. */
  shrinkRatio: number;
}

export const DEFAULT_CONVERGENCE: ConvergenceSettings = {
  downtimeBudgetMs: 300,
  maxPasses: 30,
  maxBytesFactor: 10,
  maxSwitchoverDowntimeMs: 5_000,
  throttleInitialPct: 20,
  throttleStepPct: 10,
  throttleMaxPct: 99,
  shrinkRatio: 0.9,
};

export interface PassResult {
  /** 1-based. */
  pass: number;
  /** Pages still dirty after this pass. */
  dirtyPages: number;
  bytesSent: number;
  durationMs: number;
}

export interface ConvergenceState {
  passes: PassResult[];
  totalBytes: number;
  memoryBytes: number;
  throttlePct: number;
  /** Passes in a row that did not shrink the dirty set. */
  stalled: number;
}

export type Decision =
  | { action: 'switchover'; expectedDowntimeMs: number; why: string }
  | { action: 'continue'; expectedDowntimeMs: number; throttlePct: number; why: string }
  | { action: 'giveUp'; expectedDowntimeMs: number; why: string };

export function initialState(memoryBytes: number): ConvergenceState {
  return { passes: [], totalBytes: 0, memoryBytes, throttlePct: 0, stalled: 0 };
}

/** Bytes per ms measured by a pass (at least 1 byte/ms, so a zero-time pass is not infinite). */
export function bandwidth(p: PassResult): number {
  return Math.max(1, p.bytesSent / Math.max(0.001, p.durationMs));
}

/** Record a pass and decide what comes next. Returns the new state and the decision. */
export function decide(state: ConvergenceState, pass: PassResult, s: ConvergenceSettings = DEFAULT_CONVERGENCE): { state: ConvergenceState; decision: Decision } {
  const prev = state.passes[state.passes.length - 1];
  const next: ConvergenceState = { ...state, passes: [...state.passes, pass], totalBytes: state.totalBytes + pass.bytesSent };
  const expected = (pass.dirtyPages * PAGE_SIZE) / bandwidth(pass);
  const out = (decision: Decision) => ({ state: next, decision });
  if (expected <= s.downtimeBudgetMs) {
    return out({ action: 'switchover', expectedDowntimeMs: expected, why: `${pass.dirtyPages} pages left, ${expected.toFixed(0)} ms at the measured bandwidth, within the ${s.downtimeBudgetMs} ms budget` });
  }
  const capped = pass.pass >= s.maxPasses ? `${s.maxPasses} passes` : next.totalBytes >= s.maxBytesFactor * state.memoryBytes ? `${s.maxBytesFactor}x the VM's memory sent` : null;
  if (capped) {
    if (expected <= s.maxSwitchoverDowntimeMs) return out({ action: 'switchover', expectedDowntimeMs: expected, why: `${capped}: switching over with ${expected.toFixed(0)} ms expected` });
    return out({ action: 'giveUp', expectedDowntimeMs: expected, why: `${capped} and ${pass.dirtyPages} pages still dirty (${expected.toFixed(0)} ms expected, more than ${s.maxSwitchoverDowntimeMs} ms)` });
  }
  const shrank = !prev || pass.dirtyPages <= prev.dirtyPages * s.shrinkRatio;
  next.stalled = shrank ? 0 : state.stalled + 1;
  if (next.stalled >= 2) {
    next.throttlePct = Math.min(s.throttleMaxPct, state.throttlePct === 0 ? s.throttleInitialPct : state.throttlePct + s.throttleStepPct);
    next.stalled = 0;
    return out({ action: 'continue', expectedDowntimeMs: expected, throttlePct: next.throttlePct, why: `the guest dirties memory as fast as it is sent: vCPU throttled to ${100 - next.throttlePct}%` });
  }
  return out({ action: 'continue', expectedDowntimeMs: expected, throttlePct: next.throttlePct, why: `${pass.dirtyPages} pages left (${expected.toFixed(0)} ms expected): another pass` });
}
