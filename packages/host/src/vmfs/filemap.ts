/**
 * A file's block map (inode.ts) in memory: which file block lives in which datastore block.
 *
 * `FileMap` is the committed state: the inode and the pointer sectors read so far (cached;
 * valid as long as the caller holds a lock that keeps other hosts from changing the file).
 * Changes are made on a `MapDraft`, which stages a copy of the inode and of every pointer
 * sector it touches; the draft's images go into a transaction and are adopted only after the
 * transaction commits, so a failed operation leaves the in-memory map as the disk has it.
 */
import { EsxError } from '@esxemu/shared';
import type { Allocator } from './allocator.js';
import type { BlockDevice } from './block-device.js';
import type { Geometry } from './format.js';
import { decodeInode, decodePointers, DIRECT_POINTERS, encodeInode, encodePointers, INDIRECT_POINTERS, pointersPerSector, type Inode } from './inode.js';
import type { Transaction } from './journal.js';

export async function readInode(dev: BlockDevice, geo: Geometry, ino: number): Promise<Inode> {
  if (!Number.isInteger(ino) || ino < 0 || ino >= geo.sb.maxFiles) throw new EsxError('CORRUPT', `inode number ${ino} out of range`);
  const lba = geo.inode(ino);
  return decodeInode(await dev.read(lba, 1), ino, lba, geo.sb.dataBlocks);
}

function cloneInode(n: Inode): Inode {
  return { ...n, indirect: [...n.indirect], direct: [...n.direct] };
}

/** Where a file block's pointer lives. */
interface Where {
  direct: number | null;
  k: number;
  sector: number;
  slot: number;
}

export class FileMap {
  inode: Inode;
  protected readonly dev: BlockDevice;
  protected readonly geo: Geometry;
  private readonly cache = new Map<number, Uint32Array>();
  readonly pps: number;
  /** Pointers per pointer block. */
  readonly ppb: number;

  constructor(dev: BlockDevice, geo: Geometry, inode: Inode) {
    this.dev = dev;
    this.geo = geo;
    this.inode = inode;
    this.pps = pointersPerSector(geo.S);
    this.ppb = this.pps * geo.spb;
  }

  static async load(dev: BlockDevice, geo: Geometry, ino: number): Promise<FileMap> {
    return new FileMap(dev, geo, await readInode(dev, geo, ino));
  }

  get maxBlocks(): number {
    return DIRECT_POINTERS + INDIRECT_POINTERS * this.ppb;
  }

  where(fb: number): Where {
    if (fb < DIRECT_POINTERS) return { direct: fb, k: -1, sector: -1, slot: -1 };
    const rel = fb - DIRECT_POINTERS;
    const k = Math.floor(rel / this.ppb);
    if (k >= INDIRECT_POINTERS) throw new EsxError('INVALID_ARGUMENT', `file block ${fb} is past the largest file (${this.maxBlocks} blocks)`);
    const within = rel % this.ppb;
    return { direct: null, k, sector: Math.floor(within / this.pps), slot: within % this.pps };
  }

  protected async pointerSector(inode: Inode, k: number, sector: number): Promise<{ lba: number; ptrs: Uint32Array }> {
    const lba = this.geo.blockLba(inode.indirect[k]! - 1) + sector;
    let p = this.cache.get(lba);
    if (!p) {
      p = decodePointers(await this.dev.read(lba, 1), inode.ino, inode.gen, lba, this.geo.sb.dataBlocks);
      this.cache.set(lba, p);
    }
    return { lba, ptrs: p };
  }

  /** Block pointer (block + 1, 0 = hole) of file block fb. */
  async get(fb: number, inode: Inode = this.inode): Promise<number> {
    const w = this.where(fb);
    if (w.direct !== null) return inode.direct[w.direct]!;
    if (!inode.indirect[w.k]) return 0;
    return (await this.pointerSector(inode, w.k, w.sector)).ptrs[w.slot]!;
  }

  /** Every allocated data block and pointer block, for freeing or checking. */
  async allBlocks(): Promise<{ data: Map<number, number>; pointerBlocks: number[] }> {
    const data = new Map<number, number>();
    this.inode.direct.forEach((p, i) => p && data.set(i, p - 1));
    const pointerBlocks: number[] = [];
    for (let k = 0; k < INDIRECT_POINTERS; k++) {
      if (!this.inode.indirect[k]) continue;
      pointerBlocks.push(this.inode.indirect[k]! - 1);
      const base = this.geo.blockLba(this.inode.indirect[k]! - 1);
      const raw = await this.dev.read(base, this.geo.spb);
      for (let s = 0; s < this.geo.spb; s++) {
        const ptrs = decodePointers(raw.subarray(s * this.geo.S, (s + 1) * this.geo.S), this.inode.ino, this.inode.gen, base + s, this.geo.sb.dataBlocks);
        ptrs.forEach((p, i) => p && data.set(DIRECT_POINTERS + k * this.ppb + s * this.pps + i, p - 1));
      }
    }
    return { data, pointerBlocks };
  }

  draft(): MapDraft {
    return new MapDraft(this, cloneInode(this.inode));
  }

  /** Take a committed draft's state. */
  adopt(d: MapDraft): void {
    this.inode = d.inode;
    for (const [lba, p] of d.staged) this.cache.set(lba, p);
  }

  /** Forget cached pointer sectors (after a failed operation). */
  invalidate(): void {
    this.cache.clear();
  }

  /** @internal for MapDraft */
  readPointerSector(inode: Inode, k: number, sector: number): Promise<{ lba: number; ptrs: Uint32Array }> {
    return this.pointerSector(inode, k, sector);
  }
}

export class MapDraft {
  readonly map: FileMap;
  readonly inode: Inode;
  readonly staged = new Map<number, Uint32Array>();

  constructor(map: FileMap, inode: Inode) {
    this.map = map;
    this.inode = inode;
  }

  async get(fb: number): Promise<number> {
    const w = this.map.where(fb);
    if (w.direct !== null) return this.inode.direct[w.direct]!;
    if (!this.inode.indirect[w.k]) return 0;
    const { lba, ptrs } = await this.sector(w);
    return (this.staged.get(lba) ?? ptrs)[w.slot]!;
  }

  private async sector(w: Where): Promise<{ lba: number; ptrs: Uint32Array }> {
    return this.map.readPointerSector(this.inode, w.k, w.sector);
  }

  /** Pointer blocks (indirect slots) these file blocks need and do not have yet. */
  missingPointerBlocks(fbs: number[]): number[] {
    const ks = new Set<number>();
    for (const fb of fbs) {
      const w = this.map.where(fb);
      if (w.direct === null && !this.inode.indirect[w.k]) ks.add(w.k);
    }
    return [...ks].sort((a, b) => a - b);
  }

  /** Set file block fb to `ptr` (block + 1, or 0 to punch). Its pointer block must exist. */
  async set(fb: number, ptr: number): Promise<void> {
    const w = this.map.where(fb);
    if (w.direct !== null) {
      this.inode.direct[w.direct] = ptr;
      return;
    }
    if (!this.inode.indirect[w.k]) throw new EsxError('INTERNAL', `file block ${fb} has no pointer block`);
    const { lba, ptrs } = await this.sector(w);
    let s = this.staged.get(lba);
    if (!s) this.staged.set(lba, (s = Uint32Array.from(ptrs)));
    s[w.slot] = ptr;
  }

  /** Put the inode and every staged pointer sector into the transaction. */
  stage(tx: Transaction, geo: Geometry): void {
    tx.put(geo.inode(this.inode.ino), encodeInode(this.inode, geo.S));
    for (const [lba, p] of this.staged) tx.put(lba, encodePointers(this.inode.ino, this.inode.gen, p, geo.S));
  }

  /**
   * Allocate blocks for `fbs` (and the pointer blocks they need) into `tx`; new pointer blocks
   * are zeroed on disk first (`zero`). Returns file block -> datastore block.
   */
  async allocate(fbs: number[], alloc: Allocator, tx: Transaction, zero: (blocks: number[]) => Promise<void>): Promise<Map<number, number>> {
    const ks = this.missingPointerBlocks(fbs);
    const blocks = await alloc.allocate(ks.length + fbs.length, tx);
    const pbs = blocks.slice(0, ks.length);
    if (pbs.length) await zero(pbs);
    ks.forEach((k, i) => (this.inode.indirect[k] = pbs[i]! + 1));
    const out = new Map<number, number>();
    for (let i = 0; i < fbs.length; i++) {
      const b = blocks[ks.length + i]!;
      await this.set(fbs[i]!, b + 1);
      out.set(fbs[i]!, b);
    }
    return out;
  }
}
