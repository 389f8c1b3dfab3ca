/**
 * One sparse file per LUN (tgt's bs_rdwr): created with ftruncate to its size, read and written
 * with positioned I/O (sync on the event loop while the file answers from memory, else on the
 * thread pool: file-io.ts). A write resolves once the data is in the file (the page
 * cache: it survives `kill -9`); with fua, and on flush(), fdatasync puts it on the disk.
 *
 * Thin provisioning: Node has no fallocate/punch-hole, so allocation is tracked in a persisted
 * bitmap (`<file>.map`, see map-file.ts) at GRANULE_BYTES granularity:
 *  - 64 KiB, because the map then costs 2 MiB per TiB of LUN in memory and on disk, a first
 *    write pays one map update per 64 KiB rather than per block, and it matches the allocation
 *    unit that filesystems punch efficiently. It is advertised as the OPTIMAL UNMAP GRANULARITY.
 *  - A write marks its granules mapped and writes that map page before writing the data, so
 *    after `kill -9` no data sits in a granule the map calls unmapped; fua and flush() fdatasync
 *    the map before the data.
 *  - UNMAP zeroes partially covered granules (they stay mapped), punches out fully covered ones
 *    (`fallocate --punch-hole` when the binary exists, else zeros are written over the mapped
 *    ones), fdatasyncs the data, and only then clears their bits and writes the map durably,
 *    before the UNMAP is acknowledged.
 * Limitation: after a power loss (not a process kill), a write that was never synced may have
 * reached the disk while its map page did not; GET LBA STATUS then reports it deallocated.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EsxError } from '@esxemu/shared';
import type { MappingRun } from './allocation-map.js';
import { AllocationMap } from './allocation-map.js';
import type { Backstore } from './backstore.js';
import { checkIo, MAX_IO_BYTES } from './io-check.js';
import { dataBuffers } from './buffer-pool.js';
import { FileIo, type FileIoOptions, type FileIoStats } from './file-io.js';
import { MapFile, syncDir } from './map-file.js';
import { checkGeometry } from './memory.js';
import { punchHole } from './punch-hole.js';

export const GRANULE_BYTES = 64 * 1024;
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

export interface FileBackstoreOptions {
  path: string;
  /** Size of the LUN; required to create the file, checked against an existing one. */
  sizeBytes?: number;
  blockSize?: number;
  /** Create the file when it does not exist (default true). */
  create?: boolean;
  granuleBytes?: number;
  /** How data moves to and from the file (see file-io.ts); default auto. */
  io?: FileIoOptions;
}

export class FileBackstore implements Backstore {
  readonly kind = 'file';
  readonly thin = true;
  readonly path: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly granuleBytes: number;
  /** The map was missing or unusable at open and was rebuilt as all-mapped. */
  readonly mapRebuilt: boolean;
  private readonly fh: FileHandle;
  private readonly io: FileIo;
  private readonly map: AllocationMap;
  private readonly mapFile: MapFile;
  private closed = false;

  private constructor(path: string, fh: FileHandle, opened: { map: AllocationMap; file: MapFile; rebuilt: boolean }, blockSize: number, io: FileIoOptions) {
    this.path = path;
    this.fh = fh;
    this.io = new FileIo(fh, io);
    this.map = opened.map;
    this.mapFile = opened.file;
    this.mapRebuilt = opened.rebuilt;
    this.sizeBytes = opened.map.sizeBytes;
    this.granuleBytes = opened.map.granuleBytes;
    this.blockSize = blockSize;
  }

  static async open(opts: FileBackstoreOptions): Promise<FileBackstore> {
    const blockSize = opts.blockSize ?? 512;
    const granuleBytes = opts.granuleBytes ?? GRANULE_BYTES;
    if (granuleBytes < blockSize || granuleBytes % blockSize !== 0) throw new EsxError('INVALID_ARGUMENT', `granule ${granuleBytes} is not a multiple of the block size ${blockSize}`);
    let sizeBytes: number;
    let isNew = false;
    const st = await stat(opts.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (st) {
      if (!st.isFile()) throw new EsxError('INVALID_ARGUMENT', `${opts.path} is not a regular file`);
      sizeBytes = st.size;
      if (opts.sizeBytes !== undefined && opts.sizeBytes !== sizeBytes) {
        throw new EsxError('INVALID_STATE', `${opts.path} holds ${sizeBytes} bytes but the LUN is configured with ${opts.sizeBytes}`, { path: opts.path });
      }
      checkGeometry(sizeBytes, blockSize);
    } else {
      if (opts.create === false) throw new EsxError('NOT_FOUND', `${opts.path} does not exist`);
      if (opts.sizeBytes === undefined) throw new EsxError('INVALID_ARGUMENT', `size needed to create ${opts.path}`);
      sizeBytes = opts.sizeBytes;
      checkGeometry(sizeBytes, blockSize);
      const fh = await open(opts.path, 'wx');
      try {
        await fh.truncate(sizeBytes);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await syncDir(dirname(opts.path));
      isNew = true;
    }
    const opened = await MapFile.open(`${opts.path}.map`, sizeBytes, granuleBytes, isNew);
    const fh = await open(opts.path, 'r+').catch(async (err) => {
      await opened.file.close().catch(() => undefined);
      throw err;
    });
    return new FileBackstore(opts.path, fh, opened, blockSize, opts.io ?? {});
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const buf = dataBuffers.take(length);
    await this.io.readFully(buf, 0, length, offset);
    return buf;
  }

  async write(offset: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    this.check(offset, data.length);
    const changed = this.map.markMapped(offset, data.length);
    if (changed) {
      this.mapFile.markDirty(changed);
      await this.mapFile.persist(false);
    }
    await this.io.writeFully(data, offset);
    if (opts?.fua) await this.sync();
  }

  /** How reads and writes were served (sync or thread pool), for logs and benchmarks. */
  get ioStats(): FileIoStats {
    return this.io.stats;
  }

  async flush(): Promise<void> {
    if (this.closed) throw new EsxError('INVALID_STATE', 'backstore closed');
    await this.sync();
  }

  async unmap(offset: number, length: number): Promise<void> {
    this.check(offset, length, Number.MAX_SAFE_INTEGER);
    if (length === 0) return;
    const G = this.granuleBytes;
    const stop = offset + length;
    const { first, end } = this.map.coveredGranules(offset, length);
    if (end > first) {
      await this.zeroIfMapped(offset, first * G);
      await this.zeroIfMapped(Math.min(end * G, this.sizeBytes), stop);
      const runs = this.map.runs(first * G, Math.min(end * G, this.sizeBytes) - first * G).filter((r) => r.mapped);
      if (runs.length === 0) return;
      const spanStart = runs[0]!.offset;
      const last = runs[runs.length - 1]!;
      const punched = await punchHole(this.path, spanStart, last.offset + last.length - spanStart);
      if (!punched) for (const r of runs) await this.writeZeros(r.offset, r.offset + r.length);
      await this.fh.datasync();
      this.mapFile.markDirty(this.map.clear(first, end));
      await this.mapFile.persist(true);
    } else {
      await this.zeroIfMapped(offset, stop);
    }
  }

  async mapping(offset: number, length: number): Promise<MappingRun[]> {
    this.check(offset, length, Number.MAX_SAFE_INTEGER);
    return this.map.runs(offset, length);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.fh.datasync();
      await this.mapFile.close();
    } finally {
      await this.fh.close();
    }
  }

  private async sync(): Promise<void> {
    await this.mapFile.persist(true);
    await this.fh.datasync();
  }

  /** Zero the parts of [from, to) whose granules are mapped (unmapped ones read as zeros already). */
  private async zeroIfMapped(from: number, to: number): Promise<void> {
    if (to <= from) return;
    for (const r of this.map.runs(from, to - from)) if (r.mapped) await this.writeZeros(r.offset, r.offset + r.length);
  }

  private async writeZeros(from: number, to: number): Promise<void> {
    for (let pos = from; pos < to; pos += ZERO_CHUNK.length) {
      const n = Math.min(ZERO_CHUNK.length, to - pos);
      await this.io.writeFully(ZERO_CHUNK.subarray(0, n), pos);
    }
  }

  private check(offset: number, length: number, max = MAX_IO_BYTES): void {
    if (this.closed) throw new EsxError('INVALID_STATE', 'backstore closed');
    checkIo(this, offset, length, max);
  }
}
