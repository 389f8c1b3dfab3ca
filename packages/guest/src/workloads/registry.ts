/** The built-in workloads by kind. */
import type { WorkloadSpec } from '@esxemu/shared';
import type { Workload } from '../sdk/workload.js';
import { cpuburn } from './cpuburn.js';
import { diskio } from './diskio.js';
import { diskrecords } from './diskrecords.js';
import { idle } from './idle.js';
import { memstress } from './memstress.js';
import { webserver } from './webserver.js';

const WORKLOADS: { [K in WorkloadSpec['kind']]: Workload<Extract<WorkloadSpec, { kind: K }>> } = { idle, memstress, cpuburn, webserver, diskrecords, diskio };

export function getWorkload(kind: WorkloadSpec['kind']): Workload {
  const w = WORKLOADS[kind];
  if (!w) throw new Error(`unknown workload kind '${String(kind)}'`);
  return w as unknown as Workload;
}
