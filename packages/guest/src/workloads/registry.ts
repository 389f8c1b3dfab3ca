/** The built-in workloads by kind. */
import type { WorkloadSpec } from '@esxemu/shared';
import type { Workload } from '../sdk/workload.js';
import { cpuburn } from './cpuburn.js';
import type { Registers } from '../sdk/registers.js';
import { diskio, diskioStatus } from './diskio.js';
import { diskrecords, diskRecordsStatus } from './diskrecords.js';
import { idle } from './idle.js';
import { memstress } from './memstress.js';
import { webserver } from './webserver.js';

const WORKLOADS: { [K in WorkloadSpec['kind']]: Workload<Extract<WorkloadSpec, { kind: K }>> } = { idle, memstress, cpuburn, webserver, diskrecords, diskio };

export function getWorkload(kind: WorkloadSpec['kind']): Workload {
  const w = WORKLOADS[kind];
  if (!w) throw new Error(`unknown workload kind '${String(kind)}'`);
  return w as unknown as Workload;
}

/**
 * What a workload reports of itself from its registers (the guest tools' guestinfo), or null
 * for workloads with nothing to say. Read by the VMkernel, which shares the registers.
 */
export function guestReport(kind: WorkloadSpec['kind'], regs: Registers): Record<string, number> | null {
  switch (kind) {
    case 'diskrecords': {
      const s = diskRecordsStatus(regs);
      return { acked: s.acked, flushed: s.flushed, verified: s.verified, errors: s.errors, state: s.state };
    }
    case 'diskio':
      return diskioStatus(regs);
    default:
      return null;
  }
}
