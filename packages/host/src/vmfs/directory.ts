/**
 * Directories: a directory is an inode whose data is an array of directory-entry sectors
 * (inode.ts); its size is the number of sectors in use times the sector size. Entries are
 * unordered; a removed entry leaves an empty slot that the next insertion reuses; a directory
 * grows by one sector when full (allocating a new file block when the sector falls in one).
 *
 * Lookups read the directory without a lock: every sector is written whole, so a reader sees
 * an entry or not. An entry whose inode is free or has another generation is being created or
 * removed by another host right now (its journal writes home sectors in LBA order, inode
 * table before data area), and reads as absent. Changes happen under the directory's lock.
 */
import { EsxError } from '@esxemu/shared';
import type { Allocator } from './allocator.js';
import type { BlockDevice } from './block-device.js';
import { checkName } from './codec.js';
import type { Geometry } from './format.js';
import { decodeDirSector, direntsPerSector, encodeDirSector, FILE_TYPE, type Dirent, type DirSector } from './inode.js';
import type { FileMap, MapDraft } from './filemap.js';
import type { Transaction } from './journal.js';

export interface DirSlot {
  index: number;
  slot: number;
  sector: DirSector;
  entry: Dirent;
}

export class Directory {
  readonly map: FileMap;
  private readonly dev: BlockDevice;
  private readonly geo: Geometry;

  constructor(dev: BlockDevice, geo: Geometry, map: FileMap) {
    if (map.inode.type !== FILE_TYPE.DIR) throw new EsxError('INVALID_ARGUMENT', `inode ${map.inode.ino} is not a directory`);
    this.dev = dev;
    this.geo = geo;
    this.map = map;
  }

  get sectors(): number {
    return Math.floor(this.map.inode.size / this.geo.S);
  }

  /** All sectors in use, decoded, read block by block. */
  async readAll(): Promise<DirSector[]> {
    const out: DirSector[] = [];
    const spb = this.geo.spb;
    const n = this.sectors;
    for (let first = 0; first < n; first += spb) {
      const ptr = await this.map.get(first / spb);
      const count = Math.min(spb, n - first);
      if (!ptr) throw new EsxError('CORRUPT', `directory ${this.map.inode.ino} has a hole at sector ${first}`);
      const lba = this.geo.blockLba(ptr - 1);
      const raw = await this.dev.read(lba, count);
      for (let i = 0; i < count; i++) out.push(decodeDirSector(raw.subarray(i * this.geo.S, (i + 1) * this.geo.S), this.map.inode.ino, first + i, lba + i, this.geo.sb.maxFiles));
    }
    return out;
  }

  async list(): Promise<Dirent[]> {
    return (await this.readAll()).flatMap((s) => s.filter((e): e is Dirent => e !== null));
  }

  async find(name: string): Promise<DirSlot | null> {
    const all = await this.readAll();
    for (let index = 0; index < all.length; index++) {
      const sector = all[index]!;
      const slot = sector.findIndex((e) => e?.name === name);
      if (slot >= 0) return { index, slot, sector, entry: sector[slot]! };
    }
    return null;
  }

  private async sectorLba(d: MapDraft, index: number): Promise<number> {
    const ptr = await d.get(Math.floor(index / this.geo.spb));
    if (!ptr) throw new EsxError('CORRUPT', `directory ${this.map.inode.ino} has a hole at sector ${index}`);
    return this.geo.blockLba(ptr - 1) + (index % this.geo.spb);
  }

  /** Add an entry (the caller holds the directory lock and checked the name is free). */
  async add(d: MapDraft, e: Dirent, tx: Transaction, alloc: Allocator, zero: (blocks: number[]) => Promise<void>): Promise<void> {
    checkName(e.name);
    const all = await this.readAll();
    let index = all.findIndex((s) => s.some((x) => x === null));
    let sector: DirSector;
    if (index >= 0) {
      sector = all[index]!;
    } else {
      index = all.length;
      const fb = Math.floor(index / this.geo.spb);
      if (!(await d.get(fb))) await d.allocate([fb], alloc, tx, zero);
      sector = new Array<Dirent | null>(direntsPerSector(this.geo.S)).fill(null);
      d.inode.size = (index + 1) * this.geo.S;
    }
    sector[sector.indexOf(null)] = e;
    tx.put(await this.sectorLba(d, index), encodeDirSector(this.map.inode.ino, index, sector, this.geo.S));
  }

  async remove(d: MapDraft, at: DirSlot, tx: Transaction): Promise<void> {
    const sector = [...at.sector];
    sector[at.slot] = null;
    tx.put(await this.sectorLba(d, at.index), encodeDirSector(this.map.inode.ino, at.index, sector, this.geo.S));
  }
}
