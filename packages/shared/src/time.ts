/** Time and bounded waiting. Every wait has a bound. */
import { EsxError } from './errors.js';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Microsecond wall-clock timestamp, ISO with 6 fractional digits, for vmkernel-style logs. */
export function isoMicros(date = new Date(), hr = process.hrtime.bigint()): string {
  const us = Number(hr / 1000n) % 1000;
  const base = date.toISOString(); // 2026-11-22T02:41:22.123Z
  return `${base.slice(0, 23)}${String(us).padStart(3, '0')}Z`;
}

/** Run `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs: number, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const suffix = lastErr instanceof Error ? ` (last error: ${lastErr.message})` : '';
      throw new EsxError('TIMEOUT', `timed out after ${timeoutMs} ms waiting for ${what}${suffix}`);
    }
    await sleep(intervalMs);
  }
}

/** Exponential backoff with full jitter, bounded. */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly minMs = 200,
    private readonly maxMs = 5000,
    private readonly random: () => number = Math.random,
  ) {}
  next(): number {
    const cap = Math.min(this.maxMs, this.minMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(this.minMs / 2 + this.random() * (cap - this.minMs / 2));
  }
  reset(): void {
    this.attempt = 0;
  }
}
