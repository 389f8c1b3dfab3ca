/**
 * The observer: a read-only view of a VMFS datastore for tools that must not disturb a live
 * cluster (`esxemu datastore ls|browse|cat`, `vmkfstools locks`).
 *
 *   const obs = await observe(dev, { windowMs: 2000 });
 *   await obs.readdir('vm1');  await obs.stat('vm1/vm1-flat.vmdk');  await obs.df();
 *   await obs.lockInfo('vm1/vm1.vswp');   // holders with their liveness
 *   await obs.hosts();                    // every heartbeat slot ever used
 *
 * It takes no heartbeat slot and no lock, and writes nothing: the LUN is seen through a
 * ReadOnlyDevice (block-device.ts) that refuses every write, flush, COMPARE AND WRITE and
 * RESERVE before it reaches the target. Hosts cannot see it at all.
 *
 * Liveness without a slot of its own: the observer reads the heartbeat region when it starts
 * and again whenever it is asked, remembering, on its own clock, when it last saw each slot
 * change. A mounted slot that changed within the last `windowMs` is *alive*; one that did not
 * change though watched for `windowMs` is *stale* (its host is dead, frozen, or beats slower
 * than the window: the window should span two heartbeats, 2 s for the default 1 s beat);
 * a slot not watched that long yet is *unknown*; a slot whose mount is over (unmounted, or
 * reclaimed by recovery) is *ended*. Calls that report liveness wait, by default, until the
 * first read is `windowMs` old, so one window is paid once per observer. The observer never
 * judges a host dead for the file system: only a mounted host breaks locks, after a lease.
 *
 * Consistency: every lookup reads the LUN fresh and without locks (lookup.ts), so it sees each
 * record as it is at that moment. readFile re-reads the inode after the data and tries again
 * (bounded) when the file changed size, generation or mtime meanwhile; data overwritten in
 * place (no metadata change) can still be read half old, half new, as with any lock-free read.
 */
import { EsxError, sleep } from '@esxemu/shared';
import { diskFree, type DiskFree } from './allocator.js';
import { ReadOnlyDevice, type BlockDevice } from './block-device.js';
import { splitPath } from './codec.js';
import { systemClock, type Clock } from './clock.js';
import { readInode } from './filemap.js';
import { decodeSuperblock, Geometry, SB_STATE, type Superblock } from './format.js';
import { FILE_TYPE } from './inode.js';
import { listDir, statPath, walk, type DirEntry, type FileStat } from './lookup.js';
import { decodeLock, HB_STATE, LOCK_MODE_NAMES, type LockMode } from './records.js';
import { readSlots } from './slots.js';

export const DEFAULT_OBSERVE_WINDOW_MS = 2000;
/** readFile refuses larger files (PAYLOAD_TOO_LARGE) unless given a larger maxBytes. */
export const DEFAULT_OBSERVED_READ_BYTES = 16 * 1024 * 1024;
export const OBSERVED_READ_ATTEMPTS = 5;

export interface ObserveOptions {
  /** How long a mounted slot must stay unchanged to be stale (default 2000 ms). */
  windowMs?: number;
  clock?: Clock;
}

export type ObservedLiveness = 'alive' | 'stale' | 'ended' | 'unknown';

export interface ObservedHost {
  hostId: number;
  name: string;
  state: 'mounted' | 'free' | 'reclaimed';
  liveness: ObservedLiveness;
  incarnation: number;
  counter: number;
  /** Heartbeats seen since the observer started (counter advance). */
  beatsSeen: number;
  /** The host's wall clock at its last beat (informational: liveness never compares clocks). */
  lastBeatWallMs: number;
  /** How long the observer has watched this slot. */
  watchedMs: number;
}

export interface ObservedLockHolder {
  hostId: number;
  hostName: string;
  incarnation: number;
  liveness: ObservedLiveness;
}

export interface ObservedLockInfo {
  path: string;
  mode: LockMode | 'free';
  gen: number;
  holders: ObservedLockHolder[];
}

interface Watch {
  state: number;
  name: string;
  incarnation: number;
  counter: number;
  wallMs: number;
  image: Buffer;
  firstAt: number;
  firstCounter: number;
  changedAt: number | null;
}

const STATE_NAMES: Record<number, ObservedHost['state']> = { [HB_STATE.FREE]: 'free', [HB_STATE.MOUNTED]: 'mounted', [HB_STATE.RECLAIMED]: 'reclaimed' };

/** Read the superblock and the heartbeat region once; NOT_FORMATTED etc. as mount. */
export async function observe(dev: BlockDevice, o: ObserveOptions = {}): Promise<VmfsObserver> {
  const windowMs = o.windowMs ?? DEFAULT_OBSERVE_WINDOW_MS;
  if (!Number.isFinite(windowMs) || windowMs < 0) throw new EsxError('INVALID_ARGUMENT', `windowMs must be >= 0, got ${windowMs}`);
  const ro = new ReadOnlyDevice(dev);
  const sb = decodeSuperblock(await ro.read(0, 1), ro);
  if (sb.state === SB_STATE.FORMATTING) throw new EsxError('INVALID_STATE', `the datastore is being formatted by host ${sb.formattingHost}`, { reason: 'FORMATTING', hostId: sb.formattingHost });
  const obs = new VmfsObserver(ro, sb, windowMs, o.clock ?? systemClock);
  await obs.refresh();
  return obs;
}

export class VmfsObserver {
  readonly superblock: Superblock;
  readonly windowMs: number;
  private readonly dev: BlockDevice;
  private readonly geo: Geometry;
  private readonly clock: Clock;
  private readonly seen = new Map<number, Watch>();
  private startedAt: number;

  /** @internal use observe() */
  constructor(dev: BlockDevice, sb: Superblock, windowMs: number, clock: Clock) {
    this.dev = dev;
    this.superblock = sb;
    this.geo = new Geometry(sb);
    this.windowMs = windowMs;
    this.clock = clock;
    this.startedAt = clock.now();
  }

  /** Read the heartbeat region and note which slots changed. */
  async refresh(): Promise<void> {
    const now = this.clock.now();
    for (const v of await readSlots(this.dev, this.superblock)) {
      if (!v.slot) continue; // a corrupt slot: fsck reports it
      const prev = this.seen.get(v.hostId);
      if (prev && prev.image.equals(v.image)) continue;
      const s = v.slot;
      this.seen.set(v.hostId, { state: s.state, name: s.name, incarnation: s.incarnation, counter: s.counter, wallMs: s.wallMs, image: v.image, firstAt: prev?.firstAt ?? now, firstCounter: prev?.firstCounter ?? s.counter, changedAt: prev ? now : null });
    }
  }

  /**
   * Refresh; with `wait`, first let the observation window pass since the observer started
   * (not needed when no slot is mounted: an unmounted slot is ended whatever it does next).
   */
  private async settle(wait: boolean): Promise<void> {
    const left = this.startedAt + this.windowMs - this.clock.now();
    const anyMounted = [...this.seen.values()].some((w) => w.state === HB_STATE.MOUNTED);
    if (wait && anyMounted && left > 0) await sleep(left);
    await this.refresh();
  }

  private motion(w: Watch): ObservedLiveness {
    const now = this.clock.now();
    if (w.changedAt !== null && now - w.changedAt <= this.windowMs) return 'alive';
    return now - w.firstAt < this.windowMs ? 'unknown' : 'stale';
  }

  private slotLiveness(w: Watch): ObservedLiveness {
    return w.state === HB_STATE.MOUNTED ? this.motion(w) : 'ended';
  }

  /** Every slot that was ever mounted, with its liveness (waits for the window unless wait false). */
  async hosts(o: { wait?: boolean } = {}): Promise<ObservedHost[]> {
    await this.settle(o.wait ?? true);
    const now = this.clock.now();
    const out: ObservedHost[] = [];
    for (const [hostId, w] of [...this.seen].sort((a, b) => a[0] - b[0])) {
      if (w.incarnation === 0 && w.state !== HB_STATE.MOUNTED) continue;
      out.push({ hostId, name: w.name, state: STATE_NAMES[w.state]!, liveness: this.slotLiveness(w), incarnation: w.incarnation, counter: w.counter, beatsSeen: w.counter - w.firstCounter, lastBeatWallMs: w.wallMs, watchedMs: now - w.firstAt });
    }
    return out;
  }

  readdir(path = '/'): Promise<DirEntry[]> {
    return listDir(this.dev, this.geo, path);
  }

  stat(path: string): Promise<FileStat> {
    return statPath(this.dev, this.geo, path);
  }

  async exists(path: string): Promise<boolean> {
    try {
      await walk(this.dev, this.geo, splitPath(path));
      return true;
    } catch (err) {
      if (err instanceof EsxError && err.code === 'NOT_FOUND') return false;
      throw err;
    }
  }

  /**
   * A whole file, read without a lock (see the module comment); PAYLOAD_TOO_LARGE past
   * `maxBytes`, INVALID_STATE (reason BUSY) when it kept changing over every attempt.
   */
  async readFile(path: string, o: { maxBytes?: number } = {}): Promise<Buffer> {
    const maxBytes = o.maxBytes ?? DEFAULT_OBSERVED_READ_BYTES;
    const parts = splitPath(path);
    const B = this.superblock.fileBlockSize;
    const S = this.geo.S;
    for (let attempt = 0; attempt < OBSERVED_READ_ATTEMPTS; attempt++) {
      const map = await walk(this.dev, this.geo, parts);
      const n = map.inode;
      if (n.type !== FILE_TYPE.FILE) throw new EsxError('INVALID_ARGUMENT', `'${path}' is a directory`);
      if (n.size > maxBytes) throw new EsxError('PAYLOAD_TOO_LARGE', `'${path}' holds ${n.size} bytes, more than ${maxBytes} read at once`, { size: n.size, maxBytes });
      const out = Buffer.alloc(n.size);
      for (let fb = 0; fb * B < n.size; fb++) {
        const ptr = await map.get(fb);
        if (!ptr) continue; // a hole reads as zeros
        const bytes = Math.min(B, n.size - fb * B);
        (await this.dev.read(this.geo.blockLba(ptr - 1), Math.ceil(bytes / S))).copy(out, fb * B, 0, bytes);
      }
      const again = await readInode(this.dev, this.geo, n.ino);
      if (again.type === n.type && again.gen === n.gen && again.size === n.size && again.mtimeMs === n.mtimeMs) return out;
    }
    throw new EsxError('INVALID_STATE', `'${path}' kept changing while it was read (${OBSERVED_READ_ATTEMPTS} attempts)`, { reason: 'BUSY', path });
  }

  /** The lock of a file or directory and its holders (vmkfstools -D). */
  async lockInfo(path: string, o: { wait?: boolean } = {}): Promise<ObservedLockInfo> {
    const parts = splitPath(path);
    const map = await walk(this.dev, this.geo, parts);
    const lba = this.geo.inodeLock(map.inode.ino);
    const r = decodeLock(await this.dev.read(lba, 1), this.geo.lockIndexOf(lba), lba);
    if (r.holders.length) await this.settle(o.wait ?? true);
    const holders = r.holders.map((h): ObservedLockHolder => {
      const w = this.seen.get(h.hostId);
      let liveness: ObservedLiveness;
      if (!w) liveness = h.hostId >= 1 && h.hostId <= this.superblock.maxHosts ? 'unknown' : 'ended';
      else if (h.incarnation < w.incarnation) liveness = 'ended';
      else if (h.incarnation > w.incarnation) liveness = this.motion(w); // a host mounting right now
      else liveness = this.slotLiveness(w);
      return { hostId: h.hostId, hostName: w?.name ?? '', incarnation: h.incarnation, liveness };
    });
    return { path: '/' + parts.join('/'), mode: LOCK_MODE_NAMES[r.mode] ?? 'free', gen: r.gen, holders };
  }

  df(): Promise<DiskFree> {
    return diskFree(this.dev, this.geo);
  }
}
