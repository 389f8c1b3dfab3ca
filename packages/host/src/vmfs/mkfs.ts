/**
 * mkfs: lay a fresh VMFS on the LUN.
 *
 * Refusals (nothing is written): a LUN that already holds a VMFS (or anything else in sector
 * 0) unless `force`; with `force`, a VMFS some host still heartbeats on (every mounted slot is
 * watched for a lease; one that moves is a live host: INVALID_STATE); another host formatting
 * at the same moment.
 *
 * Sequence: the superblock is first replaced, atomically against what was read (COMPARE AND
 * WRITE or the reservation path), by a FORMATTING superblock naming this host; from then on a
 * mount fails with INVALID_STATE "being formatted" and a second mkfs loses the race. Then the
 * regions are written (zeros, bitmap sectors, the root directory's inode), flushed, and the
 * superblock turned READY with a second atomic update. A crash in between leaves a FORMATTING
 * superblock: mount refuses it, mkfs --force redoes it.
 */
import { EsxError, sleep } from '@esxemu/shared';
import { atomicUpdate } from './atomic.js';
import type { BlockDevice } from './block-device.js';
import { isZero } from './codec.js';
import { computeLayout, decodeSuperblock, encodeSuperblock, Geometry, LIMITS, SB_STATE, type Superblock } from './format.js';
import { encodeInode, FILE_TYPE, freeInode, ROOT_INO } from './inode.js';
import { decodeHeartbeat, encodeBitmap, HB_STATE, newBitmapSector } from './records.js';

export interface MkfsOptions {
  label?: string;
  /** Default 1 MiB. */
  fileBlockSize?: number;
  /** Host ids 1..maxHosts may mount (default 32). */
  maxHosts?: number;
  /** Sectors per host journal (default 64). */
  journalSectors?: number;
  /** Files and directories (default 1024). */
  maxFiles?: number;
  /** Default: about 64 clusters of at least 8 blocks. */
  blocksPerCluster?: number;
  /** The formatting host, recorded in the FORMATTING superblock (default 1). */
  hostId?: number;
  /** Overwrite an existing file system (still refused while a host heartbeats on it). */
  force?: boolean;
  /** How long a mounted heartbeat slot is watched before it is judged dead (default 5000). */
  leaseMs?: number;
}

export interface MkfsResult {
  superblock: Superblock;
}

const ZERO_CHUNK_BYTES = 1024 * 1024;

export async function zeroSectors(dev: BlockDevice, lba: number, count: number): Promise<void> {
  const per = ZERO_CHUNK_BYTES / dev.blockSize;
  const zeros = Buffer.alloc(Math.min(count, per) * dev.blockSize);
  for (let done = 0; done < count; done += per) {
    const n = Math.min(per, count - done);
    await dev.write(lba + done, n * dev.blockSize === zeros.length ? zeros : zeros.subarray(0, n * dev.blockSize));
  }
}

/** Watch every mounted slot for `leaseMs`; INVALID_STATE if one moves. */
async function refuseLiveHosts(dev: BlockDevice, sb: Superblock, leaseMs: number): Promise<void> {
  const read = (): Promise<Buffer> => dev.read(sb.hbStart, sb.maxHosts);
  const first = await read();
  const mounted: number[] = [];
  for (let id = 1; id <= sb.maxHosts; id++) {
    const img = first.subarray((id - 1) * dev.blockSize, id * dev.blockSize);
    try {
      if (decodeHeartbeat(img, id, sb.hbStart + id - 1).state === HB_STATE.MOUNTED) mounted.push(id);
    } catch {
      // a corrupt slot is no live host
    }
  }
  if (!mounted.length) return;
  const deadline = Date.now() + leaseMs;
  while (Date.now() <= deadline) {
    await sleep(Math.min(200, leaseMs / 4));
    const now = await read();
    for (const id of mounted) {
      const a = first.subarray((id - 1) * dev.blockSize, id * dev.blockSize);
      const b = now.subarray((id - 1) * dev.blockSize, id * dev.blockSize);
      if (!a.equals(b)) throw new EsxError('INVALID_STATE', `host ${id} is using this datastore (its heartbeat is live): unmount it everywhere before formatting`, { hostId: id });
    }
  }
}

export async function mkfs(dev: BlockDevice, o: MkfsOptions = {}): Promise<MkfsResult> {
  const hostId = o.hostId ?? 1;
  if (!Number.isInteger(hostId) || hostId < 1 || hostId > LIMITS.maxHosts) throw new EsxError('INVALID_ARGUMENT', `hostId must be 1..${LIMITS.maxHosts}`);
  const sb = computeLayout({
    sectorSize: dev.blockSize,
    totalSectors: dev.blocks,
    fileBlockSize: o.fileBlockSize ?? 1024 * 1024,
    maxHosts: o.maxHosts ?? 32,
    journalSectors: o.journalSectors ?? 64,
    maxFiles: o.maxFiles ?? 1024,
    blocksPerCluster: o.blocksPerCluster ?? 0,
    label: o.label ?? 'datastore1',
    formattingHost: hostId,
  });
  const before = await dev.read(0, 1);
  let existing: Superblock | null = null;
  try {
    existing = decodeSuperblock(before, dev);
  } catch (err) {
    const code = err instanceof EsxError ? err.code : 'INTERNAL';
    if (code !== 'NOT_FORMATTED' && !o.force) throw new EsxError('INVALID_STATE', `the LUN holds a file system this host cannot read (${(err as Error).message}); use force to overwrite it`, { reason: code });
    if (code === 'NOT_FORMATTED' && !isZero(before) && !o.force) throw new EsxError('INVALID_STATE', 'the LUN holds data that is not a VMFS; use force to overwrite it', { reason: 'NOT_EMPTY' });
  }
  if (existing) {
    if (!o.force) throw new EsxError('INVALID_STATE', `the LUN already holds VMFS '${existing.label}' (${existing.uuid}); use force to overwrite it`, { reason: 'ALREADY_FORMATTED', uuid: existing.uuid });
    await refuseLiveHosts(dev, existing, o.leaseMs ?? 5000);
  }
  // Claim the LUN: FORMATTING superblock, atomically against what we inspected.
  const formatting = encodeSuperblock(sb);
  await atomicUpdate(dev, 0, (cur) => {
    if (!cur.equals(before)) throw new EsxError('INVALID_STATE', 'the superblock changed while formatting started: another host is formatting or mounting this LUN', { reason: 'RACE' });
    return formatting;
  });
  const geo = new Geometry(sb);
  await zeroSectors(dev, sb.hbStart, sb.bitmapStart - sb.hbStart); // heartbeats, locks, journals
  const bitmaps = Buffer.concat(Array.from({ length: sb.clusters }, (_, c) => encodeBitmap(newBitmapSector(c, geo.clusterBlocks(c), sb.sectorSize))));
  await dev.write(sb.bitmapStart, bitmaps);
  await zeroSectors(dev, sb.inodeStart, sb.maxFiles);
  const now = Date.now();
  await dev.write(geo.inode(ROOT_INO), encodeInode({ ...freeInode(ROOT_INO, 1), type: FILE_TYPE.DIR, mtimeMs: now, ctimeMs: now }, sb.sectorSize));
  await dev.flush();
  const ready: Superblock = { ...sb, state: SB_STATE.READY };
  await atomicUpdate(dev, 0, (cur) => {
    if (!cur.equals(formatting)) throw new EsxError('INVALID_STATE', 'the superblock changed during formatting: another host formatted this LUN at the same time', { reason: 'RACE' });
    return encodeSuperblock(ready);
  });
  await dev.flush();
  return { superblock: ready };
}
