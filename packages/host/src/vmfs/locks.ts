/**
 * On-disk locks (records.ts: lock records) for files, resource clusters and host journals.
 *
 * Acquire, release and break are single atomic updates of the lock sector (atomic.ts: ATS, or
 * RESERVE / read-modify-write / RELEASE). Inside the update the current record is judged
 * against what we know of every holder's heartbeat:
 *
 *   holder incarnation < its slot's incarnation, or slot not mounted -> the holder's mount is
 *       over (it unmounted, or was recovered): the entry is dropped, no wait needed;
 *   holder incarnation > its slot's                -> a host mounting right now: alive (ended
 *       if the slot then stays unchanged for a lease: that mount attempt died);
 *   same incarnation, slot mounted and moving      -> alive: conflict (FILE_LOCKED);
 *   same incarnation, slot unchanged past the lease -> dead, but its journal may still hold
 *       updates made under this lock: the caller must recover that host first (NeedsRecovery,
 *       recovery.ts), which reclaims its slot, after which the entry is simply dropped.
 *
 * Every change bumps `gen`; a holder is (hostId, incarnation, joinGen). A host checks its lock
 * by looking for its own entry (`verify`): once broken, it is gone for good.
 *
 * Compatibility: exclusive excludes everything; read-only shares with read-only; multi-writer
 * shares with multi-writer.
 */
import { EsxError, sleep } from '@esxemu/shared';
import { atomicUpdate } from './atomic.js';
import type { BlockDevice } from './block-device.js';
import type { Geometry } from './format.js';
import type { Heartbeat } from './heartbeat.js';
import { decodeLock, encodeLock, LOCK_MODE, LOCK_MODE_NAMES, lockModeCode, MAX_LOCK_HOLDERS, type LockHolder, type LockMode, type LockRecord } from './records.js';

/** A conflicting holder is dead but not yet recovered. */
export class NeedsRecovery extends Error {
  readonly hostId: number;
  constructor(hostId: number) {
    super(`host ${hostId} must be recovered first`);
    this.hostId = hostId;
  }
}

export interface HeldLock {
  lba: number;
  holder: LockHolder;
  mode: LockMode;
}

export type HolderState = 'alive' | 'ended' | 'dead';

export class Locks {
  private readonly dev: BlockDevice;
  private readonly geo: Geometry;
  private readonly hb: Heartbeat;

  constructor(dev: BlockDevice, geo: Geometry, hb: Heartbeat) {
    this.dev = dev;
    this.geo = geo;
    this.hb = hb;
  }

  async read(lba: number): Promise<LockRecord> {
    return decodeLock(await this.dev.read(lba, 1), this.geo.lockIndexOf(lba), lba);
  }

  /** Refresh what we know of every other holder's heartbeat. */
  private async observeHolders(r: LockRecord): Promise<void> {
    for (const h of r.holders) if (h.hostId >= 1 && h.hostId <= this.geo.sb.maxHosts && !(h.hostId === this.hb.hostId && h.incarnation === this.hb.incarnation)) await this.hb.observe(h.hostId);
  }

  /** Judge one holder from our heartbeat observations. */
  holderState(h: LockHolder): HolderState {
    if (h.hostId < 1 || h.hostId > this.geo.sb.maxHosts) return 'ended';
    if (h.hostId === this.hb.hostId) {
      if (h.incarnation === this.hb.incarnation) return 'alive';
      return h.incarnation < this.hb.incarnation ? 'ended' : 'alive';
    }
    const l = this.hb.liveness(h.hostId);
    if (!l) return 'alive'; // never observed: assume alive (observeHolders runs first)
    if (h.incarnation < l.incarnation) return 'ended';
    // A host between taking its journal lock and claiming its slot (mounting): alive, unless
    // its slot has not moved for a lease, then that mount attempt died before it began.
    if (h.incarnation > l.incarnation) return l.unchangedForMs > this.hb.settings.leaseMs ? 'ended' : 'alive';
    if (l.liveness === 'unmounted') return 'ended';
    return l.liveness === 'dead' ? 'dead' : 'alive';
  }

  /**
   * Take the lock at `lba` in `mode`. FILE_LOCKED (details: holders) when a live host holds a
   * conflicting lock; NeedsRecovery when a conflicting holder is dead and unrecovered, unless
   * `breakDead` (used by recovery itself, for the dead host's journal lock).
   */
  async acquire(lba: number, mode: LockMode, what: string, opts: { breakDead?: boolean } = {}): Promise<HeldLock> {
    this.hb.checkFence();
    const want = lockModeCode(mode);
    await this.observeHolders(await this.read(lba));
    let held: HeldLock | null = null;
    await atomicUpdate(this.dev, lba, (cur) => {
      const r = decodeLock(cur, this.geo.lockIndexOf(lba), lba);
      const keep: LockHolder[] = [];
      for (const h of r.holders) {
        const st = this.holderState(h);
        if (st === 'ended') continue;
        if (st === 'dead' && opts.breakDead) continue;
        const compatible = r.mode === want && want !== LOCK_MODE.EXCLUSIVE;
        if (!compatible) {
          if (st === 'dead') throw new NeedsRecovery(h.hostId);
          throw new EsxError('FILE_LOCKED', `${what} is locked (${LOCK_MODE_NAMES[r.mode]}) by host ${h.hostId}`, { mode: LOCK_MODE_NAMES[r.mode], holders: r.holders.map((x) => x.hostId) });
        }
        keep.push(h);
      }
      if (keep.length >= MAX_LOCK_HOLDERS) throw new EsxError('FILE_LOCKED', `${what} already has ${MAX_LOCK_HOLDERS} holders`);
      const gen = (r.gen + 1) >>> 0;
      const me: LockHolder = { hostId: this.hb.hostId, incarnation: this.hb.incarnation, joinGen: gen };
      held = { lba, holder: me, mode };
      return encodeLock({ index: r.index, gen, mode: want, holders: [...keep, me] }, this.geo.S);
    });
    return held!;
  }

  /** acquire() that waits (bounded) while a live host holds the lock: for short metadata locks. */
  async acquireWait(lba: number, mode: LockMode, what: string, waitMs: number, recover: (hostId: number) => Promise<void>): Promise<HeldLock> {
    const deadline = Date.now() + waitMs;
    let delay = 2;
    for (let recoveries = 0; ; ) {
      try {
        return await this.acquire(lba, mode, what);
      } catch (err) {
        if (err instanceof NeedsRecovery && recoveries++ < 4) {
          await recover(err.hostId);
          continue;
        }
        if (!(err instanceof EsxError) || err.code !== 'FILE_LOCKED' || Date.now() >= deadline) throw err instanceof NeedsRecovery ? new EsxError('FILE_LOCKED', `${what}: host ${err.hostId} could not be recovered`) : err;
        await sleep(delay);
        delay = Math.min(100, delay * 2);
      }
    }
  }

  /** Drop our entry. Quietly does nothing when it is already gone (broken). */
  async release(l: HeldLock): Promise<void> {
    await atomicUpdate(this.dev, l.lba, (cur) => {
      const r = decodeLock(cur, this.geo.lockIndexOf(l.lba), l.lba);
      const keep = r.holders.filter((h) => !sameHolder(h, l.holder));
      if (keep.length === r.holders.length) return null;
      return encodeLock({ index: r.index, gen: (r.gen + 1) >>> 0, mode: keep.length ? r.mode : LOCK_MODE.FREE, holders: keep }, this.geo.S);
    });
  }

  /** Is our entry still there? */
  async verify(l: HeldLock): Promise<boolean> {
    const r = await this.read(l.lba);
    return r.holders.some((h) => sameHolder(h, l.holder));
  }

  /** Remove the entries of holders whose mount is over (after recovery); returns how many. */
  async sweep(lba: number): Promise<number> {
    let removed = 0;
    await this.observeHolders(await this.read(lba));
    await atomicUpdate(this.dev, lba, (cur) => {
      const r = decodeLock(cur, this.geo.lockIndexOf(lba), lba);
      const keep = r.holders.filter((h) => this.holderState(h) !== 'ended');
      removed = r.holders.length - keep.length;
      if (!removed) return null;
      return encodeLock({ index: r.index, gen: (r.gen + 1) >>> 0, mode: keep.length ? r.mode : LOCK_MODE.FREE, holders: keep }, this.geo.S);
    });
    return removed;
  }
}

export function sameHolder(a: LockHolder, b: LockHolder): boolean {
  return a.hostId === b.hostId && a.incarnation === b.incarnation && a.joinGen === b.joinGen;
}

