/**
 * The light part of @esxemu/shared: errors, units, bitmaps, bounded waits, and the VM types (as
 * types only). No logging, schema or codec library is loaded through here, so a VMM worker
 * thread that imports only this stays small (each VM is one worker).
 */
export * from './errors.js';
export * from './units.js';
export * from './bitmap.js';
export * from './time.js';
export type { WorkloadSpec, VmConfig, VmStats, HostStats, PowerState } from './protocol/vm.js';
