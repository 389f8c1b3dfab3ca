/**
 * A mounted VMFS datastore: one host's view of the shared file system.
 *
 *   const fs = await mount(dev, { hostId: 2, hostName: 'esx02' });
 *   await fs.mkdir('vm1');
 *   await fs.writeFile('vm1/vm1.vmx', Buffer.from('...'));
 *   const disk = await fs.open('vm1/vm1-flat.vmdk', 'exclusive', { create: true });
 *   await disk.write(0, data); await disk.flush(); await disk.close();
 *   await fs.unmount();
 *
 * Mount: read the superblock (NOT_FORMATTED, FORMAT_UNSUPPORTED, CORRUPT, INVALID_STATE while
 * another host formats), make sure our host id is not used by a live host (a slot left
 * "mounted" by our previous incarnation is watched for a lease), take our journal lock, replay
 * our journal (a crash of our previous incarnation), claim our heartbeat slot with a new
 * incarnation, start beating. With hostId 'auto' the slot is chosen by host name and claimed
 * first (slots.ts: the same host restarting gets its slot back, others the first free one).
 *
 * Concurrency inside a host: every metadata operation (namespace changes, allocations, size
 * changes, lock changes) runs on one FIFO mutex, so the host never races itself for an on-disk
 * lock; reads and writes of allocated file blocks run freely. Between hosts, on-disk locks
 * (locks.ts) serialise: the parent directory's lock for namespace changes, the file's lock for
 * its inode, a resource cluster's lock for its bitmap sector; every change is one journaled
 * transaction (journal.ts) committed before the locks it needs are released.
 *
 * Nothing of another host's metadata is cached: lookups read the LUN. An open file caches its
 * own inode and block map, which the file lock keeps stable.
 *
 * Heartbeat ticks (every heartbeatMs): beat, observe every slot, verify every open file's lock
 * (a broken lock marks the file lost: LOCK_LOST on each later operation). Fencing (heartbeat.ts)
 * marks every open file lost and makes every operation fail with LOCK_LOST until remount.
 */
import { EsxError, silentLogger, sleep, type Logger } from '@esxemu/shared';
import { Allocator, diskFree, type DiskFree } from './allocator.js';
import { atomicStats, type AtomicStats } from './atomic.js';
import { Mutex, type BlockDevice } from './block-device.js';
import { splitPath } from './codec.js';
import { systemClock, type Clock } from './clock.js';
import { Directory } from './directory.js';
import { FileMap, readInode } from './filemap.js';
import { decodeSuperblock, Geometry, SB_STATE, type Superblock } from './format.js';
import { FencedDevice, Heartbeat, heartbeatSettings, type HeartbeatSettings, type HostHeartbeat } from './heartbeat.js';
import { DIRECT_POINTERS, encodeInode, FILE_TYPE, freeInode, ROOT_INO, type Inode } from './inode.js';
import { BLOCKS_PER_TX, Journal, maxTxSectors, Transaction } from './journal.js';
import { Locks, NeedsRecovery, type HeldLock } from './locks.js';
import { HB_STATE, LOCK_MODE_NAMES, type LockMode } from './records.js';
import { recoverHost } from './recovery.js';
import { zeroSectors } from './mkfs.js';
import { VmfsFile } from './file.js';
import { checkHostName, chooseSlot, maxClaimRounds, readSlots, slotsFullError } from './slots.js';
import { listDir, statPath, walk, type DirEntry, type FileStat } from './lookup.js';

export type { DirEntry, FileStat } from './lookup.js';
export type { DiskFree } from './allocator.js';

export interface MountOptions extends Partial<HeartbeatSettings> {
  /**
   * 1..maxHosts of the file system, unique per host; or 'auto': the slot is chosen on the
   * datastore by hostName (slots.ts), which is how the hosts of a cluster get their id.
   */
  hostId: number | 'auto';
  /** Shown to other hosts (lock owners, liveness); required with hostId 'auto' (1..64 bytes). */
  hostName?: string;
  clock?: Clock;
  /** Beat on a timer (default true); false = the caller calls heartbeatTick() (tests). */
  autoHeartbeat?: boolean;
  /** How long short metadata locks (directories, clusters) are waited for (default 10 s). */
  lockWaitMs?: number;
  logger?: Logger;
}

export interface LockOwner {
  hostId: number;
  hostName: string;
  incarnation: number;
  liveness: 'alive' | 'dead' | 'ended';
}

export interface LockInfo {
  path: string;
  mode: LockMode | 'free';
  gen: number;
  holders: LockOwner[];
}

export interface OpenOptions {
  /** Create the file when missing (exclusive mode only). */
  create?: boolean;
}

export async function mount(dev: BlockDevice, o: MountOptions): Promise<Vmfs> {
  const sb = decodeSuperblock(await dev.read(0, 1), dev);
  if (sb.state === SB_STATE.FORMATTING) throw new EsxError('INVALID_STATE', `the datastore is being formatted by host ${sb.formattingHost}`, { reason: 'FORMATTING', hostId: sb.formattingHost });
  if (o.hostId === 'auto') return mountAuto(dev, sb, o, checkHostName(o.hostName));
  if (!Number.isInteger(o.hostId) || o.hostId < 1 || o.hostId > sb.maxHosts) throw new EsxError('INVALID_ARGUMENT', `hostId must be 1..${sb.maxHosts} on this datastore, or 'auto'`);
  const fs = new Vmfs(dev, sb, o.hostId, o);
  await fs.start();
  return fs;
}

/** hostId 'auto': choose a slot by name (slots.ts), claim it, mount on it; bounded rounds. */
async function mountAuto(dev: BlockDevice, sb: Superblock, o: MountOptions, hostName: string): Promise<Vmfs> {
  const skip = new Set<number>();
  for (let round = 0; round < maxClaimRounds(sb); round++) {
    const choice = chooseSlot(await readSlots(dev, sb), hostName, skip);
    if (choice.kind === 'full') throw slotsFullError(sb, choice, skip.size);
    const fs = new Vmfs(dev, sb, choice.hostId, o);
    try {
      if (choice.kind === 'resume') await fs.start();
      else await fs.startClaimed(choice.image);
      return fs;
    } catch (err) {
      const reason = err instanceof EsxError && err.code === 'INVALID_STATE' ? err.details?.['reason'] : undefined;
      if (reason === 'HOST_ID_IN_USE') skip.add(choice.hostId);
      else if (reason !== 'SLOT_TAKEN') throw err;
    }
  }
  throw new EsxError('INSUFFICIENT_RESOURCES', `no heartbeat slot of datastore '${sb.label}' could be claimed in ${maxClaimRounds(sb)} rounds: other hosts kept taking them`);
}

export class Vmfs {
  readonly hostId: number;
  readonly hostName: string;
  readonly superblock: Superblock;
  /** @internal */ readonly geo: Geometry;
  /** @internal */ readonly dev: BlockDevice;
  /** @internal */ readonly hb: Heartbeat;
  /** @internal */ readonly locks: Locks;
  /** @internal */ readonly alloc: Allocator;
  /** @internal */ readonly journal: Journal;
  /** @internal */ readonly meta = new Mutex();
  /** @internal */ readonly lockWaitMs: number;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly autoHeartbeat: boolean;
  private readonly files = new Set<VmfsFile>();
  private journalLock: HeldLock | null = null;
  private timer: NodeJS.Timeout | null = null;
  private state: 'mounting' | 'mounted' | 'unmounted' = 'mounting';
  private ticking: Promise<void> | null = null;

  /** @internal use mount() */
  constructor(raw: BlockDevice, sb: Superblock, hostId: number, o: MountOptions) {
    this.hostId = hostId;
    this.hostName = o.hostName ?? `host-${hostId}`;
    this.superblock = sb;
    this.geo = new Geometry(sb);
    this.clock = o.clock ?? systemClock;
    this.log = (o.logger ?? silentLogger()).child({ component: 'vmfs', datastore: sb.label, hostId });
    this.autoHeartbeat = o.autoHeartbeat ?? true;
    this.lockWaitMs = o.lockWaitMs ?? 10_000;
    const settings = heartbeatSettings(o);
    this.dev = new FencedDevice(raw, () => this.hb);
    this.hb = new Heartbeat(this.dev, this.geo, this.hostId, this.clock, settings);
    this.locks = new Locks(this.dev, this.geo, this.hb);
    this.journal = new Journal(this.dev, this.geo, this.hostId);
    this.alloc = new Allocator(this.dev, this.geo, this.locks, this.hostId, this.lockWaitMs, (id) => this.recover(id));
  }

  get settings(): HeartbeatSettings {
    return this.hb.settings;
  }

  /** @internal */
  async start(): Promise<void> {
    const { leaseMs, heartbeatMs } = this.hb.settings;
    let { slot, image } = await this.hb.readSlot(this.hostId);
    if (slot.state === HB_STATE.MOUNTED) {
      // Our previous incarnation crashed, or another live host uses our id: watch for a lease.
      this.log.info({ incarnation: slot.incarnation }, 'vmfs: our heartbeat slot is marked mounted; watching it for a lease');
      const t0 = this.clock.now();
      const r0 = Date.now();
      while (this.clock.now() - t0 <= leaseMs + heartbeatMs && Date.now() - r0 <= leaseMs + heartbeatMs) {
        await sleep(Math.max(10, heartbeatMs / 2));
        const again = await this.hb.readSlot(this.hostId);
        if (!again.image.equals(image)) throw new EsxError('INVALID_STATE', `host id ${this.hostId} is in use by another live host (its heartbeat moves)`, { reason: 'HOST_ID_IN_USE', hostId: this.hostId });
      }
    }
    this.hb.prepare(slot.incarnation + 1);
    await this.takeJournal(false, async () => {
      ({ slot, image } = await this.hb.readSlot(this.hostId));
      await this.hb.claim(this.hostName, image);
    });
    this.mounted();
  }

  /**
   * @internal hostId 'auto' on a slot that is not mounted (slots.ts): claim the slot first,
   * atomically against `image` (INVALID_STATE reason SLOT_TAKEN when another host was faster),
   * then take our journal lock and replay (an empty journal: the previous mount there ended
   * cleanly or was recovered), beating meanwhile. A failure after the claim frees the slot.
   */
  async startClaimed(image: Buffer): Promise<void> {
    await this.hb.claim(this.hostName, image, { exact: true });
    try {
      await this.takeJournal(true, async () => undefined);
    } catch (err) {
      await this.hb.release().catch(() => undefined);
      throw err;
    }
    this.mounted();
  }

  /** Take our journal lock (waiting, bounded, for a host recovering us), replay, then `then`. */
  private async takeJournal(beat: boolean, then: () => Promise<void>): Promise<void> {
    const jl = this.geo.journalLock(this.hostId);
    const deadline = Date.now() + this.lockWaitMs;
    for (;;) {
      try {
        this.journalLock = await this.locks.acquire(jl, 'exclusive', `journal of host ${this.hostId}`);
        break;
      } catch (err) {
        // Another host is recovering our previous incarnation: wait for it (bounded).
        if (!(err instanceof EsxError) || err.code !== 'FILE_LOCKED' || Date.now() >= deadline) throw err;
        await sleep(20);
        if (beat) await this.hb.beat();
      }
    }
    try {
      const { replayed, problem } = await this.journal.replay(this.hostId);
      if (replayed || problem) this.log.warn({ replayed, problem }, 'vmfs: replayed our journal from a previous crash');
      await then();
      await this.hb.observeAll();
    } catch (err) {
      await this.locks.release(this.journalLock).catch(() => undefined);
      throw err;
    }
  }

  private mounted(): void {
    this.state = 'mounted';
    if (this.autoHeartbeat) this.schedule();
    this.log.info({ incarnation: this.hb.incarnation }, 'vmfs: mounted');
  }

  private schedule(): void {
    if (this.state !== 'mounted' || this.hb.fenced) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.ticking = this.heartbeatTick().catch((err: Error) => this.log.warn({ err: err.message }, 'vmfs: heartbeat tick failed'));
      void this.ticking.finally(() => this.schedule());
    }, this.hb.settings.heartbeatMs);
    this.timer.unref();
  }

  /**
   * One heartbeat tick: beat our slot, observe every slot, verify the locks of open files.
   * Runs on a timer unless mounted with autoHeartbeat false.
   */
  async heartbeatTick(): Promise<void> {
    if (this.state !== 'mounted') return;
    try {
      await this.hb.beat();
      await this.hb.observeAll();
    } finally {
      if (this.hb.fenced) for (const f of this.files) f.markLost(this.hb.fenced);
    }
    for (const f of [...this.files]) {
      if (f.lostReason) continue;
      if (!(await this.locks.verify(f.lock))) f.markLost(`its lock was broken by another host`);
    }
  }

  /** Hosts seen on this datastore (from the last observation), with their liveness. */
  liveHosts(): HostHeartbeat[] {
    return this.hb.all().filter((h) => h.liveness === 'alive');
  }

  hosts(): HostHeartbeat[] {
    return this.hb.all();
  }

  heartbeatOf(hostId: number): HostHeartbeat | null {
    return this.hb.liveness(hostId);
  }

  /** Why this mount lost its access (null while healthy). */
  get fenced(): string | null {
    return this.hb.fenced;
  }

  /** Which lock path the device took (ATS vs reservations), for tests and benchmarks. */
  atomicStats(): AtomicStats {
    return { ...atomicStats(this.dev) };
  }

  // ---- plumbing --------------------------------------------------------------------------------

  private usable(): void {
    if (this.state !== 'mounted') throw new EsxError('INVALID_STATE', `datastore ${this.superblock.label} is not mounted on host ${this.hostId}`);
    this.hb.checkFence();
  }

  /** @internal Run a metadata operation on the host's metadata mutex. */
  async op<T>(fn: () => Promise<T>): Promise<T> {
    this.usable();
    return this.meta.run(async () => {
      this.usable();
      return fn();
    });
  }

  /**
   * Recover every host whose heartbeat we have seen stale past the lease: replay its journal,
   * reclaim its slot, so that its locks become breakable (HA uses this after a host failure).
   * Returns the host ids reclaimed by this call.
   */
  async recoverDeadHosts(): Promise<number[]> {
    return this.op(async () => {
      await this.hb.observeAll();
      const out: number[] = [];
      for (const h of this.hb.all()) {
        if (h.hostId === this.hostId || h.liveness !== 'dead') continue;
        if (await recoverHost(this.recoveryContext(), h.hostId)) out.push(h.hostId);
      }
      return out;
    });
  }

  private recoveryContext(): Parameters<typeof recoverHost>[0] {
    return { dev: this.dev, geo: this.geo, hb: this.hb, locks: this.locks, journal: this.journal, lockWaitMs: this.lockWaitMs, onRecovered: (id, replayed) => this.log.warn({ recovered: id, replayed }, 'vmfs: recovered a dead host') };
  }

  /** @internal Recover a dead host (its journal, its slot) so its locks can be dropped. */
  async recover(hostId: number): Promise<void> {
    await recoverHost(this.recoveryContext(), hostId);
  }

  /**
   * @internal Build and commit one transaction. The locks it gathered are released after the
   * commit, or after a failure before it. A failure *during* the commit leaves the journal in
   * an unknown state: the host fences itself and keeps the locks for whoever recovers it.
   */
  async transact<T>(build: (tx: Transaction) => Promise<T>): Promise<T> {
    const tx = new Transaction();
    let keepLocks = false;
    try {
      const result = await build(tx);
      if (tx.size > maxTxSectors(this.geo)) throw new EsxError('INTERNAL', `transaction of ${tx.size} sectors is too large`);
      try {
        await this.journal.commit(tx);
      } catch (err) {
        keepLocks = true;
        this.hb.fence(`a metadata commit failed (${(err as Error).message})`);
        throw err;
      }
      return result;
    } finally {
      if (!keepLocks) for (const l of tx.locks.reverse()) await this.releaseLock(l);
    }
  }

  /** @internal Release a lock; a failure fences (we cannot leave a lock we believe released). */
  async releaseLock(l: HeldLock): Promise<void> {
    try {
      await this.locks.release(l);
    } catch (err) {
      this.hb.fence(`releasing a lock failed (${(err as Error).message})`);
    }
  }

  /** @internal Take a lock without waiting for live holders, recovering dead ones first. */
  async lockNow(lba: number, mode: LockMode, what: string): Promise<HeldLock> {
    for (let i = 0; ; i++) {
      try {
        return await this.locks.acquire(lba, mode, what);
      } catch (err) {
        if (!(err instanceof NeedsRecovery) || i >= 3) throw err instanceof NeedsRecovery ? this.deadHolderError(what, err.hostId) : err;
        await this.recover(err.hostId);
      }
    }
  }

  private deadHolderError(what: string, hostId: number): EsxError {
    const l = this.hb.liveness(hostId);
    return new EsxError('FILE_LOCKED', `${what} is locked by host ${hostId}, whose heartbeat stopped but which could not be recovered yet`, { holders: [hostId], unchangedForMs: l?.unchangedForMs ?? null });
  }

  /** @internal Write zeros over whole file blocks (new pointer blocks, inflate). */
  async zeroBlocks(blocks: number[]): Promise<void> {
    for (const b of blocks) await zeroSectors(this.dev, this.geo.blockLba(b), this.geo.spb);
  }

  private walk(parts: string[]): Promise<FileMap> {
    return walk(this.dev, this.geo, parts);
  }

  private parent(path: string): { parts: string[]; name: string } {
    const parts = splitPath(path);
    const name = parts.pop();
    if (name === undefined) throw new EsxError('INVALID_ARGUMENT', 'the root directory cannot be created or removed');
    return { parts, name };
  }

  // ---- namespace -----------------------------------------------------------------------------

  mkdir(path: string): Promise<void> {
    return this.op(() => this.createNode(path, FILE_TYPE.DIR).then(() => undefined));
  }

  /** Create an empty file; NAME_IN_USE if the name exists. */
  create(path: string): Promise<void> {
    return this.op(() => this.createNode(path, FILE_TYPE.FILE).then(() => undefined));
  }

  /** @internal (on the metadata mutex) */
  async createNode(path: string, type: number): Promise<Inode> {
    const { parts, name } = this.parent(path);
    const parentMap = await this.walk(parts);
    if (parentMap.inode.type !== FILE_TYPE.DIR) throw new EsxError('NOT_FOUND', `'${parts.join('/')}' is not a directory`);
    return this.transact(async (tx) => {
      tx.locks.push(await this.locks.acquireWait(this.geo.inodeLock(parentMap.inode.ino), 'exclusive', `directory '/${parts.join('/')}'`, this.lockWaitMs, (id) => this.recover(id)));
      const pmap = await FileMap.load(this.dev, this.geo, parentMap.inode.ino);
      if (pmap.inode.type !== FILE_TYPE.DIR || pmap.inode.gen !== parentMap.inode.gen) throw new EsxError('NOT_FOUND', `'${parts.join('/')}' was removed`);
      const dir = new Directory(this.dev, this.geo, pmap);
      if (await dir.find(name)) throw new EsxError('NAME_IN_USE', `'${[...parts, name].join('/')}' already exists`, { path });
      const { ino, gen } = await this.allocInode(tx);
      const now = Date.now();
      const inode: Inode = { ...freeInode(ino, gen), type, parent: pmap.inode.ino, mtimeMs: now, ctimeMs: now };
      tx.put(this.geo.inode(ino), encodeInode(inode, this.geo.S));
      const d = pmap.draft();
      await dir.add(d, { ino, gen, type, name }, tx, this.alloc, (b) => this.zeroBlocks(b));
      d.inode.mtimeMs = now;
      d.stage(tx, this.geo);
      return inode;
    });
  }

  /** Find a free inode, starting where our host id maps to; its lock goes into the transaction. */
  private async allocInode(tx: Transaction): Promise<{ ino: number; gen: number }> {
    const N = this.superblock.maxFiles;
    const start = Math.floor(((this.hostId - 1) * N) / this.superblock.maxHosts);
    const CHUNK = 64;
    for (let done = 0; done < N; done += CHUNK) {
      const first = (start + done) % N;
      const count = Math.min(CHUNK, N - first);
      const raw = await this.dev.read(this.geo.inode(first), count);
      for (let i = 0; i < count; i++) {
        const ino = first + i;
        if (ino === ROOT_INO || raw.readUInt8(i * this.geo.S + 16) !== FILE_TYPE.FREE) continue;
        let held: HeldLock;
        try {
          held = await this.locks.acquire(this.geo.inodeLock(ino), 'exclusive', `inode ${ino}`);
        } catch (err) {
          if (err instanceof NeedsRecovery || (err instanceof EsxError && err.code === 'FILE_LOCKED')) continue;
          throw err;
        }
        const cur = await readInode(this.dev, this.geo, ino);
        if (cur.type === FILE_TYPE.FREE) {
          tx.locks.push(held);
          return { ino, gen: (cur.gen + 1) >>> 0 || 1 };
        }
        await this.releaseLock(held);
      }
    }
    throw new EsxError('NO_SPACE', `no free file descriptor on the datastore (${N} files at most)`);
  }

  /** Remove a file; FILE_LOCKED while a host has it open. */
  unlink(path: string): Promise<void> {
    return this.op(() => this.remove(path, FILE_TYPE.FILE));
  }

  /** Remove an empty directory. */
  rmdir(path: string): Promise<void> {
    return this.op(() => this.remove(path, FILE_TYPE.DIR));
  }

  private async remove(path: string, type: number): Promise<void> {
    const { parts, name } = this.parent(path);
    const target = await this.walk([...parts, name]);
    if (target.inode.type !== type) throw new EsxError('INVALID_ARGUMENT', `'${path}' is ${type === FILE_TYPE.DIR ? 'not ' : ''}a directory`);
    const lock = await this.lockNow(this.geo.inodeLock(target.inode.ino), 'exclusive', `'${path}'`);
    try {
      const map = await FileMap.load(this.dev, this.geo, target.inode.ino);
      if (map.inode.gen !== target.inode.gen || map.inode.type !== type) throw new EsxError('NOT_FOUND', `'${path}' was removed`);
      if (type === FILE_TYPE.DIR && (await new Directory(this.dev, this.geo, map).list()).length) throw new EsxError('INVALID_STATE', `directory '${path}' is not empty`);
      // A large file first shrinks in bounded transactions (it may be left empty by a crash);
      // a small one goes in a single transaction, all or nothing.
      const owned = await map.allBlocks();
      if (type === FILE_TYPE.FILE && owned.data.size + owned.pointerBlocks.length > BLOCKS_PER_TX) await this.shrink(map, 0, lock);
      await this.transact(async (tx) => {
        tx.locks.push(await this.locks.acquireWait(this.geo.inodeLock(map.inode.parent), 'exclusive', `directory of '${path}'`, this.lockWaitMs, (id) => this.recover(id)));
        const pmap = await FileMap.load(this.dev, this.geo, map.inode.parent);
        const dir = new Directory(this.dev, this.geo, pmap);
        const hit = await dir.find(name);
        if (!hit || hit.entry.ino !== map.inode.ino) throw new EsxError('NOT_FOUND', `'${path}' was removed`);
        const { data, pointerBlocks } = await map.allBlocks();
        await this.alloc.free([...data.values(), ...pointerBlocks], tx);
        tx.put(this.geo.inode(map.inode.ino), encodeInode(freeInode(map.inode.ino, map.inode.gen), this.geo.S));
        const d = pmap.draft();
        await dir.remove(d, hit, tx);
        d.inode.mtimeMs = Date.now();
        d.stage(tx, this.geo);
      });
    } finally {
      await this.releaseLock(lock);
    }
  }

  /**
   * @internal Shrink a file to `size` in transactions of at most BLOCKS_PER_TX freed blocks,
   * from the end. Each step leaves a consistent, smaller file. `lock` must be held.
   */
  async shrink(map: FileMap, size: number, lock: HeldLock): Promise<void> {
    const B = this.superblock.fileBlockSize;
    const keep = Math.ceil(size / B);
    if (size < map.inode.size && size % B !== 0) {
      // Zero the tail of the last kept block so a later extension reads zeros (data write).
      const ptr = await map.get(keep - 1);
      const end = Math.min(map.inode.size, keep * B);
      if (ptr && end > size) {
        const S = this.geo.S;
        const from = size - (keep - 1) * B;
        const firstSector = Math.floor(from / S);
        const lastSector = Math.ceil((end - (keep - 1) * B) / S);
        const lba = this.geo.blockLba(ptr - 1) + firstSector;
        const buf = await this.dev.read(lba, lastSector - firstSector);
        buf.fill(0, from - firstSector * S);
        await this.dev.write(lba, buf);
      }
    }
    for (;;) {
      if (!(await this.locks.verify(lock))) throw new EsxError('LOCK_LOST', 'the file lock was broken during truncation');
      const cur = Math.ceil(map.inode.size / B);
      const d = map.draft();
      const done = await this.transact(async (tx) => {
        const victims: number[] = [];
        let fb = cur - 1;
        for (; fb >= keep && victims.length < BLOCKS_PER_TX; fb--) {
          const p = await d.get(fb);
          if (p) {
            victims.push(p - 1);
            await d.set(fb, 0);
          }
        }
        const last = fb < keep;
        d.inode.size = last ? Math.min(size, map.inode.size) : (fb + 1) * B;
        // Pointer blocks wholly past the new end go too.
        const blocksNow = Math.ceil(d.inode.size / B);
        for (let k = 0; k < d.inode.indirect.length; k++) {
          if (!d.inode.indirect[k] || DIRECT_POINTERS + k * map.ppb < blocksNow) continue;
          const pb = d.inode.indirect[k]! - 1;
          victims.push(pb);
          d.inode.indirect[k] = 0;
          const first = this.geo.blockLba(pb);
          for (const lba of [...d.staged.keys()]) if (lba >= first && lba < first + this.geo.spb) d.staged.delete(lba);
        }
        if (victims.length) await this.alloc.free(victims, tx);
        d.inode.mtimeMs = Date.now();
        d.stage(tx, this.geo);
        return last;
      });
      map.adopt(d);
      if (done) return;
    }
  }

  async readdir(path = '/'): Promise<DirEntry[]> {
    this.usable();
    return listDir(this.dev, this.geo, path);
  }

  async stat(path: string): Promise<FileStat> {
    this.usable();
    return statPath(this.dev, this.geo, path);
  }

  async exists(path: string): Promise<boolean> {
    try {
      await this.walk(splitPath(path));
      return true;
    } catch (err) {
      if (err instanceof EsxError && err.code === 'NOT_FOUND') return false;
      throw err;
    }
  }

  /** Who holds the lock of a file or directory (vmkfstools -D). */
  async lockInfo(path: string): Promise<LockInfo> {
    this.usable();
    const parts = splitPath(path);
    const map = await this.walk(parts);
    const r = await this.locks.read(this.geo.inodeLock(map.inode.ino));
    const holders: LockOwner[] = [];
    for (const h of r.holders) {
      if (h.hostId >= 1 && h.hostId <= this.superblock.maxHosts && h.hostId !== this.hostId) await this.hb.observe(h.hostId);
      const st = this.locks.holderState(h);
      holders.push({ hostId: h.hostId, hostName: this.hb.liveness(h.hostId)?.name ?? '', incarnation: h.incarnation, liveness: st });
    }
    return { path: '/' + parts.join('/'), mode: LOCK_MODE_NAMES[r.mode] ?? 'free', gen: r.gen, holders };
  }

  async df(): Promise<DiskFree> {
    this.usable();
    return diskFree(this.dev, this.geo);
  }

  // ---- files -----------------------------------------------------------------------------------

  /**
   * Open a file and take its on-disk lock: FILE_LOCKED (details: holders) when another live
   * host holds a conflicting lock. A dead holder's host is recovered and its lock broken.
   */
  async open(path: string, mode: LockMode = 'exclusive', o: OpenOptions = {}): Promise<VmfsFile> {
    if (mode !== 'exclusive' && mode !== 'read-only' && mode !== 'multi-writer') throw new EsxError('INVALID_ARGUMENT', `unknown open mode '${String(mode)}'`);
    return this.op(async () => {
      const parts = splitPath(path);
      let map: FileMap;
      try {
        map = await this.walk(parts);
      } catch (err) {
        if (!(o.create && mode === 'exclusive' && err instanceof EsxError && err.code === 'NOT_FOUND')) throw err;
        // Another host may create it between our walk and our create: then we open theirs,
        // and its lock says who holds it (FILE_LOCKED), as if it had been there all along.
        await this.createNode(path, FILE_TYPE.FILE).catch((cerr: unknown) => {
          if (!(cerr instanceof EsxError && cerr.code === 'NAME_IN_USE')) throw cerr;
        });
        map = await this.walk(parts);
      }
      if (map.inode.type !== FILE_TYPE.FILE) throw new EsxError('INVALID_ARGUMENT', `'${path}' is a directory`);
      const lock = await this.lockNow(this.geo.inodeLock(map.inode.ino), mode, `'${path}'`);
      try {
        const fresh = await FileMap.load(this.dev, this.geo, map.inode.ino);
        if (fresh.inode.gen !== map.inode.gen || fresh.inode.type !== FILE_TYPE.FILE) throw new EsxError('NOT_FOUND', `'${path}' was removed`);
        const f = new VmfsFile(this, '/' + parts.join('/'), mode, fresh, lock);
        this.files.add(f);
        return f;
      } catch (err) {
        await this.releaseLock(lock);
        throw err;
      }
    });
  }

  /** @internal */
  forget(f: VmfsFile): void {
    this.files.delete(f);
  }

  /** Read a whole file (read-only open). */
  async readFile(path: string): Promise<Buffer> {
    const f = await this.open(path, 'read-only');
    try {
      return await f.read(0, f.size);
    } finally {
      await f.close();
    }
  }

  /** Create or replace a file's content (exclusive open, truncate, write, flush). */
  async writeFile(path: string, data: Buffer): Promise<void> {
    const f = await this.open(path, 'exclusive', { create: true });
    try {
      await f.truncate(0);
      if (data.length) await f.write(0, data);
      await f.flush();
    } finally {
      await f.close();
    }
  }

  // ---- unmount ---------------------------------------------------------------------------------

  /** Close every file, release our locks, free our heartbeat slot. */
  async unmount(): Promise<void> {
    if (this.state !== 'mounted') return;
    for (const f of [...this.files]) await f.close().catch(() => undefined);
    await this.meta.run(async () => {
      this.stopTimer();
      await this.ticking?.catch(() => undefined);
      this.state = 'unmounted';
      if (this.hb.fenced) return;
      if (this.journalLock) await this.releaseLock(this.journalLock);
      await this.hb.release();
      await this.dev.flush();
    });
    this.log.info('vmfs: unmounted');
  }

  /**
   * Stop at once without writing anything (the host is dying, or a test simulates a crash):
   * timers stop, every open file is lost, the on-disk state stays as it is for recovery.
   */
  abandon(): void {
    this.stopTimer();
    this.state = 'unmounted';
    for (const f of this.files) f.markLost('the mount was abandoned');
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
