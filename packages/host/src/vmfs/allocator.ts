/**
 * File block allocation over resource clusters.
 *
 * The bitmap is cut into clusters (format.ts), each one sector with its own lock record. To
 * allocate, a host starts at the cluster its host id maps to and, for each cluster with free
 * blocks (read without a lock as a hint), takes the cluster lock (short-lived, waited for a
 * bounded time), re-reads the sector under the lock and takes the lowest free bits. Hosts
 * start in different clusters, so they rarely wait for each other (VMFS resource clusters).
 *
 * Nothing is written here: the modified bitmap sectors go into the caller's transaction, and
 * the cluster locks are added to it, to be released only after it commits (journal.ts).
 * Freeing takes the locks of the clusters involved in ascending order (no lock-order cycles).
 */
import { EsxError } from '@esxemu/shared';
import type { BlockDevice } from './block-device.js';
import type { Geometry } from './format.js';
import type { Transaction } from './journal.js';
import type { Locks } from './locks.js';
import { bitmapGet, bitmapSet, decodeBitmap, encodeBitmap, type BitmapSector } from './records.js';

export class Allocator {
  private readonly dev: BlockDevice;
  private readonly geo: Geometry;
  private readonly locks: Locks;
  private readonly home: number;
  private readonly recover: (hostId: number) => Promise<void>;
  private readonly lockWaitMs: number;
  private readonly staged = new WeakMap<Transaction, Map<number, BitmapSector>>();

  constructor(dev: BlockDevice, geo: Geometry, locks: Locks, hostId: number, lockWaitMs: number, recover: (hostId: number) => Promise<void>) {
    this.dev = dev;
    this.geo = geo;
    this.locks = locks;
    this.lockWaitMs = lockWaitMs;
    this.recover = recover;
    const c = geo.sb.clusters;
    this.home = Math.floor(((hostId - 1) * c) / geo.sb.maxHosts) % c;
  }

  async readCluster(c: number): Promise<BitmapSector> {
    const lba = this.geo.bitmap(c);
    return decodeBitmap(await this.dev.read(lba, 1), c, this.geo.clusterBlocks(c), lba);
  }

  /** The cluster's bitmap as this transaction sees it, locking it on first use. */
  private async cluster(tx: Transaction, c: number): Promise<BitmapSector> {
    let m = this.staged.get(tx);
    if (!m) this.staged.set(tx, (m = new Map()));
    const have = m.get(c);
    if (have) return have;
    tx.locks.push(await this.locks.acquireWait(this.geo.clusterLock(c), 'exclusive', `resource cluster ${c}`, this.lockWaitMs, this.recover));
    const s = await this.readCluster(c);
    m.set(c, s);
    return s;
  }

  /** Allocate `n` blocks into `tx`; NO_SPACE when the datastore cannot supply them. */
  async allocate(n: number, tx: Transaction): Promise<number[]> {
    const out: number[] = [];
    const C = this.geo.sb.clusters;
    const bpc = this.geo.sb.blocksPerCluster;
    const all = await this.dev.read(this.geo.sb.bitmapStart, C);
    for (let i = 0; i < C && out.length < n; i++) {
      const c = (this.home + i) % C;
      const staged = this.staged.get(tx)?.get(c);
      const hintFree = staged ? staged.free : all.readUInt32LE((c * this.geo.S) + 12);
      if (hintFree === 0) continue;
      const s = await this.cluster(tx, c);
      for (let b = 0; b < this.geo.clusterBlocks(c) && out.length < n && s.free > 0; b++) {
        if (bitmapGet(s, b)) continue;
        bitmapSet(s, b, true);
        out.push(c * bpc + b);
      }
      tx.put(this.geo.bitmap(c), encodeBitmap(s));
    }
    if (out.length < n) throw new EsxError('NO_SPACE', `the datastore is full: ${n} blocks of ${this.geo.sb.fileBlockSize} bytes requested, ${out.length} free`, { requested: n, available: out.length });
    return out;
  }

  /** Mark blocks free in `tx`. */
  async free(blocks: number[], tx: Transaction): Promise<void> {
    const bpc = this.geo.sb.blocksPerCluster;
    const sorted = [...blocks].sort((a, b) => a - b);
    for (const b of sorted) {
      const c = Math.floor(b / bpc);
      const s = await this.cluster(tx, c);
      if (!bitmapGet(s, b % bpc)) throw new EsxError('CORRUPT', `freeing block ${b}, which the bitmap says is free`);
      bitmapSet(s, b % bpc, false);
      tx.put(this.geo.bitmap(c), encodeBitmap(s));
    }
  }

  /** Free and capacity, from the free counts of every cluster (one read). */
}

export interface DiskFree {
  label: string;
  uuid: string;
  capacityBytes: number;
  freeBytes: number;
  usedBytes: number;
  fileBlockSize: number;
}

/** Capacity and free space, from one read of the bitmap (no lock: a snapshot). */
export async function diskFree(dev: BlockDevice, geo: Geometry): Promise<DiskFree> {
  const { sb, S } = geo;
  const all = await dev.read(sb.bitmapStart, sb.clusters);
  let free = 0;
  for (let c = 0; c < sb.clusters; c++) free += decodeBitmap(all.subarray(c * S, (c + 1) * S), c, geo.clusterBlocks(c), geo.bitmap(c)).free;
  const B = sb.fileBlockSize;
  return { label: sb.label, uuid: sb.uuid, capacityBytes: sb.dataBlocks * B, freeBytes: free * B, usedBytes: (sb.dataBlocks - free) * B, fileBlockSize: B };
}
