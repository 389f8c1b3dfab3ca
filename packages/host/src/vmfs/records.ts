/**
 * The small fixed-size records of the shared regions: heartbeat slots, lock records, bitmap
 * (resource cluster) sectors. Each encodes to one sealed sector (codec.ts) and decodes with
 * full validation: a record read from the LUN may be anything, and a bad one is CORRUPT with
 * its LBA, never a crash or a silently wrong value.
 *
 * Heartbeat slot (one per host id):
 *    0 'VHBT'  4 crc  8 hostId u16  10 state u8 (0 free, 1 mounted, 2 reclaimed)  11 nameLen u8
 *   12 incarnation u32 (bumped at every mount)  16 counter u64 (bumped at every beat)
 *   24 wallMs f64 (informational only: liveness never compares clocks)  32 name[64]
 *
 * Lock record (one per file, per resource cluster, per host journal):
 *    0 'VLCK'  4 crc  8 index u32 (its own position: catches misdirected writes)
 *   12 gen u32 (bumped at every change)  16 mode u8  17 holders u8
 *   20 holders[16] x { hostId u16, pad u16, incarnation u32, joinGen u32 }
 * A holder is identified by (hostId, incarnation, joinGen): the gen at which it joined. A host
 * whose entry is gone (broken) has lost the lock, even if it joins again later.
 *
 * Bitmap sector (one per resource cluster):
 *    0 'VBMP'  4 crc  8 cluster u32  12 free u32  16 bits (bit i = block cluster*bpc + i)
 */
import { EsxError } from '@esxemu/shared';
import { checkSector, magicOf, readU64, seal, verifySector, writeU64 } from './codec.js';
import { MAX_HOST_NAME_BYTES } from './format.js';

export const HB_MAGIC = magicOf('VHBT');
export const LOCK_MAGIC = magicOf('VLCK');
export const BITMAP_MAGIC = magicOf('VBMP');

// ---- heartbeat slots ---------------------------------------------------------------------------

export const HB_STATE = { FREE: 0, MOUNTED: 1, RECLAIMED: 2 } as const;

export interface HeartbeatSlot {
  hostId: number;
  state: number;
  incarnation: number;
  counter: number;
  wallMs: number;
  name: string;
}

export function encodeHeartbeat(s: HeartbeatSlot, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  const name = Buffer.from(s.name, 'utf8').subarray(0, MAX_HOST_NAME_BYTES);
  b.writeUInt16LE(s.hostId, 8);
  b.writeUInt8(s.state, 10);
  b.writeUInt8(name.length, 11);
  b.writeUInt32LE(s.incarnation >>> 0, 12);
  writeU64(b, s.counter, 16);
  b.writeDoubleLE(s.wallMs, 24);
  name.copy(b, 32);
  return seal(b, HB_MAGIC);
}

export function decodeHeartbeat(b: Buffer, hostId: number, lba: number): HeartbeatSlot {
  if (!verifySector(b, HB_MAGIC, 'heartbeat slot', lba)) return { hostId, state: HB_STATE.FREE, incarnation: 0, counter: 0, wallMs: 0, name: '' };
  const s: HeartbeatSlot = {
    hostId: b.readUInt16LE(8),
    state: b.readUInt8(10),
    incarnation: b.readUInt32LE(12),
    counter: readU64(b, 16),
    wallMs: b.readDoubleLE(24),
    name: b.subarray(32, 32 + Math.min(b.readUInt8(11), MAX_HOST_NAME_BYTES)).toString('utf8'),
  };
  if (s.hostId !== hostId || s.state > HB_STATE.RECLAIMED) throw new EsxError('CORRUPT', `heartbeat slot at LBA ${lba} is inconsistent (host ${s.hostId}, state ${s.state})`, { lba });
  return s;
}

// ---- lock records ------------------------------------------------------------------------------

export const LOCK_MODE = { FREE: 0, EXCLUSIVE: 1, READ_ONLY: 2, MULTI_WRITER: 3 } as const;
export type LockMode = 'exclusive' | 'read-only' | 'multi-writer';
export const LOCK_MODE_NAMES: Record<number, LockMode | 'free'> = { 0: 'free', 1: 'exclusive', 2: 'read-only', 3: 'multi-writer' };
export function lockModeCode(m: LockMode): number {
  return m === 'exclusive' ? LOCK_MODE.EXCLUSIVE : m === 'read-only' ? LOCK_MODE.READ_ONLY : LOCK_MODE.MULTI_WRITER;
}

export const MAX_LOCK_HOLDERS = 16;

export interface LockHolder {
  hostId: number;
  incarnation: number;
  joinGen: number;
}

export interface LockRecord {
  index: number;
  gen: number;
  mode: number;
  holders: LockHolder[];
}

export function encodeLock(r: LockRecord, sectorSize: number): Buffer {
  if (r.holders.length > MAX_LOCK_HOLDERS) throw new EsxError('INSUFFICIENT_RESOURCES', `a lock has at most ${MAX_LOCK_HOLDERS} holders`);
  const b = Buffer.alloc(sectorSize);
  b.writeUInt32LE(r.index, 8);
  b.writeUInt32LE(r.gen >>> 0, 12);
  b.writeUInt8(r.mode, 16);
  b.writeUInt8(r.holders.length, 17);
  r.holders.forEach((h, i) => {
    const o = 20 + i * 12;
    b.writeUInt16LE(h.hostId, o);
    b.writeUInt32LE(h.incarnation >>> 0, o + 4);
    b.writeUInt32LE(h.joinGen >>> 0, o + 8);
  });
  return seal(b, LOCK_MAGIC);
}

export function decodeLock(b: Buffer, index: number, lba: number): LockRecord {
  if (!verifySector(b, LOCK_MAGIC, 'lock record', lba)) return { index, gen: 0, mode: LOCK_MODE.FREE, holders: [] };
  const r: LockRecord = { index: b.readUInt32LE(8), gen: b.readUInt32LE(12), mode: b.readUInt8(16), holders: [] };
  const n = b.readUInt8(17);
  const bad = r.index !== index || r.mode > LOCK_MODE.MULTI_WRITER || n > MAX_LOCK_HOLDERS || (r.mode === LOCK_MODE.FREE) !== (n === 0) || (r.mode === LOCK_MODE.EXCLUSIVE && n !== 1);
  if (bad) throw new EsxError('CORRUPT', `lock record at LBA ${lba} is inconsistent (index ${r.index}, mode ${r.mode}, ${n} holders)`, { lba });
  for (let i = 0; i < n; i++) {
    const o = 20 + i * 12;
    r.holders.push({ hostId: b.readUInt16LE(o), incarnation: b.readUInt32LE(o + 4), joinGen: b.readUInt32LE(o + 8) });
  }
  return r;
}

// ---- bitmap sectors (resource clusters) ----------------------------------------------------------

export const BITMAP_HEADER = 16;

export interface BitmapSector {
  cluster: number;
  free: number;
  /** The raw sector; bits start at BITMAP_HEADER. */
  raw: Buffer;
}

export function bitmapGet(s: BitmapSector, i: number): boolean {
  return (s.raw[BITMAP_HEADER + (i >> 3)]! & (1 << (i & 7))) !== 0;
}

export function bitmapSet(s: BitmapSector, i: number, on: boolean): void {
  const at = BITMAP_HEADER + (i >> 3);
  const bit = 1 << (i & 7);
  const was = (s.raw[at]! & bit) !== 0;
  if (was === on) throw new EsxError('CORRUPT', `block ${i} of cluster ${s.cluster} is already ${on ? 'allocated' : 'free'}`);
  s.raw[at] = on ? s.raw[at]! | bit : s.raw[at]! & ~bit;
  s.free += on ? -1 : 1;
}

export function newBitmapSector(cluster: number, blocks: number, sectorSize: number): BitmapSector {
  return { cluster, free: blocks, raw: Buffer.alloc(sectorSize) };
}

export function encodeBitmap(s: BitmapSector): Buffer {
  const b = Buffer.from(s.raw);
  b.writeUInt32LE(s.cluster, 8);
  b.writeUInt32LE(s.free, 12);
  return seal(b, BITMAP_MAGIC);
}

/** Decode with the count of set bits checked against `free` and no bit past the cluster's blocks. */
export function decodeBitmap(b: Buffer, cluster: number, blocks: number, lba: number): BitmapSector {
  if (checkSector(b, BITMAP_MAGIC) !== 'ok') throw new EsxError('CORRUPT', `bitmap sector of cluster ${cluster} at LBA ${lba}: ${checkSector(b, BITMAP_MAGIC)}`, { lba });
  const s: BitmapSector = { cluster: b.readUInt32LE(8), free: b.readUInt32LE(12), raw: Buffer.from(b) };
  if (s.cluster !== cluster) throw new EsxError('CORRUPT', `bitmap sector at LBA ${lba} belongs to cluster ${s.cluster}, not ${cluster}`, { lba });
  let used = 0;
  for (let i = 0; i < (b.length - BITMAP_HEADER) * 8; i++) {
    if (bitmapGet(s, i)) {
      if (i >= blocks) throw new EsxError('CORRUPT', `bitmap of cluster ${cluster} marks block ${i} past its ${blocks} blocks`, { lba });
      used++;
    }
  }
  if (used + s.free !== blocks) throw new EsxError('CORRUPT', `bitmap of cluster ${cluster}: free count ${s.free} but ${blocks - used} bits clear`, { lba });
  return s;
}
