/**
 * Crash injection for tests (TigerBeetle / FoundationDB style fault sites): a BlockDevice
 * wrapper that lets `writesBeforeCrash` writes through (WRITE and COMPARE AND WRITE both
 * count) and then "loses power": that write and every later command fail with IO_ERROR and
 * reach nothing, as if the host had been killed between two commands. With `tear`, the
 * crashing write is torn instead: its first half of blocks lands (a multi-sector write is not
 * atomic on a real disk), the rest does not.
 *
 * `writes` counts the writes seen, so a test can run an operation once to learn how many
 * writes it issues and then crash it at every index.
 */
import { EsxError } from '@esxemu/shared';
import { ForwardingDevice, type BlockDevice, type CompareAndWriteResult, type WriteOptions } from './block-device.js';

export interface CrashOptions {
  /** Writes that succeed before the crash; Infinity = never crash (count only). */
  writesBeforeCrash: number;
  tear?: boolean;
}

export class CrashingBlockDevice extends ForwardingDevice {
  writes = 0;
  crashed = false;
  private readonly o: CrashOptions;
  /** Writes that land, and the LBA of each, in order (to find a fault site). */
  readonly log: number[] = [];

  constructor(inner: BlockDevice, o: CrashOptions) {
    super(inner);
    this.o = { ...o };
  }

  /** Crash after `n` more writes from now. */
  crashAfter(n: number, tear = false): void {
    this.o.writesBeforeCrash = this.writes + n;
    this.o.tear = tear;
  }

  private dead(): EsxError {
    return new EsxError('IO_ERROR', `device ${this.name}: crashed (injected after ${this.o.writesBeforeCrash} writes)`, { injected: true });
  }

  /** Count a write; returns false when this is the one that crashes. */
  private admit(lba: number): boolean {
    if (this.crashed) throw this.dead();
    if (this.writes >= this.o.writesBeforeCrash) {
      this.crashed = true;
      return false;
    }
    this.writes++;
    this.log.push(lba);
    return true;
  }

  override read(lba: number, blocks: number): Promise<Buffer> {
    if (this.crashed) return Promise.reject(this.dead());
    return this.inner.read(lba, blocks);
  }

  override async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    if (this.admit(lba)) return this.inner.write(lba, data, opts);
    const blocks = data.length / this.blockSize;
    if (this.o.tear && blocks > 1) await this.inner.write(lba, data.subarray(0, Math.floor(blocks / 2) * this.blockSize), opts);
    throw this.dead();
  }

  override async flush(): Promise<void> {
    if (this.crashed) throw this.dead();
    return this.inner.flush();
  }

  override async compareAndWrite(lba: number, expected: Buffer, next: Buffer): Promise<CompareAndWriteResult> {
    if (this.admit(lba)) return this.inner.compareAndWrite(lba, expected, next);
    throw this.dead();
  }

  override async reserve(): Promise<boolean> {
    if (this.crashed) throw this.dead();
    return this.inner.reserve();
  }

  override async release(): Promise<void> {
    if (this.crashed) throw this.dead();
    return this.inner.release();
  }
}
