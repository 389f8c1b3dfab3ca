/**
 * diskrecords: a guest that writes numbered records to its virtual disk, flushes them, and
 * reads flushed ones back to verify them: the load that shows what a crash loses.
 *
 * Record n is the 512-byte sector n of the disk: 'ESXR', n, the disk key, then words of an
 * xorshift32 stream seeded by (key, n) (recordBytes). The key comes from the VM's seed
 * (diskRecordsKey), so anyone who knows the seed can check a disk image from outside.
 *
 *   boot -> SCAN: read the disk from sector 0 in 64 KiB chunks until the first sector that is
 *          not the right record: everything before it is there (a cold boot after HA restart
 *          goes on after the last record that reached the disk)
 *   IDLE -> WRITING record `acked` (one request in flight: records reach the disk in order)
 *        -> when flushEvery records are acknowledged and not flushed: FLUSHING, and when the
 *           flush completes every record before it is durable (R_DR_FLUSHED)
 *        -> then VERIFYING one flushed record chosen by the PRNG; a record that reads back
 *           wrong is a guest-visible fault (CORRUPT): the VM crashes, as a checking guest would
 *   FULL once the next record would not fit (after a last flush).
 * A request that fails (NO_SPACE, IO_ERROR) is counted in R_DR_ERRORS and tried again.
 *
 * Pace: credit grows by recordsPerS per second of virtual time (DR_TICK_HZ steps of
 * DR_STEP_CYCLES each); a record is written when a credit is there and the disk is idle.
 *   demandMhz = (DR_TICK_HZ * DR_STEP_CYCLES + recordsPerS * DR_RECORD_CYCLES) / 1e6
 *
 * Registers: R_DR_* below; guest memory is not used.
 */
import { EsxError, type WorkloadSpec } from '@esxemu/shared/core';
import { SECTOR_BYTES, type DiskCompletion, type VirtualDisk } from '../sdk/disk.js';
import { nextBelow, nextU32, seedPrng } from '../sdk/prng.js';
import { R_GP0, REGISTER_COUNT, Registers } from '../sdk/registers.js';
import type { GuestContext, Workload } from '../sdk/workload.js';

export const R_DR_RATE = R_GP0;
export const R_DR_FLUSH_EVERY = R_GP0 + 1;
export const R_DR_STATE = R_GP0 + 2;
/** Records 0 .. acked-1 are written and acknowledged. */
export const R_DR_ACKED = R_GP0 + 3;
/** Records 0 .. flushed-1 are on the target's disk. */
export const R_DR_FLUSHED = R_GP0 + 4;
/** The record being written, the count a flush covers, the record being verified, the scan position. */
export const R_DR_ARG = R_GP0 + 5;
export const R_DR_CREDIT = R_GP0 + 6;
export const R_DR_NEXT_ID = R_GP0 + 7;
export const R_DR_PENDING_ID = R_GP0 + 8;
export const R_DR_VERIFIED = R_GP0 + 9;
export const R_DR_ERRORS = R_GP0 + 10;
export const R_DR_KEY = R_GP0 + 11;

/** SCAN_RETRY: a scan read failed or could not be queued; it is tried again at the next step. */
export const DR_STATE = { SCAN: 1, IDLE: 2, WRITING: 3, FLUSHING: 4, VERIFYING: 5, FULL: 6, SCAN_RETRY: 7 } as const;

export const DR_TICK_HZ = 1_000;
export const DR_STEP_CYCLES = 10_000;
export const DR_RECORD_CYCLES = 20_000;
/** Records read per request while scanning at boot (64 KiB). */
export const DR_SCAN_RECORDS = 128;
const MAGIC = 0x52535845; // 'ESXR' little-endian
const CREDIT_ONE = 0x1_0000;
/** Credit is capped: a guest that was descheduled does not burst afterwards. */
const MAX_CREDIT = 16 * CREDIT_ONE;

export type DiskRecordsSpec = Extract<WorkloadSpec, { kind: 'diskrecords' }>;

/** The key that makes a VM's records its own: the first PRNG word after seeding with the VM's seed. */
export function diskRecordsKey(seed: number): number {
  const regs = new Registers(new ArrayBuffer(REGISTER_COUNT * 4));
  seedPrng(regs, seed);
  return nextU32(regs);
}

/** The 512 bytes of record n. */
export function recordBytes(key: number, n: number): Uint8Array {
  const out = new Uint8Array(SECTOR_BYTES);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, n >>> 0, true);
  v.setUint32(8, key >>> 0, true);
  let x = (key ^ Math.imul(n + 1, 0x9e3779b9)) >>> 0 || 1;
  for (let off = 12; off < SECTOR_BYTES; off += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v.setUint32(off, x >>> 0, true);
  }
  return out;
}

/** Whether `sector` holds record n of this key. */
export function isRecord(sector: Uint8Array, key: number, n: number): boolean {
  if (sector.length < SECTOR_BYTES) return false;
  const want = recordBytes(key, n);
  for (let i = 0; i < SECTOR_BYTES; i++) if (sector[i] !== want[i]) return false;
  return true;
}

/** The number of leading sectors of `image` (from sector `first`) that hold their records. */
export function countRecords(image: Uint8Array, key: number, first = 0): number {
  let n = 0;
  while ((n + 1) * SECTOR_BYTES <= image.length && isRecord(image.subarray(n * SECTOR_BYTES, (n + 1) * SECTOR_BYTES), key, first + n)) n++;
  return n;
}

function disk(ctx: GuestContext): VirtualDisk {
  if (!ctx.disk) throw new EsxError('INVALID_STATE', 'diskrecords needs a virtual disk: create the VM with a disk');
  return ctx.disk;
}

function submit(ctx: GuestContext, state: number, req: { op: 'read' | 'write' | 'flush'; offset: number; length: number; data?: Uint8Array }, arg: number): boolean {
  const r = ctx.regs;
  const id = (r.get(R_DR_NEXT_ID) + 1) >>> 0 || 1;
  if (!disk(ctx).submit({ id, ...req })) return false;
  r.set(R_DR_NEXT_ID, id);
  r.set(R_DR_PENDING_ID, id);
  r.set(R_DR_STATE, state);
  r.set(R_DR_ARG, arg);
  return true;
}

/** Read the next chunk of records from `from`; FULL when the whole disk holds records. */
function startScan(ctx: GuestContext, from: number): void {
  const r = ctx.regs;
  const sectors = Math.floor(disk(ctx).sizeBytes / SECTOR_BYTES);
  const n = Math.min(DR_SCAN_RECORDS, sectors - from);
  if (n <= 0) {
    r.set(R_DR_ACKED, from);
    r.set(R_DR_FLUSHED, from);
    r.set(R_DR_STATE, DR_STATE.FULL);
    return;
  }
  if (!submit(ctx, DR_STATE.SCAN, { op: 'read', offset: from * SECTOR_BYTES, length: n * SECTOR_BYTES }, from)) {
    r.set(R_DR_ARG, from);
    r.set(R_DR_STATE, DR_STATE.SCAN_RETRY);
  }
}

function failed(ctx: GuestContext): void {
  const r = ctx.regs;
  r.set(R_DR_ERRORS, r.get(R_DR_ERRORS) + 1);
  // A write, flush or verification is tried again from IDLE when credit allows. A scan cannot
  // be skipped (it tells where to go on): it is retried from where it was.
  r.set(R_DR_STATE, r.get(R_DR_STATE) === DR_STATE.SCAN ? DR_STATE.SCAN_RETRY : DR_STATE.IDLE);
}

function onCompletion(ctx: GuestContext, c: DiskCompletion): void {
  const r = ctx.regs;
  if (c.id !== r.get(R_DR_PENDING_ID)) return; // not ours (cannot happen with one in flight)
  r.set(R_DR_PENDING_ID, 0);
  if (!c.ok) return failed(ctx);
  const key = r.get(R_DR_KEY);
  const arg = r.get(R_DR_ARG);
  switch (r.get(R_DR_STATE)) {
    case DR_STATE.SCAN: {
      const data = c.data ?? new Uint8Array(0);
      const found = countRecords(data, key, arg);
      if (found * SECTOR_BYTES === data.length && data.length > 0) return startScan(ctx, arg + found);
      r.set(R_DR_ACKED, arg + found);
      r.set(R_DR_FLUSHED, arg + found);
      r.set(R_DR_STATE, DR_STATE.IDLE);
      return;
    }
    case DR_STATE.WRITING:
      r.set(R_DR_ACKED, arg + 1);
      r.set(R_DR_STATE, DR_STATE.IDLE);
      return;
    case DR_STATE.FLUSHING: {
      r.set(R_DR_FLUSHED, arg);
      r.set(R_DR_STATE, DR_STATE.IDLE);
      const rec = nextBelow(r, arg);
      submit(ctx, DR_STATE.VERIFYING, { op: 'read', offset: rec * SECTOR_BYTES, length: SECTOR_BYTES }, rec);
      return;
    }
    case DR_STATE.VERIFYING: {
      if (!c.data || !isRecord(c.data, key, arg)) throw new EsxError('CORRUPT', `diskrecords: record ${arg} read back wrong after it was flushed`);
      r.set(R_DR_VERIFIED, r.get(R_DR_VERIFIED) + 1);
      r.set(R_DR_STATE, DR_STATE.IDLE);
      return;
    }
  }
}

export const diskrecords: Workload<DiskRecordsSpec> = {
  kind: 'diskrecords',

  boot(ctx, spec) {
    if (!(Number.isInteger(spec.recordsPerS) && spec.recordsPerS >= 1)) throw new EsxError('INVALID_ARGUMENT', `diskrecords recordsPerS must be an integer >= 1, got ${spec.recordsPerS}`);
    if (!(Number.isInteger(spec.flushEvery) && spec.flushEvery >= 1)) throw new EsxError('INVALID_ARGUMENT', `diskrecords flushEvery must be an integer >= 1, got ${spec.flushEvery}`);
    const d = disk(ctx);
    if (d.sizeBytes < SECTOR_BYTES) throw new EsxError('INVALID_ARGUMENT', 'diskrecords needs a disk of at least one sector');
    const r = ctx.regs;
    r.set(R_DR_RATE, spec.recordsPerS);
    r.set(R_DR_FLUSH_EVERY, spec.flushEvery);
    r.set(R_DR_KEY, nextU32(r));
    for (const reg of [R_DR_ACKED, R_DR_FLUSHED, R_DR_CREDIT, R_DR_PENDING_ID, R_DR_VERIFIED, R_DR_ERRORS]) r.set(reg, 0);
    startScan(ctx, 0);
  },

  step(ctx) {
    const r = ctx.regs;
    const d = disk(ctx);
    for (let c = d.complete(); c; c = d.complete()) onCompletion(ctx, c);
    let cycles = DR_STEP_CYCLES;
    const state = r.get(R_DR_STATE);
    if (state === DR_STATE.SCAN_RETRY) {
      startScan(ctx, r.get(R_DR_ARG));
      return cycles;
    }
    if (state !== DR_STATE.IDLE) return cycles;
    const credit = Math.min(MAX_CREDIT, r.get(R_DR_CREDIT) + Math.round((r.get(R_DR_RATE) * CREDIT_ONE) / DR_TICK_HZ));
    r.set(R_DR_CREDIT, credit);
    const acked = r.get(R_DR_ACKED);
    const flushed = r.get(R_DR_FLUSHED);
    const full = (acked + 1) * SECTOR_BYTES > d.sizeBytes;
    if (acked > flushed && (acked - flushed >= r.get(R_DR_FLUSH_EVERY) || full)) {
      submit(ctx, DR_STATE.FLUSHING, { op: 'flush', offset: 0, length: 0 }, acked);
      return cycles;
    }
    if (full) {
      r.set(R_DR_STATE, DR_STATE.FULL);
      return cycles;
    }
    if (credit < CREDIT_ONE) return cycles;
    if (submit(ctx, DR_STATE.WRITING, { op: 'write', offset: acked * SECTOR_BYTES, length: SECTOR_BYTES, data: recordBytes(r.get(R_DR_KEY), acked) }, acked)) {
      r.set(R_DR_CREDIT, credit - CREDIT_ONE);
      cycles += DR_RECORD_CYCLES;
    }
    return cycles;
  },

  demandMhz(ctx) {
    return (DR_TICK_HZ * DR_STEP_CYCLES + ctx.regs.get(R_DR_RATE) * DR_RECORD_CYCLES) / 1e6;
  },
};

/** What a diskrecords guest reports of itself, read from its registers. */
export function diskRecordsStatus(regs: Registers): { state: number; acked: number; flushed: number; verified: number; errors: number; key: number } {
  return { state: regs.get(R_DR_STATE), acked: regs.get(R_DR_ACKED), flushed: regs.get(R_DR_FLUSHED), verified: regs.get(R_DR_VERIFIED), errors: regs.get(R_DR_ERRORS), key: regs.get(R_DR_KEY) };
}
