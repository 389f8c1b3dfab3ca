/**
 * The allocation map's sidecar file (`<lun file>.map`): a 64-byte header, then the bitmap.
 *
 *   0  magic "ESXEMAP1"     8  version (u32 BE) = 1     12  granule bytes (u32 BE)
 *   16 LUN size (u64 BE)    24 bitmap bytes (u32 BE)    28..63 reserved (zero)
 *   64 bitmap, one bit per granule, LSB first
 *
 * Updates go through one serialized writer: callers mark bitmap bytes dirty and await
 * persist(), which writes the dirty 4 KiB pages (coalescing whatever accumulated while the
 * previous write ran) and, when asked, fdatasyncs. One write is in flight at a time, so two
 * updates of the same page can never land out of order.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { EsxError } from '@esxemu/shared';
import { AllocationMap } from './allocation-map.js';

export const MAP_HEADER_BYTES = 64;
const MAGIC = Buffer.from('ESXEMAP1', 'latin1');
const VERSION = 1;
const PAGE = 4096;
/** Bound on the bitmap (4 MiB = 32 Mi granules = 2 PiB at 64 KiB): refuse silly sizes. */
export const MAX_MAP_BYTES = 4 * 1024 * 1024;

export interface OpenedMap {
  file: MapFile;
  map: AllocationMap;
  /** The map was missing or did not match; it was rebuilt with every granule marked mapped. */
  rebuilt: boolean;
}

export class MapFile {
  private readonly fh: FileHandle;
  private readonly map: AllocationMap;
  private readonly dirtyPages = new Set<number>();
  private chain: Promise<void> = Promise.resolve();
  private unsynced = false;

  /** Use MapFile.open(). */
  constructor(fh: FileHandle, map: AllocationMap) {
    this.fh = fh;
    this.map = map;
  }

  /**
   * Open the map at `path`, or create it: all granules unmapped for a new LUN file, all mapped
   * (the safe assumption) when the LUN file already existed without a usable map.
   */
  static async open(path: string, sizeBytes: number, granuleBytes: number, lunIsNew: boolean): Promise<OpenedMap> {
    const nbytes = AllocationMap.bytesFor(sizeBytes, granuleBytes);
    if (nbytes > MAX_MAP_BYTES) throw new EsxError('INVALID_ARGUMENT', `allocation map of ${nbytes} bytes exceeds ${MAX_MAP_BYTES}`);
    if (!lunIsNew) {
      const loaded = await tryLoad(path, sizeBytes, granuleBytes, nbytes);
      if (loaded) return loaded;
    }
    const map = new AllocationMap(sizeBytes, granuleBytes);
    if (!lunIsNew) map.setAll();
    await writeFresh(path, map);
    const fh = await open(path, 'r+');
    return { file: new MapFile(fh, map), map, rebuilt: !lunIsNew };
  }

  /** Note that bitmap bytes [lo, hi) changed in memory. */
  markDirty(range: { lo: number; hi: number } | null): void {
    if (!range) return;
    for (let p = Math.floor(range.lo / PAGE); p * PAGE < range.hi; p++) this.dirtyPages.add(p);
  }

  /** Write every dirty page (and fdatasync if `sync`); resolves once that is done. */
  persist(sync: boolean): Promise<void> {
    const run = this.chain.then(() => this.flushDirty(sync));
    this.chain = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    try {
      await this.persist(true);
    } finally {
      await this.fh.close();
    }
  }

  private async flushDirty(sync: boolean): Promise<void> {
    if (this.dirtyPages.size > 0) {
      const pages = [...this.dirtyPages].sort((a, b) => a - b);
      this.dirtyPages.clear();
      try {
        for (const p of pages) {
          const lo = p * PAGE;
          const hi = Math.min(lo + PAGE, this.map.bits.length);
          const bytes = Buffer.from(this.map.bits.subarray(lo, hi));
          await writeFully(this.fh, bytes, MAP_HEADER_BYTES + lo);
        }
      } catch (err) {
        for (const p of pages) this.dirtyPages.add(p);
        throw err;
      }
      this.unsynced = true;
    }
    if (sync && this.unsynced) {
      await this.fh.datasync();
      this.unsynced = false;
    }
  }
}

function header(map: AllocationMap): Buffer {
  const h = Buffer.alloc(MAP_HEADER_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt32BE(VERSION, 8);
  h.writeUInt32BE(map.granuleBytes, 12);
  h.writeBigUInt64BE(BigInt(map.sizeBytes), 16);
  h.writeUInt32BE(map.bits.length, 24);
  return h;
}

async function tryLoad(path: string, sizeBytes: number, granuleBytes: number, nbytes: number): Promise<OpenedMap | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r+');
  } catch {
    return null;
  }
  try {
    const h = Buffer.alloc(MAP_HEADER_BYTES);
    const { bytesRead } = await fh.read(h, 0, MAP_HEADER_BYTES, 0);
    if (
      bytesRead !== MAP_HEADER_BYTES ||
      !h.subarray(0, 8).equals(MAGIC) ||
      h.readUInt32BE(8) !== VERSION ||
      h.readUInt32BE(12) !== granuleBytes ||
      h.readBigUInt64BE(16) !== BigInt(sizeBytes) ||
      h.readUInt32BE(24) !== nbytes
    ) {
      await fh.close();
      return null;
    }
    const bits = new Uint8Array(nbytes);
    const got = await fh.read(bits, 0, nbytes, MAP_HEADER_BYTES);
    if (got.bytesRead !== nbytes) {
      await fh.close();
      return null;
    }
    const map = new AllocationMap(sizeBytes, granuleBytes, bits);
    return { file: new MapFile(fh, map), map, rebuilt: false };
  } catch {
    await fh.close().catch(() => undefined);
    return null;
  }
}

/** Write a complete map next to `path` and rename it into place, durably. */
async function writeFresh(path: string, map: AllocationMap): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await writeFully(fh, header(map), 0);
    await writeFully(fh, Buffer.from(map.bits.buffer, map.bits.byteOffset, map.bits.byteLength), MAP_HEADER_BYTES);
    await fh.datasync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  await syncDir(dirname(path));
}

export async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    if (bytesWritten <= 0) throw new EsxError('INTERNAL', `short write at ${position + done}`);
    done += bytesWritten;
  }
}

export async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } catch {
    // some filesystems refuse fsync on a directory; the rename is still ordered after the data
  } finally {
    await d.close();
  }
}
