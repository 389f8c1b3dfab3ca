export * from './sdk/registers.js';
export * from './sdk/prng.js';
export * from './sdk/guest-memory.js';
export * from './sdk/nic.js';
export * from './sdk/workload.js';
export * from './sdk/vcpu.js';
export { getWorkload } from './workloads/registry.js';
