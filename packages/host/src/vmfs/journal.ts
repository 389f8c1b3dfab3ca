/**
 * Crash safety: a per-host redo journal of metadata sector images.
 *
 * Why a journal rather than ordered writes: one namespace operation touches several sectors
 * that live far apart (an inode, a directory sector in the data area, one bitmap sector per
 * resource cluster, pointer sectors). Ordered writes would need a careful order per operation
 * plus a repair pass for every intermediate state; a redo journal makes each operation atomic
 * with one rule, and recovery is "replay the committed transaction" (as ext3/jbd2 and VMFS-3's
 * per-host journals do).
 *
 * A transaction is every sector image the operation changes. commit():
 *   1. one WRITE with FUA to the host's journal region: header sector (LBAs, payload CRC32C,
 *      seq) + the images. The header checksum covers the header and the payload checksum
 *      covers the images, so a torn or partial write is recognised as "not committed";
 *   2. the images are written to their home locations, then SYNCHRONIZE CACHE;
 *   3. the journal is marked empty (header with count 0).
 * A transaction is written only while its host holds the locks that cover every sector in it,
 * and step 3 completes before those locks are released. So a non-empty journal only ever
 * describes sectors nobody else may have touched since, and replaying it (after a crash, by
 * the host itself at its next mount or by the host that recovers it) is always safe and
 * idempotent. File *data* is not journaled: newly allocated blocks are written (data and
 * zeros) before the transaction that makes them part of a file commits (ext3's ordered mode),
 * so a crash never exposes stale blocks.
 *
 * Journal header: 0 'VJNL'  4 crc  8 hostId u16  12 count u32  16 seq u64  24 payloadCrc u32
 *                 32 lba[count] u64. A transaction holds at most maxTxSectors images.
 */
import { EsxError } from '@esxemu/shared';
import type { BlockDevice } from './block-device.js';
import { checkSector, crc32c, magicOf, readU64, seal, writeU64 } from './codec.js';
import { RECORD_BYTES, type Geometry } from './format.js';
import type { HeldLock } from './locks.js';

export const JOURNAL_MAGIC = magicOf('VJNL');
const HEADER_LBAS = (RECORD_BYTES - 32) / 8;

/** Blocks freed or allocated per transaction (keeps every transaction within the journal). */
export const BLOCKS_PER_TX = 16;

export function maxTxSectors(geo: Geometry): number {
  return Math.min(geo.sb.journalSectors - 1, HEADER_LBAS);
}

/** The sector images of one metadata operation, and the locks it holds until committed. */
export class Transaction {
  readonly writes = new Map<number, Buffer>();
  readonly locks: HeldLock[] = [];
  put(lba: number, image: Buffer): void {
    this.writes.set(lba, image);
  }
  get size(): number {
    return this.writes.size;
  }
}

export interface JournalContent {
  hostId: number;
  seq: number;
  /** Committed images (empty when the journal is empty or holds an uncommitted/torn write). */
  writes: Map<number, Buffer>;
  /** Why a non-empty journal was not taken as committed (null when clean). */
  problem: string | null;
}

function encodeHeader(hostId: number, seq: number, lbas: number[], payloadCrc: number, sectorSize: number): Buffer {
  const b = Buffer.alloc(sectorSize);
  b.writeUInt16LE(hostId, 8);
  b.writeUInt32LE(lbas.length, 12);
  writeU64(b, seq, 16);
  b.writeUInt32LE(payloadCrc >>> 0, 24);
  lbas.forEach((l, i) => writeU64(b, l, 32 + i * 8));
  return seal(b, JOURNAL_MAGIC);
}

/** Sectors a journal may redirect writes to: bitmap, inode table and data area only. */
function journalable(geo: Geometry, lba: number): boolean {
  return Number.isSafeInteger(lba) && lba >= geo.sb.bitmapStart && lba < geo.sb.totalSectors;
}

/** Read a host's journal; never throws on bad content (reports it in `problem`). */
export async function readJournal(dev: BlockDevice, geo: Geometry, hostId: number): Promise<JournalContent> {
  const at = geo.journal(hostId);
  const header = await dev.read(at, 1);
  const out: JournalContent = { hostId, seq: 0, writes: new Map(), problem: null };
  const c = checkSector(header, JOURNAL_MAGIC);
  if (c === 'zero') return out;
  if (c !== 'ok') {
    out.problem = `journal header ${c} (torn or uncommitted write): ignored`;
    return out;
  }
  out.seq = readU64(header, 16);
  const count = header.readUInt32LE(12);
  if (count === 0) return out;
  if (count > maxTxSectors(geo) || header.readUInt16LE(8) !== hostId) {
    out.problem = `journal header claims ${count} sectors for host ${header.readUInt16LE(8)}: ignored`;
    return out;
  }
  const payload = await dev.read(at + 1, count);
  if (crc32c(payload) !== header.readUInt32LE(24)) {
    out.problem = 'journal payload checksum mismatch (transaction not committed): ignored';
    return out;
  }
  for (let i = 0; i < count; i++) {
    const lba = readU64(header, 32 + i * 8);
    if (!journalable(geo, lba)) {
      out.problem = `journal names LBA ${lba} outside the journalable regions: ignored`;
      out.writes.clear();
      return out;
    }
    out.writes.set(lba, payload.subarray(i * geo.S, (i + 1) * geo.S));
  }
  return out;
}

export class Journal {
  private readonly dev: BlockDevice;
  private readonly geo: Geometry;
  readonly hostId: number;
  private seq = 0;

  constructor(dev: BlockDevice, geo: Geometry, hostId: number) {
    this.dev = dev;
    this.geo = geo;
    this.hostId = hostId;
  }

  /** Replay a host's committed transaction (ours at mount, or a dead host's) and empty it. */
  async replay(hostId: number): Promise<{ replayed: number; problem: string | null }> {
    const j = await readJournal(this.dev, this.geo, hostId);
    if (hostId === this.hostId) this.seq = Math.max(this.seq, j.seq);
    if (j.writes.size) {
      await writeHome(this.dev, j.writes);
      await this.dev.flush();
    }
    const at = this.geo.journal(hostId);
    if (j.writes.size || j.problem) await this.dev.write(at, encodeHeader(hostId, j.seq, [], 0, this.geo.S), { fua: true });
    return { replayed: j.writes.size, problem: j.problem };
  }

  async commit(tx: Transaction): Promise<void> {
    const n = tx.writes.size;
    if (n === 0) return;
    if (n > maxTxSectors(this.geo)) throw new EsxError('INTERNAL', `transaction of ${n} sectors exceeds the journal (${maxTxSectors(this.geo)})`);
    const lbas = [...tx.writes.keys()].sort((a, b) => a - b);
    for (const l of lbas) if (!journalable(this.geo, l)) throw new EsxError('INTERNAL', `transaction writes LBA ${l} outside the journalable regions`);
    const payload = Buffer.concat(lbas.map((l) => tx.writes.get(l)!));
    this.seq++;
    const at = this.geo.journal(this.hostId);
    await this.dev.write(at, Buffer.concat([encodeHeader(this.hostId, this.seq, lbas, crc32c(payload), this.geo.S), payload]), { fua: true });
    await writeHome(this.dev, tx.writes);
    await this.dev.flush();
    await this.dev.write(at, encodeHeader(this.hostId, this.seq, [], 0, this.geo.S), { fua: true });
  }
}

/** Write images to their home LBAs, merging adjacent sectors into one command. */
async function writeHome(dev: BlockDevice, writes: Map<number, Buffer>): Promise<void> {
  const lbas = [...writes.keys()].sort((a, b) => a - b);
  for (let i = 0; i < lbas.length; ) {
    let j = i + 1;
    while (j < lbas.length && lbas[j] === lbas[j - 1]! + 1) j++;
    await dev.write(lbas[i]!, Buffer.concat(lbas.slice(i, j).map((l) => writes.get(l)!)));
    i = j;
  }
}
