/**
 * An open VMFS file: its lock, its cached block map, and the data path.
 *
 * Modes (the on-disk lock's mode):
 *   exclusive     read and write; thin: blocks are allocated (and zero-filled around the
 *                 written range) on first write; truncate; inflate (allocate every hole)
 *   read-only     shared with other read-only openers; no writes
 *   multi-writer  shared with other multi-writers (clustered guests); writes only into blocks
 *                 already allocated and within the size, as VMware requires eager-zeroed thick
 *                 disks for multi-writer: the file's metadata never changes under it
 *
 * Data path: a read or write is cut at file-block boundaries, physically adjacent blocks are
 * merged into one command, and only the sectors touched move (a write that does not start or
 * end on a sector boundary reads and rewrites its edge sectors). Writes into allocated blocks
 * are plain WRITEs: no metadata, no lock traffic. A write that needs new blocks or a larger
 * size goes through the host's metadata mutex: the lock is verified on disk, up to
 * BLOCKS_PER_TX blocks are allocated per transaction, each new block is written whole (data
 * and zeros) *before* the transaction that links it into the file commits.
 *
 * Durability: write() resolves when the target has the data (in its cache); flush() sends
 * SYNCHRONIZE CACHE, after which everything written before is on stable storage.
 *
 * Lost lock: once the heartbeat tick finds our lock entry gone, or the host fences itself,
 * every later operation fails with LOCK_LOST (close() just drops the handle).
 */
import { EsxError } from '@esxemu/shared';
import type { FileMap } from './filemap.js';
import type { HeldLock } from './locks.js';
import type { LockMode } from './records.js';
import { BLOCKS_PER_TX } from './journal.js';
import type { Vmfs } from './vmfs.js';

interface Segment {
  /** File offset where the segment starts, and its length (within one block). */
  offset: number;
  length: number;
  fb: number;
  /** Datastore block, or null for a hole. */
  block: number | null;
}

export class VmfsFile {
  readonly path: string;
  readonly mode: LockMode;
  /** @internal */ readonly lock: HeldLock;
  private readonly fs: Vmfs;
  private readonly map: FileMap;
  private lost: string | null = null;
  private closed = false;

  /** @internal use Vmfs.open() */
  constructor(fs: Vmfs, path: string, mode: LockMode, map: FileMap, lock: HeldLock) {
    this.fs = fs;
    this.path = path;
    this.mode = mode;
    this.map = map;
    this.lock = lock;
  }

  get size(): number {
    return this.map.inode.size;
  }

  /** Why the file was lost (null while the lock is ours). */
  get lostReason(): string | null {
    return this.lost;
  }

  /** @internal */
  markLost(reason: string): void {
    this.lost ??= reason;
  }

  private check(): void {
    if (this.closed) throw new EsxError('INVALID_STATE', `'${this.path}' is closed`);
    if (this.lost) throw new EsxError('LOCK_LOST', `'${this.path}': lock lost (${this.lost}); stop using this file and open it again`, { path: this.path });
    if (this.fs.fenced) {
      this.markLost(this.fs.fenced);
      this.check();
    }
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) throw new EsxError('INVALID_ARGUMENT', `bad range offset ${offset} length ${length}`);
    if (offset + length > this.map.maxBlocks * this.fs.superblock.fileBlockSize) throw new EsxError('INVALID_ARGUMENT', `range ends past the largest file size`);
  }

  private async segments(offset: number, length: number): Promise<Segment[]> {
    const B = this.fs.superblock.fileBlockSize;
    const out: Segment[] = [];
    for (let at = offset; at < offset + length; ) {
      const fb = Math.floor(at / B);
      const n = Math.min(offset + length, (fb + 1) * B) - at;
      const p = await this.map.get(fb);
      out.push({ offset: at, length: n, fb, block: p ? p - 1 : null });
      at += n;
    }
    return out;
  }

  /** Byte address on the LUN of a file offset within an allocated segment. */
  private byteAddr(s: Segment, fileOffset: number): number {
    const B = this.fs.superblock.fileBlockSize;
    return this.fs.geo.blockLba(s.block!) * this.fs.geo.S + (fileOffset - s.fb * B);
  }

  /** Group segments whose blocks are physically adjacent into runs (one command each). */
  private runs(segs: Segment[]): Segment[][] {
    const out: Segment[][] = [];
    for (const s of segs) {
      const last = out[out.length - 1];
      const prev = last?.[last.length - 1];
      if (prev && prev.block !== null && s.block !== null && s.block === prev.block + 1) last!.push(s);
      else out.push([s]);
    }
    return out;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check();
    this.checkRange(offset, length);
    const end = Math.min(offset + length, this.size);
    if (end <= offset) return Buffer.alloc(0);
    const S = this.fs.geo.S;
    const runs = this.runs(await this.segments(offset, end - offset)).filter((run) => run[0]!.block !== null); // holes read as zeros
    // Every run is read at once (they are independent commands); a request that is one
    // contiguous run on the LUN is returned as the device's buffer, without a copy.
    const pieces = await Promise.all(
      runs.map(async (run) => {
        const from = this.byteAddr(run[0]!, run[0]!.offset);
        const last = run[run.length - 1]!;
        const to = this.byteAddr(last, last.offset + last.length);
        const lba = Math.floor(from / S);
        const buf = await this.fs.dev.read(lba, Math.ceil(to / S) - lba);
        return { at: run[0]!.offset - offset, bytes: buf.subarray(from - lba * S, to - lba * S) };
      }),
    );
    this.check();
    if (pieces.length === 1 && pieces[0]!.at === 0 && pieces[0]!.bytes.length === end - offset) return pieces[0]!.bytes;
    const out = Buffer.alloc(end - offset);
    for (const p of pieces) p.bytes.copy(out, p.at);
    return out;
  }

  /** Write `data` at byte address `from` on the LUN, read-modify-writing partial edge sectors. */
  private async writeBytes(from: number, data: Buffer): Promise<void> {
    const S = this.fs.geo.S;
    const lba = Math.floor(from / S);
    const endLba = Math.ceil((from + data.length) / S);
    const head = from - lba * S;
    if (head === 0 && data.length % S === 0) return this.fs.dev.write(lba, data);
    const buf = Buffer.alloc((endLba - lba) * S);
    if (head) (await this.fs.dev.read(lba, 1)).copy(buf, 0);
    const tailLba = endLba - 1;
    if ((from + data.length) % S !== 0 && (tailLba !== lba || !head)) (await this.fs.dev.read(tailLba, 1)).copy(buf, (tailLba - lba) * S);
    data.copy(buf, head);
    await this.fs.dev.write(lba, buf);
  }

  private async writeAllocated(segs: Segment[], offset: number, data: Buffer): Promise<void> {
    for (const run of this.runs(segs)) {
      const first = run[0]!;
      const last = run[run.length - 1]!;
      await this.writeBytes(this.byteAddr(first, first.offset), data.subarray(first.offset - offset, last.offset + last.length - offset));
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.check();
    this.checkRange(offset, data.length);
    if (this.mode === 'read-only') throw new EsxError('INVALID_STATE', `'${this.path}' is open read-only`);
    if (!data.length) return;
    const segs = await this.segments(offset, data.length);
    const end = offset + data.length;
    if (segs.every((s) => s.block !== null) && end <= this.size) return this.writeAllocated(segs, offset, data);
    if (this.mode === 'multi-writer') throw new EsxError('INVALID_STATE', `'${this.path}' is open multi-writer: writes must stay within allocated blocks and the file size (inflate the file first)`);
    await this.fs.op(async () => {
      this.check();
      await this.verifyLock();
      const fresh = await this.segments(offset, data.length);
      await this.allocate(fresh.filter((s) => s.block === null), offset, data);
      await this.writeAllocated(fresh.filter((s) => s.block !== null), offset, data);
      if (end > this.size) await this.setSize(end);
    });
  }

  /** Allocate the hole segments, writing each new block whole (data + zeros), then link them. */
  private async allocate(holes: Segment[], offset: number, data: Buffer | null): Promise<void> {
    const B = this.fs.superblock.fileBlockSize;
    for (let i = 0; i < holes.length; i += BLOCKS_PER_TX) {
      const batch = holes.slice(i, i + BLOCKS_PER_TX);
      const d = this.map.draft();
      await this.fs.transact(async (tx) => {
        const got = await d.allocate(batch.map((s) => s.fb), this.fs.alloc, tx, (b) => this.fs.zeroBlocks(b));
        for (const s of batch) {
          const img = Buffer.alloc(B);
          if (data) data.copy(img, s.offset - s.fb * B, s.offset - offset, s.offset - offset + s.length);
          await this.fs.dev.write(this.fs.geo.blockLba(got.get(s.fb)!), img);
        }
        // The size grows in the same transaction as the blocks past it: never a block beyond EOF.
        if (data) d.inode.size = Math.max(d.inode.size, Math.min(offset + data.length, (batch[batch.length - 1]!.fb + 1) * B));
        d.inode.mtimeMs = Date.now();
        d.stage(tx, this.fs.geo);
      });
      this.map.adopt(d);
    }
  }

  private async setSize(size: number): Promise<void> {
    const d = this.map.draft();
    d.inode.size = size;
    d.inode.mtimeMs = Date.now();
    await this.fs.transact(async (tx) => d.stage(tx, this.fs.geo));
    this.map.adopt(d);
  }

  /** Our lock entry must still be on disk before we change metadata. */
  private async verifyLock(): Promise<void> {
    if (!(await this.fs.locks.verify(this.lock))) {
      this.markLost('its lock was broken by another host');
      this.check();
    }
  }

  /** SYNCHRONIZE CACHE: everything written so far is on stable storage when this resolves. */
  async flush(): Promise<void> {
    this.check();
    await this.fs.dev.flush();
  }

  /** Set the size: growing leaves a hole (thin), shrinking frees the blocks past the end. */
  async truncate(size: number): Promise<void> {
    this.check();
    this.checkRange(size, 0);
    if (this.mode !== 'exclusive') throw new EsxError('INVALID_STATE', `'${this.path}': truncate needs an exclusive open`);
    if (size === this.size) return;
    await this.fs.op(async () => {
      this.check();
      await this.verifyLock();
      if (size > this.size) await this.setSize(size);
      else await this.fs.shrink(this.map, size, this.lock);
    });
  }

  /** Allocate and zero every hole below the size (eager-zeroed thick, vmkfstools --inflatedisk). */
  async inflate(): Promise<void> {
    this.check();
    if (this.mode !== 'exclusive') throw new EsxError('INVALID_STATE', `'${this.path}': inflate needs an exclusive open`);
    await this.fs.op(async () => {
      this.check();
      await this.verifyLock();
      const holes = (await this.segments(0, this.size)).filter((s) => s.block === null);
      await this.allocate(holes, 0, null);
    });
  }

  /** Release the lock. A lost file just drops its handle. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fs.forget(this);
    if (this.lost || this.fs.fenced) return;
    await this.fs.meta.run(() => this.fs.releaseLock(this.lock));
  }
}
