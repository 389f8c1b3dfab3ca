/**
 * fsck: a read-only check of the whole file system that reports every inconsistency it finds
 * (it never stops at the first, and never writes).
 *
 * It checks the file system *as recovery will leave it*: every host's committed-but-unreplayed
 * journal transaction is laid over the LUN in memory first (and reported as a warning), so a
 * host killed in the middle of a metadata update does not show up as damage.
 *
 * Errors (the file system is inconsistent):
 *   BAD_CHECKSUM       a record whose CRC32C does not match (any region)
 *   BAD_RECORD         a record whose fields contradict its place or each other
 *   BAD_FREE_COUNT     a cluster's free count disagrees with its bits
 *   LEAKED_BLOCK       allocated in the bitmap, owned by no file
 *   FREE_BLOCK_IN_USE  owned by a file, free in the bitmap
 *   DOUBLE_ALLOCATED   owned by two files (or twice by one)
 *   BLOCK_BEYOND_EOF   a file block past the file's size
 *   DANGLING_ENTRY     a directory entry naming a free inode or another generation
 *   DUPLICATE_NAME     two entries with one name in a directory
 *   BAD_PARENT         an inode whose parent is not the directory that names it
 *   MULTIPLY_LINKED    an inode named by more than one entry
 *   ORPHAN_INODE       an inode in use that no directory names
 *   FORMAT_INCOMPLETE  the superblock is still FORMATTING
 * Warnings (normal after a crash; recovery or the next lock attempt clears them):
 *   PENDING_JOURNAL    a host's committed transaction not yet replayed
 *   TORN_JOURNAL       a host's journal holds an uncommitted (torn) write: ignored by replay
 *   STALE_LOCK         a lock held by a host whose mount is over, or whose heartbeat did not
 *                      move during the observation (with observeMs)
 */
import { EsxError, sleep } from '@esxemu/shared';
import { ReadOnlyDevice, type BlockDevice } from './block-device.js';
import { checkSector } from './codec.js';
import { Directory } from './directory.js';
import { FileMap } from './filemap.js';
import { decodeSuperblock, Geometry, SB_STATE, type Superblock } from './format.js';
import { decodeInode, FILE_TYPE, ROOT_INO, type Inode } from './inode.js';
import { readJournal } from './journal.js';
import { BITMAP_HEADER, BITMAP_MAGIC, decodeHeartbeat, decodeLock, HB_STATE, type HeartbeatSlot } from './records.js';

export type FindingKind =
  | 'BAD_CHECKSUM'
  | 'BAD_RECORD'
  | 'BAD_FREE_COUNT'
  | 'LEAKED_BLOCK'
  | 'FREE_BLOCK_IN_USE'
  | 'DOUBLE_ALLOCATED'
  | 'BLOCK_BEYOND_EOF'
  | 'DANGLING_ENTRY'
  | 'DUPLICATE_NAME'
  | 'BAD_PARENT'
  | 'MULTIPLY_LINKED'
  | 'ORPHAN_INODE'
  | 'FORMAT_INCOMPLETE'
  | 'PENDING_JOURNAL'
  | 'TORN_JOURNAL'
  | 'STALE_LOCK';

const WARNINGS = new Set<FindingKind>(['PENDING_JOURNAL', 'TORN_JOURNAL', 'STALE_LOCK']);

export interface Finding {
  kind: FindingKind;
  severity: 'error' | 'warning';
  message: string;
  lba?: number;
  ino?: number;
  block?: number;
  hostId?: number;
}

export interface FsckReport {
  /** No errors (warnings allowed). */
  clean: boolean;
  errors: Finding[];
  warnings: Finding[];
  superblock: Superblock;
  stats: { files: number; directories: number; usedBlocks: number; freeBlocks: number };
}

export interface FsckOptions {
  /** Watch heartbeats this long to flag locks of hosts that look dead (default 0: only ended mounts). */
  observeMs?: number;
  /** Report at most this many findings per kind (default 100). */
  maxPerKind?: number;
}

/** The LUN with the committed journals laid over it; read-only. */
class OverlayDevice extends ReadOnlyDevice {
  readonly overlay = new Map<number, Buffer>();
  override async read(lba: number, blocks: number): Promise<Buffer> {
    const b = await this.inner.read(lba, blocks);
    if (this.overlay.size) for (let i = 0; i < blocks; i++) this.overlay.get(lba + i)?.copy(b, i * this.blockSize);
    return b;
  }
}

class Findings {
  readonly list: Finding[] = [];
  private readonly counts = new Map<FindingKind, number>();
  constructor(private readonly maxPerKind: number) {}
  add(kind: FindingKind, message: string, where: Omit<Finding, 'kind' | 'severity' | 'message'> = {}): void {
    const n = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, n);
    if (n <= this.maxPerKind) this.list.push({ kind, severity: WARNINGS.has(kind) ? 'warning' : 'error', message, ...where });
  }
  /** A CORRUPT error from a decoder: checksum or content. */
  corrupt(err: unknown, where: Omit<Finding, 'kind' | 'severity' | 'message'> = {}): void {
    const e = err as EsxError;
    if (!(e instanceof EsxError) || e.code !== 'CORRUPT') throw err;
    const lba = typeof e.details?.['lba'] === 'number' ? (e.details['lba'] as number) : where.lba;
    this.add(e.details?.['problem'] === 'bad-crc' ? 'BAD_CHECKSUM' : 'BAD_RECORD', e.message, { ...where, ...(lba !== undefined ? { lba } : {}) });
  }
}

export async function fsck(raw: BlockDevice, o: FsckOptions = {}): Promise<FsckReport> {
  const sb = decodeSuperblock(await raw.read(0, 1), raw);
  const geo = new Geometry(sb);
  const S = geo.S;
  const f = new Findings(o.maxPerKind ?? 100);
  const dev = new OverlayDevice(raw);
  const stats = { files: 0, directories: 0, usedBlocks: 0, freeBlocks: 0 };
  const report = (): FsckReport => {
    const errors = f.list.filter((x) => x.severity === 'error');
    return { clean: errors.length === 0, errors, warnings: f.list.filter((x) => x.severity === 'warning'), superblock: sb, stats };
  };
  if (sb.state !== SB_STATE.READY) {
    f.add('FORMAT_INCOMPLETE', `the superblock says host ${sb.formattingHost} is formatting (or crashed while formatting)`);
    return report();
  }

  // Journals first: check what recovery will leave.
  for (let h = 1; h <= sb.maxHosts; h++) {
    const j = await readJournal(raw, geo, h);
    if (j.problem) f.add('TORN_JOURNAL', `host ${h}: ${j.problem}`, { hostId: h, lba: geo.journal(h) });
    if (j.writes.size) {
      f.add('PENDING_JOURNAL', `host ${h} has a committed transaction of ${j.writes.size} sectors not yet replayed (checked as replayed)`, { hostId: h });
      for (const [lba, img] of j.writes) dev.overlay.set(lba, Buffer.from(img));
    }
  }

  const slots = await checkHeartbeats(dev, geo, f);
  const moved = new Set<number>();
  if (o.observeMs && o.observeMs > 0) {
    const before = await dev.read(sb.hbStart, sb.maxHosts);
    await sleep(o.observeMs);
    const after = await dev.read(sb.hbStart, sb.maxHosts);
    for (let h = 1; h <= sb.maxHosts; h++) if (!before.subarray((h - 1) * S, h * S).equals(after.subarray((h - 1) * S, h * S))) moved.add(h);
  }
  await checkLocks(dev, geo, f, slots, o.observeMs ? moved : null);
  const allocated = await checkBitmap(dev, geo, f, stats);
  const inodes = await readInodes(dev, geo, f);
  const owner = await checkBlocks(dev, geo, f, inodes, allocated);
  await checkTree(dev, geo, f, inodes, stats);
  for (let b = 0; b < sb.dataBlocks; b++) {
    if (allocated[b] && owner[b] === 0) f.add('LEAKED_BLOCK', `block ${b} is allocated but no file owns it`, { block: b });
  }
  return report();
}

async function checkHeartbeats(dev: BlockDevice, geo: Geometry, f: Findings): Promise<Map<number, HeartbeatSlot>> {
  const sb = geo.sb;
  const all = await dev.read(sb.hbStart, sb.maxHosts);
  const out = new Map<number, HeartbeatSlot>();
  for (let h = 1; h <= sb.maxHosts; h++) {
    try {
      out.set(h, decodeHeartbeat(all.subarray((h - 1) * geo.S, h * geo.S), h, geo.hbSlot(h)));
    } catch (err) {
      f.corrupt(err, { hostId: h });
    }
  }
  return out;
}

async function checkLocks(dev: BlockDevice, geo: Geometry, f: Findings, slots: Map<number, HeartbeatSlot>, moved: Set<number> | null): Promise<void> {
  const n = geo.lockCount;
  const all = await dev.read(geo.sb.lockStart, n);
  for (let i = 0; i < n; i++) {
    const lba = geo.sb.lockStart + i;
    let r;
    try {
      r = decodeLock(all.subarray(i * geo.S, (i + 1) * geo.S), i, lba);
    } catch (err) {
      f.corrupt(err, { lba });
      continue;
    }
    for (const h of r.holders) {
      const slot = slots.get(h.hostId);
      if (!slot) {
        f.add('BAD_RECORD', `lock at LBA ${lba} is held by host ${h.hostId}, which has no valid heartbeat slot`, { lba, hostId: h.hostId });
        continue;
      }
      const ended = h.incarnation < slot.incarnation || (h.incarnation === slot.incarnation && slot.state !== HB_STATE.MOUNTED);
      const quiet = moved !== null && h.incarnation === slot.incarnation && slot.state === HB_STATE.MOUNTED && !moved.has(h.hostId);
      if (ended || quiet) f.add('STALE_LOCK', `lock at LBA ${lba} (${lockName(geo, i)}) is held by host ${h.hostId} incarnation ${h.incarnation}, ${ended ? 'whose mount is over' : 'whose heartbeat did not move'}: breakable`, { lba, hostId: h.hostId });
    }
  }
}

function lockName(geo: Geometry, i: number): string {
  const sb = geo.sb;
  if (i < sb.maxHosts) return `journal of host ${i + 1}`;
  if (i < sb.maxHosts + sb.clusters) return `resource cluster ${i - sb.maxHosts}`;
  return `inode ${i - sb.maxHosts - sb.clusters}`;
}

async function checkBitmap(dev: BlockDevice, geo: Geometry, f: Findings, stats: FsckReport['stats']): Promise<Uint8Array> {
  const sb = geo.sb;
  const allocated = new Uint8Array(sb.dataBlocks);
  const all = await dev.read(sb.bitmapStart, sb.clusters);
  for (let c = 0; c < sb.clusters; c++) {
    const lba = geo.bitmap(c);
    const s = all.subarray(c * geo.S, (c + 1) * geo.S);
    const chk = checkSector(s, BITMAP_MAGIC);
    if (chk !== 'ok') {
      f.add(chk === 'bad-crc' ? 'BAD_CHECKSUM' : 'BAD_RECORD', `bitmap sector of cluster ${c}: ${chk}`, { lba });
      continue;
    }
    if (s.readUInt32LE(8) !== c) f.add('BAD_RECORD', `bitmap sector at LBA ${lba} names cluster ${s.readUInt32LE(8)}`, { lba });
    const blocks = geo.clusterBlocks(c);
    let used = 0;
    for (let i = 0; i < (geo.S - BITMAP_HEADER) * 8; i++) {
      if (!(s[BITMAP_HEADER + (i >> 3)]! & (1 << (i & 7)))) continue;
      if (i >= blocks) {
        f.add('BAD_RECORD', `bitmap of cluster ${c} marks block ${i} past its ${blocks} blocks`, { lba });
        continue;
      }
      used++;
      allocated[c * sb.blocksPerCluster + i] = 1;
    }
    const free = s.readUInt32LE(12);
    if (free !== blocks - used) f.add('BAD_FREE_COUNT', `cluster ${c} says ${free} free blocks, its bits say ${blocks - used}`, { lba });
    stats.usedBlocks += used;
    stats.freeBlocks += blocks - used;
  }
  return allocated;
}

/** Every inode that decodes and is in use (null: free or unreadable). */
async function readInodes(dev: BlockDevice, geo: Geometry, f: Findings): Promise<(Inode | null)[]> {
  const sb = geo.sb;
  const out: (Inode | null)[] = [];
  const CHUNK = 256;
  for (let first = 0; first < sb.maxFiles; first += CHUNK) {
    const n = Math.min(CHUNK, sb.maxFiles - first);
    const raw = await dev.read(geo.inode(first), n);
    for (let i = 0; i < n; i++) {
      const ino = first + i;
      try {
        const node = decodeInode(raw.subarray(i * geo.S, (i + 1) * geo.S), ino, geo.inode(ino), sb.dataBlocks);
        out.push(node.type === FILE_TYPE.FREE ? null : node);
      } catch (err) {
        f.corrupt(err, { ino, lba: geo.inode(ino) });
        out.push(null);
      }
    }
  }
  return out;
}

/** Who owns every block (ino + 1; 0 = nobody), with the double/free/EOF checks. */
async function checkBlocks(dev: BlockDevice, geo: Geometry, f: Findings, inodes: (Inode | null)[], allocated: Uint8Array): Promise<Uint32Array> {
  const B = geo.sb.fileBlockSize;
  const owner = new Uint32Array(geo.sb.dataBlocks);
  const claim = (b: number, ino: number, what: string): void => {
    if (owner[b]) f.add('DOUBLE_ALLOCATED', `block ${b} (${what}) of inode ${ino} is also used by inode ${owner[b]! - 1}`, { block: b, ino });
    else owner[b] = ino + 1;
    if (!allocated[b]) f.add('FREE_BLOCK_IN_USE', `block ${b} (${what}) of inode ${ino} is free in the bitmap`, { block: b, ino });
  };
  for (const node of inodes) {
    if (!node) continue;
    let blocks;
    try {
      blocks = await new FileMap(dev, geo, node).allBlocks();
    } catch (err) {
      f.corrupt(err, { ino: node.ino });
      continue;
    }
    const limit = Math.ceil(node.size / B);
    for (const pb of blocks.pointerBlocks) claim(pb, node.ino, 'pointer block');
    for (const [fb, b] of blocks.data) {
      claim(b, node.ino, `file block ${fb}`);
      if (fb >= limit) f.add('BLOCK_BEYOND_EOF', `inode ${node.ino} has file block ${fb} past its size ${node.size}`, { ino: node.ino, block: b });
    }
  }
  return owner;
}

async function checkTree(dev: BlockDevice, geo: Geometry, f: Findings, inodes: (Inode | null)[], stats: FsckReport['stats']): Promise<void> {
  const root = inodes[ROOT_INO];
  const reached = new Uint8Array(inodes.length);
  if (!root || root.type !== FILE_TYPE.DIR) {
    f.add('BAD_RECORD', 'the root inode is not a directory', { ino: ROOT_INO });
    return;
  }
  reached[ROOT_INO] = 1;
  const queue: Inode[] = [root];
  while (queue.length) {
    const dirNode = queue.shift()!;
    stats.directories++;
    if (dirNode.size % geo.S !== 0) f.add('BAD_RECORD', `directory inode ${dirNode.ino} has size ${dirNode.size}, not whole sectors`, { ino: dirNode.ino });
    let entries;
    try {
      entries = await new Directory(dev, geo, new FileMap(dev, geo, dirNode)).list();
    } catch (err) {
      f.corrupt(err, { ino: dirNode.ino });
      continue;
    }
    const names = new Set<string>();
    for (const e of entries) {
      if (names.has(e.name)) f.add('DUPLICATE_NAME', `directory inode ${dirNode.ino} has two entries '${e.name}'`, { ino: dirNode.ino });
      names.add(e.name);
      const child = inodes[e.ino];
      if (!child || child.gen !== e.gen || child.type !== e.type || e.ino === ROOT_INO) {
        f.add('DANGLING_ENTRY', `entry '${e.name}' in directory inode ${dirNode.ino} names inode ${e.ino} gen ${e.gen}, which is ${child ? `gen ${child.gen} type ${child.type}` : 'free or unreadable'}`, { ino: e.ino });
        continue;
      }
      if (child.parent !== dirNode.ino) f.add('BAD_PARENT', `inode ${e.ino} ('${e.name}') says its parent is ${child.parent}, but directory ${dirNode.ino} names it`, { ino: e.ino });
      if (reached[e.ino]) {
        f.add('MULTIPLY_LINKED', `inode ${e.ino} ('${e.name}') is named by more than one entry`, { ino: e.ino });
        continue;
      }
      reached[e.ino] = 1;
      if (child.type === FILE_TYPE.DIR) queue.push(child);
      else stats.files++;
    }
  }
  inodes.forEach((n, ino) => {
    if (n && !reached[ino]) f.add('ORPHAN_INODE', `inode ${ino} (${n.type === FILE_TYPE.DIR ? 'directory' : 'file'}, ${n.size} bytes) is in use but no directory names it`, { ino });
  });
}
