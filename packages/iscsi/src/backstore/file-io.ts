/**
 * How a file backstore moves its data bytes: positioned reads and writes on the LUN file, either
 * synchronously on the event loop or on libuv's thread pool.
 *
 *   threadpool  every read and write goes through fs/promises (libuv's worker threads). An I/O
 *               never stalls the event loop, but each one pays a queue hop, a thread wake-up and
 *               a completion callback: on a loaded 2-core machine that hand-off costs more than
 *               copying 64 KiB from the page cache.
 *   sync        every read and write is a pread/pwrite on the event loop. A page-cache hit is a
 *               memory copy of a few microseconds; a miss (or a write throttled by the kernel's
 *               dirty-page limits) stalls every session of the target for as long as the disk.
 *   auto        (default) sync while the file answers from memory, threadpool when it does not:
 *               each sync I/O is timed, and one that takes longer than `slowMs` switches this
 *               file to the thread pool for `cooldownMs`, after which sync is tried again. So a
 *               cache-cold LUN or a slow disk stalls the event loop for at most one slow I/O per
 *               cooldown, and a warm LUN is served at memory speed. The same choice as SPDK's or
 *               io_uring's "try non-blocking first" paths, made with the one tool Node offers.
 *
 * fdatasync is always asynchronous: it is slow by nature and has nothing to gain on the loop.
 */
import { readSync, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { EsxError } from '@esxemu/shared';

export const FILE_IO_MODES = ['auto', 'sync', 'threadpool'] as const;
export type FileIoMode = (typeof FILE_IO_MODES)[number];

export interface FileIoOptions {
  mode?: FileIoMode;
  /** auto: a sync I/O slower than this moves the file to the thread pool (default 2 ms). */
  slowMs?: number;
  /** auto: how long the file stays on the thread pool after a slow I/O (default 1 s). */
  cooldownMs?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

export interface FileIoStats {
  mode: FileIoMode;
  syncOps: number;
  poolOps: number;
  /** Times auto mode moved to the thread pool after a slow sync I/O. */
  slowSwitches: number;
}

export class FileIo {
  readonly mode: FileIoMode;
  private readonly fh: FileHandle;
  private readonly slowMs: number;
  private readonly cooldownMs: number;
  private readonly now: () => number;
  /** auto: use the thread pool until this time. */
  private poolUntil = 0;
  private readonly counters = { syncOps: 0, poolOps: 0, slowSwitches: 0 };

  constructor(fh: FileHandle, o: FileIoOptions = {}) {
    const mode = o.mode ?? 'auto';
    if (!FILE_IO_MODES.includes(mode)) throw new EsxError('INVALID_ARGUMENT', `file I/O mode '${String(mode)}' is not one of ${FILE_IO_MODES.join(', ')}`);
    this.fh = fh;
    this.mode = mode;
    this.slowMs = o.slowMs ?? 2;
    this.cooldownMs = o.cooldownMs ?? 1000;
    this.now = o.now ?? (() => performance.now());
  }

  get stats(): FileIoStats {
    return { mode: this.mode, ...this.counters };
  }

  /** Fill buf[offset, offset + length) from the file at position; bytes past the file's end read as zeros. */
  async readFully(buf: Buffer, offset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const n = await this.op('read', buf, offset + done, length - done, position + done);
      if (n <= 0) {
        buf.fill(0, offset + done, offset + length); // past the file's end (shrunk behind our back)
        return;
      }
      done += n;
    }
  }

  /** Write all of data at position. */
  async writeFully(data: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const n = await this.op('write', data, done, data.length - done, position + done);
      if (n <= 0) throw new EsxError('INTERNAL', `short write at ${position + done}`);
      done += n;
    }
  }

  private op(kind: 'read' | 'write', buf: Buffer, offset: number, length: number, position: number): number | Promise<number> {
    if (this.mode === 'threadpool' || (this.mode === 'auto' && this.now() < this.poolUntil)) {
      this.counters.poolOps++;
      return kind === 'read'
        ? this.fh.read(buf, offset, length, position).then((r) => r.bytesRead)
        : this.fh.write(buf, offset, length, position).then((r) => r.bytesWritten);
    }
    this.counters.syncOps++;
    const start = this.mode === 'auto' ? this.now() : 0;
    const n = kind === 'read' ? readSync(this.fh.fd, buf, offset, length, position) : writeSync(this.fh.fd, buf, offset, length, position);
    if (this.mode === 'auto') {
      const end = this.now();
      if (end - start > this.slowMs) {
        this.poolUntil = end + this.cooldownMs;
        this.counters.slowSwitches++;
      }
    }
    return n;
  }
}
