/**
 * The block device VMFS runs on: the shared LUN as one host sees it (one I_T nexus).
 *
 * The interface is the handful of SCSI commands a clustered file system needs, with SCSI
 * failures already turned into EsxErrors (IO_ERROR, NO_SPACE...) by the implementation:
 *
 *   read(lba, blocks)                      READ(16)
 *   write(lba, data, { fua })              WRITE(16), FUA: durable when it completes
 *   flush()                                SYNCHRONIZE CACHE(16)
 *   compareAndWrite(lba, expected, next)   COMPARE AND WRITE (ATS): 'ok' | 'miscompare'
 *   reserve() / release()                  SPC-2 RESERVE(6) / RELEASE(6)
 *
 * `ats` says whether compareAndWrite may be used; when false VMFS falls back to a
 * reservation around a read-modify-write (atomic.ts). The switch is per device so tests and
 * users can force the fallback path on a target that does offer ATS.
 *
 * SPC-2 reservations are per nexus and crude: while another host holds the LU, every READ and
 * WRITE of ours gets RESERVATION CONFLICT. Hosts hold the reservation only around one
 * read-modify-write of one sector, so an implementation retries conflicted I/O with a short
 * backoff for a bounded time (`retryConflicts`) before failing with TIMEOUT.
 */
import { EsxError, sleep } from '@esxemu/shared';

export type CompareAndWriteResult = 'ok' | 'miscompare';

export interface WriteOptions {
  /** Force Unit Access: the write completes only once it is on stable storage. */
  fua?: boolean;
}

export interface BlockDevice {
  /** Logical block size in bytes (512 or 4096). Every VMFS metadata record is one block. */
  readonly blockSize: number;
  readonly blocks: number;
  readonly sizeBytes: number;
  /** COMPARE AND WRITE may be used (false: the reservation fallback is used instead). */
  readonly ats: boolean;
  /** A short name for logs and errors (host / initiator). */
  readonly name: string;
  read(lba: number, blocks: number): Promise<Buffer>;
  write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void>;
  flush(): Promise<void>;
  /** Atomically: if the blocks at lba equal `expected`, write `next`. */
  compareAndWrite(lba: number, expected: Buffer, next: Buffer): Promise<CompareAndWriteResult>;
  /** SPC-2 RESERVE: true when we hold the LU, false on RESERVATION CONFLICT. */
  reserve(): Promise<boolean>;
  release(): Promise<void>;
  close(): Promise<void>;
}

/** Check an I/O request against the device geometry (INVALID_ARGUMENT, nothing sent). */
export function checkRange(dev: Pick<BlockDevice, 'blockSize' | 'blocks'>, lba: number, blocks: number): void {
  if (!Number.isSafeInteger(lba) || !Number.isSafeInteger(blocks) || lba < 0 || blocks < 0 || lba + blocks > dev.blocks) {
    throw new EsxError('INVALID_ARGUMENT', `I/O of ${blocks} blocks at LBA ${lba} is outside the device (${dev.blocks} blocks)`);
  }
}

export function checkData(dev: Pick<BlockDevice, 'blockSize' | 'blocks'>, lba: number, data: Buffer): number {
  if (data.length === 0 || data.length % dev.blockSize !== 0) throw new EsxError('INVALID_ARGUMENT', `write of ${data.length} bytes is not a whole number of ${dev.blockSize}-byte blocks`);
  const blocks = data.length / dev.blockSize;
  checkRange(dev, lba, blocks);
  return blocks;
}

/**
 * A device that forwards every command to `inner`: the base of the wrappers (crash injection,
 * fencing, fsck's read-only view), which override only what they change.
 */
export class ForwardingDevice implements BlockDevice {
  readonly inner: BlockDevice;
  constructor(inner: BlockDevice) {
    this.inner = inner;
  }
  get blockSize(): number {
    return this.inner.blockSize;
  }
  get blocks(): number {
    return this.inner.blocks;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get ats(): boolean {
    return this.inner.ats;
  }
  get name(): string {
    return this.inner.name;
  }
  read(lba: number, blocks: number): Promise<Buffer> {
    return this.inner.read(lba, blocks);
  }
  write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    return this.inner.write(lba, data, opts);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  compareAndWrite(lba: number, expected: Buffer, next: Buffer): Promise<CompareAndWriteResult> {
    return this.inner.compareAndWrite(lba, expected, next);
  }
  reserve(): Promise<boolean> {
    return this.inner.reserve();
  }
  release(): Promise<void> {
    return this.inner.release();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * A device that only reads: every write, flush, COMPARE AND WRITE and RESERVE fails with
 * INVALID_STATE before anything reaches the LUN. fsck and the observer (observer.ts) see the
 * LUN through it, so that a tool looking at a live datastore cannot disturb it by mistake.
 */
export class ReadOnlyDevice extends ForwardingDevice {
  override get ats(): boolean {
    return false;
  }
  private refuse(what: string): never {
    throw new EsxError('INVALID_STATE', `${what} on ${this.name}: this view of the LUN is read-only`, { reason: 'READ_ONLY' });
  }
  override async write(_lba: number, _data: Buffer, _opts?: WriteOptions): Promise<void> {
    this.refuse('WRITE');
  }
  override async flush(): Promise<void> {
    this.refuse('SYNCHRONIZE CACHE');
  }
  override async compareAndWrite(_lba: number, _expected: Buffer, _next: Buffer): Promise<CompareAndWriteResult> {
    this.refuse('COMPARE AND WRITE');
  }
  override async reserve(): Promise<boolean> {
    this.refuse('RESERVE');
  }
  override async release(): Promise<void> {
    this.refuse('RELEASE');
  }
  /** The device underneath belongs to the caller. */
  override async close(): Promise<void> {}
}

/** Thrown inside an implementation to ask retryConflicts for another attempt. */
export class ReservationConflict extends Error {
  constructor() {
    super('RESERVATION CONFLICT');
  }
}

/** How long conflicted I/O is retried while another host holds an SPC-2 reservation. */
export const DEFAULT_CONFLICT_RETRY_MS = 5_000;

/**
 * Run `fn` again while it throws ReservationConflict: 1, 2, 4 .. 64 ms apart, for at most
 * `budgetMs` of wall time, then TIMEOUT.
 */
export async function retryConflicts<T>(what: string, fn: () => Promise<T>, budgetMs = DEFAULT_CONFLICT_RETRY_MS): Promise<T> {
  const deadline = Date.now() + budgetMs;
  let delay = 1;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ReservationConflict)) throw err;
      if (Date.now() >= deadline) throw new EsxError('TIMEOUT', `${what}: the LUN stayed reserved by another host for ${budgetMs} ms`, { reason: 'RESERVATION_CONFLICT' });
      await sleep(delay);
      delay = Math.min(64, delay * 2);
    }
  }
}

/** A FIFO async mutex (one reservation user at a time within a host, one metadata op...). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let done!: () => void;
    this.tail = new Promise<void>((r) => (done = r));
    await prev;
    try {
      return await fn();
    } finally {
      done();
    }
  }
}
