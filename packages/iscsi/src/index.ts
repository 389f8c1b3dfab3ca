// --- target: the iSCSI target process, its configuration and its session layer's public types
export { startIscsiTarget, ISCSI_DEFAULT_PORT, type IscsiTarget, type IscsiTargetOptions, type IscsiSessionInfo } from './target/target-server.js';
export {
  parseTargetConfig,
  loadTargetConfig,
  configFromFlags,
  defaultTargetConfig,
  DEFAULT_TARGET_NAME,
  DEFAULT_LUN_SIZE_MIB,
  type TargetConfig,
  type TargetDefinition,
  type LunConfig,
  type LunBacking,
  type TargetFlags,
  type ConfigPaths,
} from './target/config.js';
export { buildTargetDevice, type BuiltDevice, type DeviceFactory } from './target/build-device.js';
export { DEFAULT_SESSION_LIMITS, type SessionLimits } from './session/limits.js';
export { DEFAULT_TARGET_KEY_SETTINGS, type TargetKeySettings } from './session/negotiation.js';
export type { ChapSecrets } from './session/chap.js';

// --- scsi: the SCSI side of the target (command sets, reservations) and its backing stores
export { ScsiTarget, nexusKey, type ScsiTargetOptions, type LunSpec } from './scsi/target-device.js';
export { LogicalUnit, type LogicalUnitOptions } from './scsi/logical-unit.js';
export * from './scsi/types.js';
export { SENSE_KEY, ASC, parseSense, buildSense, type SenseInfo } from './scsi/sense.js';
export { MAX_TRANSFER_BYTES, type BlockLimits } from './scsi/block-limits.js';
export type { Backstore } from './backstore/backstore.js';
export { MemoryBackstore } from './backstore/memory.js';
export { FileBackstore, GRANULE_BYTES, type FileBackstoreOptions } from './backstore/file.js';
export { FILE_IO_MODES, type FileIoMode, type FileIoOptions, type FileIoStats } from './backstore/file-io.js';

// --- initiator: the hosts' software iSCSI adapter (vmhba)
export * as initiator from './initiator/index.js';
export { IscsiInitiator, type InitiatorOptions, parseIscsiUrl, formatIscsiUrl, type IscsiUrl } from './initiator/index.js';
