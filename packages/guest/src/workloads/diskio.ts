/**
 * diskio: a guest that keeps its virtual disk busy, as fio would inside a VM: sequential or
 * random reads or writes of one block size with a fixed number of requests in flight. It is the
 * guest side of the datastore benchmark (guest throughput next to the raw initiator's).
 *
 * Each step takes the completions that arrived (counting operations, bytes and errors), then
 * submits new requests until `queueDepth` are in flight. Sequential offsets wrap at the end of
 * the disk; random offsets are block-aligned, drawn by the guest PRNG. Written data is not
 * checked (diskrecords is the workload that checks); it is the block number repeated.
 *
 * The guest wants DISKIO_DEMAND_MHZ (a guest spinning on I/O, as fio with a polling engine does:
 * at 40k IOPS a submit every 25 us leaves a 500 MHz budget short); the VMM runs a step as soon as a
 * completion arrives (an interrupt), so throughput is set by the disk path, not the vCPU tick.
 *
 * Registers: R_DIO_* below; guest memory is not used.
 */
import { EsxError, type WorkloadSpec } from '@esxemu/shared/core';
import type { VirtualDisk } from '../sdk/disk.js';
import { nextBelow } from '../sdk/prng.js';
import { R_GP0, type Registers } from '../sdk/registers.js';
import type { GuestContext, Workload } from '../sdk/workload.js';

export const R_DIO_PATTERN = R_GP0;
export const R_DIO_BLOCK = R_GP0 + 1;
export const R_DIO_DEPTH = R_GP0 + 2;
export const R_DIO_INFLIGHT = R_GP0 + 3;
export const R_DIO_NEXT_ID = R_GP0 + 4;
/** Sequential: the next block number. */
export const R_DIO_NEXT_BLOCK = R_GP0 + 5;
export const R_DIO_OPS_LO = R_GP0 + 6;
export const R_DIO_OPS_HI = R_GP0 + 7;
export const R_DIO_KIB_LO = R_GP0 + 8;
export const R_DIO_KIB_HI = R_GP0 + 9;
export const R_DIO_ERRORS = R_GP0 + 10;

export const DISKIO_PATTERNS = ['seqread', 'seqwrite', 'randread', 'randwrite'] as const;
export type DiskioPattern = (typeof DISKIO_PATTERNS)[number];
/** What fio with a polling engine asks for: all of a 2 GHz vCPU (the VMM caps it at the VM's size). */
export const DISKIO_DEMAND_MHZ = 2000;
export const DISKIO_STEP_CYCLES = 10_000;
export const DISKIO_SUBMIT_CYCLES = 5_000;

export type DiskioSpec = Extract<WorkloadSpec, { kind: 'diskio' }>;

function disk(ctx: GuestContext): VirtualDisk {
  if (!ctx.disk) throw new EsxError('INVALID_STATE', 'diskio needs a virtual disk: create the VM with a disk');
  return ctx.disk;
}

/** Completed operations and KiB moved, read from the registers. */
export function diskioStatus(regs: Registers): { ops: number; kib: number; errors: number; inflight: number } {
  return { ops: regs.get64(R_DIO_OPS_LO), kib: regs.get64(R_DIO_KIB_LO), errors: regs.get(R_DIO_ERRORS), inflight: regs.get(R_DIO_INFLIGHT) };
}

export const diskio: Workload<DiskioSpec> = {
  kind: 'diskio',

  boot(ctx, spec) {
    const pattern = DISKIO_PATTERNS.indexOf(spec.pattern);
    if (pattern < 0) throw new EsxError('INVALID_ARGUMENT', `diskio pattern must be one of ${DISKIO_PATTERNS.join(', ')}`);
    const block = spec.blockKiB * 1024;
    const d = disk(ctx);
    if (!(Number.isInteger(spec.blockKiB) && spec.blockKiB >= 1 && block <= d.sizeBytes)) throw new EsxError('INVALID_ARGUMENT', `diskio blockKiB ${spec.blockKiB} does not fit the ${d.sizeBytes}-byte disk`);
    if (!(Number.isInteger(spec.queueDepth) && spec.queueDepth >= 1 && spec.queueDepth <= 64)) throw new EsxError('INVALID_ARGUMENT', `diskio queueDepth must be 1-64, got ${spec.queueDepth}`);
    const r = ctx.regs;
    r.set(R_DIO_PATTERN, pattern);
    r.set(R_DIO_BLOCK, block);
    r.set(R_DIO_DEPTH, spec.queueDepth);
    for (const reg of [R_DIO_INFLIGHT, R_DIO_NEXT_ID, R_DIO_NEXT_BLOCK, R_DIO_OPS_LO, R_DIO_OPS_HI, R_DIO_KIB_LO, R_DIO_KIB_HI, R_DIO_ERRORS]) r.set(reg, 0);
  },

  step(ctx) {
    const r = ctx.regs;
    const d = disk(ctx);
    const block = r.get(R_DIO_BLOCK);
    for (let c = d.complete(); c; c = d.complete()) {
      r.set(R_DIO_INFLIGHT, Math.max(0, r.get(R_DIO_INFLIGHT) - 1));
      if (!c.ok) {
        r.set(R_DIO_ERRORS, r.get(R_DIO_ERRORS) + 1);
        continue;
      }
      r.set64(R_DIO_OPS_LO, r.get64(R_DIO_OPS_LO) + 1);
      r.set64(R_DIO_KIB_LO, r.get64(R_DIO_KIB_LO) + block / 1024);
    }
    const pattern = DISKIO_PATTERNS[r.get(R_DIO_PATTERN)]!;
    const blocks = Math.floor(d.sizeBytes / block);
    let cycles = DISKIO_STEP_CYCLES;
    while (r.get(R_DIO_INFLIGHT) < r.get(R_DIO_DEPTH)) {
      let n: number;
      if (pattern.startsWith('seq')) {
        n = r.get(R_DIO_NEXT_BLOCK) % blocks;
        r.set(R_DIO_NEXT_BLOCK, (n + 1) % blocks);
      } else {
        n = nextBelow(r, blocks);
      }
      const id = (r.get(R_DIO_NEXT_ID) + 1) >>> 0 || 1;
      const write = pattern.endsWith('write');
      const req = write
        ? { id, op: 'write' as const, offset: n * block, length: block, fill: n & 0xff }
        : { id, op: 'read' as const, offset: n * block, length: block };
      if (!d.submit(req)) break;
      r.set(R_DIO_NEXT_ID, id);
      r.set(R_DIO_INFLIGHT, r.get(R_DIO_INFLIGHT) + 1);
      cycles += DISKIO_SUBMIT_CYCLES;
    }
    return cycles;
  },

  demandMhz() {
    return DISKIO_DEMAND_MHZ;
  },
};
