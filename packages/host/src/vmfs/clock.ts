/**
 * Monotonic time, injected (TigerBeetle style) so that lease and fencing logic can be tested
 * without sleeping: `systemClock` for real hosts, `ManualClock` for tests that move time by
 * hand. Liveness is always judged on the observer's own monotonic clock; hosts never compare
 * clocks with each other, so no clock synchronisation is needed.
 */
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Milliseconds on a monotonic clock (arbitrary origin). */
  now(): number;
}

export const systemClock: Clock = { now: () => performance.now() };

export class ManualClock implements Clock {
  private t: number;
  constructor(start = 1_000_000) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError('time only moves forward');
    this.t += ms;
  }
}
