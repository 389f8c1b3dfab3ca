/** @esxemu/host: the ESX host process (VMkernel + one VMM worker per VM). */
export { startHost, startHostInternals, type HostOptions, type HostProcess, type HostInternals } from './host.js';
export { MachineMemory, MAX_MACHINE_MEMORY_MIB, type MachineMemoryHandle } from './vmkernel/memory/machine-memory.js';
export { Pmap, type PmapHandle } from './vmkernel/memory/pmap.js';
export { Vmkernel, MAX_VMS_PER_HOST, type VmkernelOptions, type VmEvent } from './vmkernel/vmkernel.js';
export { Vm, type VmState, type PowerOnOptions, type VmTimeouts } from './vmkernel/vm.js';
export { CpuScheduler, maxMinFair, type CpuClaim } from './vmkernel/scheduler.js';
export { VmkernelLog, VMKERNEL_LOG_FILE } from './vmkernel/vmkernel-log.js';
export { VcenterLink, hostlinkUrl, type LinkState } from './link/vcenter-link.js';
export { MigrationListener } from './migration/listener.js';
export { DEFAULT_VCPU_LOOP_OPTIONS, type VcpuLoopOptions } from './vmm/vcpu-loop.js';
export { RequestQueue, type NicQueueState } from './vmm/devices/net/queue.js';
export { FileDiskBackend, VirtualDiskService, type DiskBackend, type VirtualDiskStats, type AttachStorage, type VmStorageLease } from './vmkernel/virtual-disk.js';
export { Datastore, type DatastoreOptions, type DatastoreInfo } from './datastore/datastore.js';
export { DatastoreMount } from './datastore/mount.js';
export { VmfsDiskBackend } from './datastore/vmfs-disk.js';
export { formatDatastore } from './datastore/format.js';
export { vmPaths, encodeVmx, parseVmx, encodeVmdkDescriptor, parseVmdkDescriptor, datastorePath, parseDatastorePath } from './datastore/vm-files.js';
export * as vmfs from './vmfs/index.js';
