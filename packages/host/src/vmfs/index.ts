/**
 * VMFS: the clustered file system every host mounts on the shared iSCSI LUN.
 *
 *   const dev = await IscsiBlockDevice.open(initiator, { lun: 0 });   // or MemoryBlockDevice
 *   await mkfs(dev, { label: 'datastore1' });                          // once, by one host
 *   const fs = await mount(dev, { hostId: 'auto', hostName: 'esx01' });  // or a fixed id 1..maxHosts
 *   await fs.mkdir('vm1');
 *   const f = await fs.open('vm1/vm1.vmdk', 'exclusive', { create: true });
 *   ...
 *   const report = await fsck(dev);                                    // read-only
 *   const obs = await observe(dev);       // read-only, no slot: readdir, stat, lockInfo, hosts, df
 *
 * Modules: block-device (the interface, conflict retries), iscsi-device, memory-device,
 * fault-device (crash injection), format (superblock, layout), records (heartbeat slots, locks,
 * bitmap), inode (inodes, pointer and directory sectors), atomic (ATS or reservations),
 * heartbeat (liveness, fencing), locks, journal (crash safety), recovery (dead hosts),
 * allocator (resource clusters), filemap, directory, lookup (lock-free path walks), slots
 * (hostId 'auto'), vmfs (mount, namespace), file (open files, data path), observer (read-only
 * view for tools), mkfs, fsck.
 */
export { type BlockDevice, type CompareAndWriteResult, type WriteOptions, retryConflicts, DEFAULT_CONFLICT_RETRY_MS } from './block-device.js';
export { IscsiBlockDevice, type IscsiDeviceOptions } from './iscsi-device.js';
export { MemoryLun, MemoryBlockDevice, type MemoryDeviceOptions, type MemoryDeviceStats } from './memory-device.js';
export { CrashingBlockDevice, type CrashOptions } from './fault-device.js';
export { type Clock, systemClock, ManualClock } from './clock.js';
export { FORMAT_VERSION, type Superblock } from './format.js';
export { MAX_NAME_BYTES } from './codec.js';
export { type LockMode } from './records.js';
export { DEFAULT_HEARTBEAT, type HeartbeatSettings, type HostHeartbeat, type Liveness } from './heartbeat.js';
export { type AtomicStats } from './atomic.js';
export { mkfs, type MkfsOptions, type MkfsResult } from './mkfs.js';
export { mount, Vmfs, type MountOptions, type FileStat, type DirEntry, type LockInfo, type LockOwner, type DiskFree, type OpenOptions } from './vmfs.js';
export { VmfsFile } from './file.js';
export { fsck, type FsckReport, type FsckOptions, type Finding, type FindingKind } from './fsck.js';
export { observe, VmfsObserver, DEFAULT_OBSERVE_WINDOW_MS, type ObserveOptions, type ObservedHost, type ObservedLiveness, type ObservedLockHolder, type ObservedLockInfo } from './observer.js';
export { ReadOnlyDevice } from './block-device.js';
