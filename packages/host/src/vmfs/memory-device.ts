/**
 * An in-memory LUN shared by several MemoryBlockDevice instances, each one an I_T nexus (a
 * host): the unit tests' SAN. Semantics follow the target's:
 *  - COMPARE AND WRITE is atomic (JS runs it in one turn) and reports a miscompare;
 *  - SPC-2 RESERVE/RELEASE: while one device holds the LU, the others get RESERVATION
 *    CONFLICT on READ, WRITE, COMPARE AND WRITE and RESERVE (retried for a bounded time, as
 *    the iSCSI device does); RELEASE by a non-holder is a no-op; close() is the nexus loss
 *    that drops the reservation;
 *  - every write lands in the shared buffer at once (there is no volatile cache to lose), so
 *    flush() only counts.
 * `stats` counts commands so tests can see which path (ATS or reservations) was taken.
 */
import { EsxError } from '@esxemu/shared';
import { checkData, checkRange, retryConflicts, ReservationConflict, type BlockDevice, type CompareAndWriteResult, type WriteOptions } from './block-device.js';

export class MemoryLun {
  readonly blockSize: number;
  readonly data: Buffer;
  /** The device holding the SPC-2 reservation. */
  holder: MemoryBlockDevice | null = null;

  constructor(sizeBytes: number, blockSize = 512) {
    if (blockSize !== 512 && blockSize !== 4096) throw new EsxError('INVALID_ARGUMENT', 'block size must be 512 or 4096');
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % blockSize !== 0) throw new EsxError('INVALID_ARGUMENT', `LUN size ${sizeBytes} is not a positive multiple of ${blockSize}`);
    this.blockSize = blockSize;
    this.data = Buffer.alloc(sizeBytes);
  }

  get blocks(): number {
    return this.data.length / this.blockSize;
  }
}

export interface MemoryDeviceStats {
  reads: number;
  writes: number;
  flushes: number;
  compareAndWrites: number;
  miscompares: number;
  reserves: number;
  conflicts: number;
}

export interface MemoryDeviceOptions {
  name?: string;
  /** Offer COMPARE AND WRITE (default true). */
  ats?: boolean;
  /** How long conflicted I/O is retried (default DEFAULT_CONFLICT_RETRY_MS). */
  conflictRetryMs?: number;
}

export class MemoryBlockDevice implements BlockDevice {
  readonly lun: MemoryLun;
  readonly name: string;
  readonly ats: boolean;
  readonly stats: MemoryDeviceStats = { reads: 0, writes: 0, flushes: 0, compareAndWrites: 0, miscompares: 0, reserves: 0, conflicts: 0 };
  private readonly conflictRetryMs: number | undefined;
  private closed = false;

  constructor(lun: MemoryLun, opts: MemoryDeviceOptions = {}) {
    this.lun = lun;
    this.name = opts.name ?? 'memory';
    this.ats = opts.ats ?? true;
    this.conflictRetryMs = opts.conflictRetryMs;
  }

  get blockSize(): number {
    return this.lun.blockSize;
  }

  get blocks(): number {
    return this.lun.blocks;
  }

  get sizeBytes(): number {
    return this.lun.data.length;
  }

  private gate(): void {
    if (this.closed) throw new EsxError('INVALID_STATE', `device ${this.name} is closed`);
    if (this.lun.holder !== null && this.lun.holder !== this) {
      this.stats.conflicts++;
      throw new ReservationConflict();
    }
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    checkRange(this, lba, blocks);
    return retryConflicts(`read of LBA ${lba}`, async () => {
      this.gate();
      this.stats.reads++;
      const bs = this.blockSize;
      return Buffer.from(this.lun.data.subarray(lba * bs, (lba + blocks) * bs));
    }, this.conflictRetryMs);
  }

  async write(lba: number, data: Buffer, _opts?: WriteOptions): Promise<void> {
    checkData(this, lba, data);
    return retryConflicts(`write of LBA ${lba}`, async () => {
      this.gate();
      this.stats.writes++;
      data.copy(this.lun.data, lba * this.blockSize);
    }, this.conflictRetryMs);
  }

  async flush(): Promise<void> {
    if (this.closed) throw new EsxError('INVALID_STATE', `device ${this.name} is closed`);
    this.stats.flushes++;
  }

  async compareAndWrite(lba: number, expected: Buffer, next: Buffer): Promise<CompareAndWriteResult> {
    if (!this.ats) throw new EsxError('NOT_IMPLEMENTED', `device ${this.name}: COMPARE AND WRITE is switched off`);
    if (expected.length !== next.length) throw new EsxError('INVALID_ARGUMENT', 'compare and write buffers differ in length');
    const blocks = checkData(this, lba, next);
    return retryConflicts(`compare and write of LBA ${lba}`, async () => {
      this.gate();
      this.stats.compareAndWrites++;
      const bs = this.blockSize;
      const current = this.lun.data.subarray(lba * bs, (lba + blocks) * bs);
      if (!current.equals(expected)) {
        this.stats.miscompares++;
        return 'miscompare';
      }
      next.copy(this.lun.data, lba * bs);
      return 'ok';
    }, this.conflictRetryMs);
  }

  async reserve(): Promise<boolean> {
    if (this.closed) throw new EsxError('INVALID_STATE', `device ${this.name} is closed`);
    if (this.lun.holder !== null && this.lun.holder !== this) {
      this.stats.conflicts++;
      return false;
    }
    this.stats.reserves++;
    this.lun.holder = this;
    return true;
  }

  async release(): Promise<void> {
    if (this.lun.holder === this) this.lun.holder = null;
  }

  async close(): Promise<void> {
    if (this.lun.holder === this) this.lun.holder = null;
    this.closed = true;
  }
}
