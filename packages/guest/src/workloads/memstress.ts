/**
 * memstress: a guest that keeps a working set of memory hot, the load that makes pre-copy
 * migration work hard (seeds 000: the thesis's memory-intensive VM).
 *
 * The working set is guest pages 0 .. wsPages-1. After boot the guest first fills it with PRNG
 * data, at most MEMSTRESS_FILL_PAGES_PER_STEP pages per step so a step stays short; then each
 * step dirties exactly one page of the working set chosen by the PRNG, writing a 64-byte record
 * of PRNG words at a PRNG-chosen 64-byte-aligned offset in it.
 *
 * CPU: a dirty step costs MEMSTRESS_CYCLES_PER_PAGE virtual cycles, so in steady state
 *   demandMhz = dirtyPagesPerS * MEMSTRESS_CYCLES_PER_PAGE / 1e6
 * (10,000 pages/s -> 300 MHz), and a VMM that grants that demand runs exactly dirtyPagesPerS
 * steps, hence dirties that many pages, per second of virtual time. While filling, a step costs
 * MEMSTRESS_FILL_CYCLES_PER_PAGE per page filled and the guest asks for
 * MEMSTRESS_FILL_DEMAND_MHZ (a memset loop runs flat out on its core).
 *
 * Registers: R_MS_WS_PAGES, R_MS_DIRTY_PAGES_PER_S (parameters), R_MS_FILL_PAGES (pages
 * filled so far), R_MS_DIRTIED (dirty steps done, wraps at 2^32).
 */
import { EsxError, PAGE_SIZE, mibToPages, pagesToMiB, type WorkloadSpec } from '@esxemu/shared/core';
import { nextBelow, nextU32 } from '../sdk/prng.js';
import { R_GP0 } from '../sdk/registers.js';
import type { Workload } from '../sdk/workload.js';

export const R_MS_WS_PAGES = R_GP0;
export const R_MS_DIRTY_PAGES_PER_S = R_GP0 + 1;
export const R_MS_FILL_PAGES = R_GP0 + 2;
export const R_MS_DIRTIED = R_GP0 + 3;

/** Virtual cycles of one dirty step (one page dirtied). */
export const MEMSTRESS_CYCLES_PER_PAGE = 30_000;
/** Pages filled per step at most during the initial fill. */
export const MEMSTRESS_FILL_PAGES_PER_STEP = 256;
/** Virtual cycles per page filled (about a byte per cycle). */
export const MEMSTRESS_FILL_CYCLES_PER_PAGE = 4_000;
/** CPU demand while the working set is being filled, MHz. */
export const MEMSTRESS_FILL_DEMAND_MHZ = 1_000;
/** Size of the record a dirty step writes, bytes (a cache line). */
export const MEMSTRESS_RECORD_BYTES = 64;

const WORDS_PER_PAGE = PAGE_SIZE / 4;
const RECORD_WORDS = MEMSTRESS_RECORD_BYTES / 4;
const RECORDS_PER_PAGE = PAGE_SIZE / MEMSTRESS_RECORD_BYTES;

export type MemstressSpec = Extract<WorkloadSpec, { kind: 'memstress' }>;

export const memstress: Workload<MemstressSpec> = {
  kind: 'memstress',

  boot(ctx, spec) {
    const { workingSetMiB, dirtyPagesPerS } = spec;
    if (!(Number.isFinite(workingSetMiB) && workingSetMiB > 0)) {
      throw new EsxError('INVALID_ARGUMENT', `memstress workingSetMiB must be a positive number, got ${workingSetMiB}`);
    }
    if (!(Number.isInteger(dirtyPagesPerS) && dirtyPagesPerS >= 0 && dirtyPagesPerS <= 0xffffffff)) {
      throw new EsxError('INVALID_ARGUMENT', `memstress dirtyPagesPerS must be an integer >= 0, got ${dirtyPagesPerS}`);
    }
    const wsPages = mibToPages(workingSetMiB);
    if (wsPages > ctx.mem.pages) {
      throw new EsxError(
        'INVALID_ARGUMENT',
        `memstress working set of ${workingSetMiB} MiB (${wsPages} pages) does not fit in the guest's ${pagesToMiB(ctx.mem.pages)} MiB (${ctx.mem.pages} pages): lower workingSetMiB or give the VM more memory`,
        { workingSetPages: wsPages, guestPages: ctx.mem.pages },
      );
    }
    const regs = ctx.regs;
    regs.set(R_MS_WS_PAGES, wsPages);
    regs.set(R_MS_DIRTY_PAGES_PER_S, dirtyPagesPerS);
    regs.set(R_MS_FILL_PAGES, 0);
    regs.set(R_MS_DIRTIED, 0);
  },

  step(ctx) {
    const { mem, regs } = ctx;
    const wsPages = regs.get(R_MS_WS_PAGES);
    const filled = regs.get(R_MS_FILL_PAGES);

    if (filled < wsPages) {
      // Fill phase: each page gets 1,024 words expanded from one PRNG draw (a local splitmix32
      // stream; it lives only for this page, so no state leaves the step).
      const n = Math.min(MEMSTRESS_FILL_PAGES_PER_STEP, wsPages - filled);
      const page = new Uint8Array(PAGE_SIZE);
      const words = new DataView(page.buffer);
      for (let i = 0; i < n; i++) {
        let s = nextU32(regs);
        for (let w = 0; w < WORDS_PER_PAGE; w++) {
          s = (s + 0x9e3779b9) >>> 0;
          let z = s;
          z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
          z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
          words.setUint32(w * 4, (z ^ (z >>> 16)) >>> 0, true);
        }
        mem.write((filled + i) * PAGE_SIZE, page);
      }
      regs.set(R_MS_FILL_PAGES, filled + n);
      return n * MEMSTRESS_FILL_CYCLES_PER_PAGE;
    }

    // Steady state: one 64-byte record into one page of the working set.
    const gpn = nextBelow(regs, wsPages);
    const offset = nextBelow(regs, RECORDS_PER_PAGE) * MEMSTRESS_RECORD_BYTES;
    const record = new Uint8Array(MEMSTRESS_RECORD_BYTES);
    const view = new DataView(record.buffer);
    for (let w = 0; w < RECORD_WORDS; w++) view.setUint32(w * 4, nextU32(regs), true);
    mem.write(gpn * PAGE_SIZE + offset, record);
    regs.set(R_MS_DIRTIED, regs.get(R_MS_DIRTIED) + 1);
    return MEMSTRESS_CYCLES_PER_PAGE;
  },

  demandMhz(ctx) {
    const regs = ctx.regs;
    if (regs.get(R_MS_FILL_PAGES) < regs.get(R_MS_WS_PAGES)) return MEMSTRESS_FILL_DEMAND_MHZ;
    return (regs.get(R_MS_DIRTY_PAGES_PER_S) * MEMSTRESS_CYCLES_PER_PAGE) / 1e6;
  },
};
