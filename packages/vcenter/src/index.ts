/** @esxemu/vcenter: the management server process. */
export { startVcenter, type VcenterServer } from './vcenter.js';
export type { VcenterOptions, VcenterTuning } from './config.js';
