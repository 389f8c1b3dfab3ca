/**
 * The on-disk format, version 1: the superblock and the region layout derived from it.
 *
 * Every metadata record is one device sector (the LUN's logical block, 512 or 4096 bytes) so
 * that a record is written atomically and can be the operand of COMPARE AND WRITE. Records
 * use the first 512 bytes; a 4096-byte sector is zero past them. All regions are counted in
 * sectors from LBA 0:
 *
 *   LBA 0                   superblock
 *   hbStart                 heartbeat region: one slot per host id (1..maxHosts)
 *   lockStart               lock records: [journal locks: maxHosts][cluster locks: clusters]
 *                                         [file locks: maxFiles]
 *   journalStart            per-host journals: maxHosts x journalSectors
 *   bitmapStart             block bitmap: one sector per resource cluster
 *   inodeStart              file descriptors (inodes): maxFiles sectors, inode 0 = root
 *   dataStart               file blocks (fileBlockSize each), aligned to fileBlockSize
 *
 * Superblock (little endian unless noted):
 *    0 magic 'VMFS' (BE)   4 crc32c   8 version u32   12 state u8 (1 formatting, 2 ready)
 *   14 formattingHost u16 16 uuid[16] 32 sectorSize u32  36 fileBlockSize u32
 *   40 maxHosts u32       44 journalSectors u32          48 blocksPerCluster u32
 *   52 clusters u32       56 maxFiles u32                60 dataBlocks u32
 *   64 hbStart u64  72 lockStart u64  80 journalStart u64  88 bitmapStart u64
 *   96 inodeStart u64  104 dataStart u64  112 createdMs f64  120 labelLen u8  121 label[64]
 *  192 totalSectors u64
 *
 * The file block is 1 MiB by default (as VMFS-5's unified block): large enough that a 40 GiB
 * disk needs 40960 pointers (8 indirect pointer blocks reach terabytes), small enough that a
 * .vmx costs one block. Data I/O is at sector granularity, so a small file never moves a
 * whole block except once, when the block is allocated and zeroed.
 *
 * Resource clusters: the bitmap is cut into clusters of `blocksPerCluster` blocks, each with
 * its own sector and lock; a host allocates from the cluster its host id hashes to and moves
 * on only when that one is full or busy, so hosts rarely contend on allocation.
 */
import { randomBytes } from 'node:crypto';
import { EsxError } from '@esxemu/shared';
import { ceilDiv, magicOf, readU64, seal, checkSector, writeU64 } from './codec.js';

export const FORMAT_VERSION = 1;
export const SUPERBLOCK_MAGIC = magicOf('VMFS');
export const RECORD_BYTES = 512;
export const MAX_LABEL_BYTES = 64;
export const MAX_HOST_NAME_BYTES = 64;

export const SB_STATE = { FORMATTING: 1, READY: 2 } as const;

export interface Superblock {
  version: number;
  state: number;
  formattingHost: number;
  uuid: string;
  label: string;
  sectorSize: number;
  fileBlockSize: number;
  maxHosts: number;
  journalSectors: number;
  blocksPerCluster: number;
  clusters: number;
  maxFiles: number;
  dataBlocks: number;
  hbStart: number;
  lockStart: number;
  journalStart: number;
  bitmapStart: number;
  inodeStart: number;
  dataStart: number;
  createdMs: number;
  totalSectors: number;
}

export interface LayoutRequest {
  sectorSize: number;
  totalSectors: number;
  fileBlockSize: number;
  maxHosts: number;
  journalSectors: number;
  maxFiles: number;
  /** 0 = choose (about 64 clusters, at least 8 blocks each). */
  blocksPerCluster: number;
  label: string;
  formattingHost: number;
}

export const LIMITS = {
  maxHosts: 64,
  minJournalSectors: 64,
  maxJournalSectors: 1024,
  maxFiles: 1 << 20,
  minFileBlockSize: 64 * 1024,
  maxFileBlockSize: 8 * 1024 * 1024,
} as const;

/** Bits a bitmap sector can hold (16-byte header). */
export function bitsPerBitmapSector(sectorSize: number): number {
  return (RECORD_BYTES - 16) * 8 + (sectorSize - RECORD_BYTES) * 8;
}

/** Lay the regions out on a LUN; INVALID_ARGUMENT when the request does not fit. */
export function computeLayout(r: LayoutRequest): Superblock {
  const S = r.sectorSize;
  const pow2 = (v: number): boolean => Number.isInteger(v) && v > 0 && (v & (v - 1)) === 0;
  if (!pow2(r.fileBlockSize) || r.fileBlockSize < LIMITS.minFileBlockSize || r.fileBlockSize > LIMITS.maxFileBlockSize) {
    throw new EsxError('INVALID_ARGUMENT', `file block size must be a power of two in ${LIMITS.minFileBlockSize}..${LIMITS.maxFileBlockSize} bytes`);
  }
  if (!Number.isInteger(r.maxHosts) || r.maxHosts < 1 || r.maxHosts > LIMITS.maxHosts) throw new EsxError('INVALID_ARGUMENT', `maxHosts must be 1..${LIMITS.maxHosts}`);
  if (!Number.isInteger(r.journalSectors) || r.journalSectors < LIMITS.minJournalSectors || r.journalSectors > LIMITS.maxJournalSectors) {
    throw new EsxError('INVALID_ARGUMENT', `journalSectors must be ${LIMITS.minJournalSectors}..${LIMITS.maxJournalSectors}`);
  }
  if (!Number.isInteger(r.maxFiles) || r.maxFiles < 2 || r.maxFiles > LIMITS.maxFiles) throw new EsxError('INVALID_ARGUMENT', `maxFiles must be 2..${LIMITS.maxFiles}`);
  if (Buffer.byteLength(r.label, 'utf8') > MAX_LABEL_BYTES) throw new EsxError('INVALID_ARGUMENT', `label longer than ${MAX_LABEL_BYTES} bytes`);
  const spb = r.fileBlockSize / S;
  const roughBlocks = Math.floor(r.totalSectors / spb);
  const maxBits = bitsPerBitmapSector(S);
  const bpc = r.blocksPerCluster > 0 ? r.blocksPerCluster : Math.min(maxBits, Math.max(8, ceilDiv(roughBlocks, 64)));
  if (!Number.isInteger(bpc) || bpc < 1 || bpc > maxBits) throw new EsxError('INVALID_ARGUMENT', `blocksPerCluster must be 1..${maxBits}`);
  const clusters = Math.max(1, ceilDiv(roughBlocks, bpc));
  const hbStart = 1;
  const lockStart = hbStart + r.maxHosts;
  const journalStart = lockStart + r.maxHosts + clusters + r.maxFiles;
  const bitmapStart = journalStart + r.maxHosts * r.journalSectors;
  const inodeStart = bitmapStart + clusters;
  const dataStart = ceilDiv(inodeStart + r.maxFiles, spb) * spb;
  const dataBlocks = Math.floor((r.totalSectors - dataStart) / spb);
  if (dataBlocks < 4) throw new EsxError('INVALID_ARGUMENT', `the LUN (${r.totalSectors * S} bytes) is too small for a VMFS with these settings (metadata needs ${dataStart * S} bytes)`);
  if (dataBlocks > 0xfffffff0) throw new EsxError('INVALID_ARGUMENT', 'too many file blocks: use a larger file block size');
  return {
    version: FORMAT_VERSION,
    state: SB_STATE.FORMATTING,
    formattingHost: r.formattingHost,
    uuid: randomBytes(16).toString('hex'),
    label: r.label,
    sectorSize: S,
    fileBlockSize: r.fileBlockSize,
    maxHosts: r.maxHosts,
    journalSectors: r.journalSectors,
    blocksPerCluster: bpc,
    clusters,
    maxFiles: r.maxFiles,
    dataBlocks,
    hbStart,
    lockStart,
    journalStart,
    bitmapStart,
    inodeStart,
    dataStart,
    createdMs: Date.now(),
    totalSectors: r.totalSectors,
  };
}

export function encodeSuperblock(sb: Superblock): Buffer {
  const b = Buffer.alloc(sb.sectorSize);
  b.writeUInt32LE(sb.version, 8);
  b.writeUInt8(sb.state, 12);
  b.writeUInt16LE(sb.formattingHost, 14);
  Buffer.from(sb.uuid, 'hex').copy(b, 16, 0, 16);
  b.writeUInt32LE(sb.sectorSize, 32);
  b.writeUInt32LE(sb.fileBlockSize, 36);
  b.writeUInt32LE(sb.maxHosts, 40);
  b.writeUInt32LE(sb.journalSectors, 44);
  b.writeUInt32LE(sb.blocksPerCluster, 48);
  b.writeUInt32LE(sb.clusters, 52);
  b.writeUInt32LE(sb.maxFiles, 56);
  b.writeUInt32LE(sb.dataBlocks, 60);
  writeU64(b, sb.hbStart, 64);
  writeU64(b, sb.lockStart, 72);
  writeU64(b, sb.journalStart, 80);
  writeU64(b, sb.bitmapStart, 88);
  writeU64(b, sb.inodeStart, 96);
  writeU64(b, sb.dataStart, 104);
  b.writeDoubleLE(sb.createdMs, 112);
  const label = Buffer.from(sb.label, 'utf8');
  b.writeUInt8(label.length, 120);
  label.copy(b, 121);
  writeU64(b, sb.totalSectors, 192);
  return seal(b, SUPERBLOCK_MAGIC);
}

/**
 * Decode and validate sector 0. NOT_FORMATTED: no VMFS magic; FORMAT_UNSUPPORTED: a newer
 * version; CORRUPT: checksum mismatch or a geometry that does not fit this device.
 */
export function decodeSuperblock(b: Buffer, dev: { blockSize: number; blocks: number }): Superblock {
  if (b.length < RECORD_BYTES || b.readUInt32BE(0) !== SUPERBLOCK_MAGIC) throw new EsxError('NOT_FORMATTED', 'the LUN holds no VMFS file system (no superblock magic at LBA 0)');
  const version = b.readUInt32LE(8);
  if (version > FORMAT_VERSION) throw new EsxError('FORMAT_UNSUPPORTED', `VMFS format version ${version} is newer than this host supports (${FORMAT_VERSION})`, { version, supported: FORMAT_VERSION });
  if (checkSector(b, SUPERBLOCK_MAGIC) !== 'ok') throw new EsxError('CORRUPT', 'VMFS superblock checksum mismatch', { lba: 0 });
  if (version < 1) throw new EsxError('CORRUPT', `VMFS superblock has version ${version}`);
  const labelLen = b.readUInt8(120);
  const sb: Superblock = {
    version,
    state: b.readUInt8(12),
    formattingHost: b.readUInt16LE(14),
    uuid: b.subarray(16, 32).toString('hex'),
    label: b.subarray(121, 121 + Math.min(labelLen, MAX_LABEL_BYTES)).toString('utf8'),
    sectorSize: b.readUInt32LE(32),
    fileBlockSize: b.readUInt32LE(36),
    maxHosts: b.readUInt32LE(40),
    journalSectors: b.readUInt32LE(44),
    blocksPerCluster: b.readUInt32LE(48),
    clusters: b.readUInt32LE(52),
    maxFiles: b.readUInt32LE(56),
    dataBlocks: b.readUInt32LE(60),
    hbStart: readU64(b, 64),
    lockStart: readU64(b, 72),
    journalStart: readU64(b, 80),
    bitmapStart: readU64(b, 88),
    inodeStart: readU64(b, 96),
    dataStart: readU64(b, 104),
    createdMs: b.readDoubleLE(112),
    totalSectors: readU64(b, 192),
  };
  checkGeometry(sb, dev);
  return sb;
}

/** The superblock must describe exactly the layout computeLayout would give, on this device. */
function checkGeometry(sb: Superblock, dev: { blockSize: number; blocks: number }): void {
  const bad = (why: string): never => {
    throw new EsxError('CORRUPT', `VMFS superblock describes an impossible layout: ${why}`);
  };
  if (sb.state !== SB_STATE.FORMATTING && sb.state !== SB_STATE.READY) bad(`state ${sb.state}`);
  if (sb.sectorSize !== dev.blockSize) bad(`sector size ${sb.sectorSize} on a device of ${dev.blockSize}-byte blocks`);
  if (sb.totalSectors > dev.blocks) bad(`formatted for ${sb.totalSectors} sectors, the LUN has ${dev.blocks}`);
  let expect: Superblock;
  try {
    expect = computeLayout({ sectorSize: sb.sectorSize, totalSectors: sb.totalSectors, fileBlockSize: sb.fileBlockSize, maxHosts: sb.maxHosts, journalSectors: sb.journalSectors, maxFiles: sb.maxFiles, blocksPerCluster: sb.blocksPerCluster, label: '', formattingHost: 0 });
  } catch (err) {
    return bad((err as Error).message);
  }
  for (const k of ['clusters', 'dataBlocks', 'hbStart', 'lockStart', 'journalStart', 'bitmapStart', 'inodeStart', 'dataStart'] as const) {
    if (expect[k] !== sb[k]) bad(`${k} is ${sb[k]}, expected ${expect[k]}`);
  }
}

/** Where things are, computed once from a superblock. */
export class Geometry {
  readonly sb: Superblock;
  readonly S: number;
  /** Sectors per file block. */
  readonly spb: number;
  constructor(sb: Superblock) {
    this.sb = sb;
    this.S = sb.sectorSize;
    this.spb = sb.fileBlockSize / sb.sectorSize;
  }
  hbSlot(hostId: number): number {
    return this.sb.hbStart + hostId - 1;
  }
  journalLock(hostId: number): number {
    return this.sb.lockStart + hostId - 1;
  }
  clusterLock(c: number): number {
    return this.sb.lockStart + this.sb.maxHosts + c;
  }
  inodeLock(ino: number): number {
    return this.sb.lockStart + this.sb.maxHosts + this.sb.clusters + ino;
  }
  /** Lock record index (stored in the record to catch misdirected writes). */
  lockIndexOf(lba: number): number {
    return lba - this.sb.lockStart;
  }
  journal(hostId: number): number {
    return this.sb.journalStart + (hostId - 1) * this.sb.journalSectors;
  }
  bitmap(c: number): number {
    return this.sb.bitmapStart + c;
  }
  inode(ino: number): number {
    return this.sb.inodeStart + ino;
  }
  /** First LBA of file block `block`. */
  blockLba(block: number): number {
    return this.sb.dataStart + block * this.spb;
  }
  /** Blocks covered by cluster c. */
  clusterBlocks(c: number): number {
    return Math.max(0, Math.min(this.sb.blocksPerCluster, this.sb.dataBlocks - c * this.sb.blocksPerCluster));
  }
  get lockCount(): number {
    return this.sb.maxHosts + this.sb.clusters + this.sb.maxFiles;
  }
}
