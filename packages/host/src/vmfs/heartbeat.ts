/**
 * Host heartbeats and liveness (VMFS's heartbeat region).
 *
 * Writer side: a mounted host bumps `counter` in its own slot every `heartbeatMs` with an
 * atomic update whose expected image is the one it wrote last (COMPARE AND WRITE, or the
 * reservation fallback). A miscompare means someone else rewrote our slot: another host has
 * declared us dead and recovered us, so every lock we held is gone (we are "reclaimed").
 *
 * Observer side: every tick the whole region is read (one command) and, per slot, the
 * observer remembers the image and the moment *on its own monotonic clock* it first saw that
 * image. A mounted slot unchanged for longer than `leaseMs` belongs to a dead host. A slot
 * first seen now is given a full lease: the observer cannot know how old it is.
 *
 * Self-fencing: a host measures, on its own clock, the time since it *issued* its last
 * heartbeat that succeeded. Past `fenceMs` (< leaseMs) it must assume others may have declared
 * it dead, and it stops writing at once (FencedDevice below refuses every write): a host
 * frozen by SIGSTOP, a long GC pause or a stalled path notices before it issues one more write.
 * Since others wait a whole lease from the moment *they* saw the last beat, which is after we
 * issued it, the fence always closes before anybody breaks our locks. Once fenced, a mount
 * stays fenced: its locks are treated as lost and the host must unmount and mount again.
 *
 * Defaults (emulator scale): heartbeat 1 s, lease 5 s, fence at 60% of the lease (3 s). A
 * healthy host beats every second, so the fence allows two missed beats of slack.
 */
import { EsxError } from '@esxemu/shared';
import { atomicUpdate } from './atomic.js';
import { ForwardingDevice, type BlockDevice, type CompareAndWriteResult, type WriteOptions } from './block-device.js';
import type { Clock } from './clock.js';
import type { Geometry } from './format.js';
import { decodeHeartbeat, encodeHeartbeat, HB_STATE, type HeartbeatSlot } from './records.js';

export interface HeartbeatSettings {
  heartbeatMs: number;
  leaseMs: number;
  fenceMs: number;
}

export const DEFAULT_HEARTBEAT: HeartbeatSettings = { heartbeatMs: 1000, leaseMs: 5000, fenceMs: 3000 };

export function heartbeatSettings(o: Partial<HeartbeatSettings>): HeartbeatSettings {
  const heartbeatMs = o.heartbeatMs ?? DEFAULT_HEARTBEAT.heartbeatMs;
  const leaseMs = o.leaseMs ?? Math.max(DEFAULT_HEARTBEAT.leaseMs, heartbeatMs * 5);
  const fenceMs = o.fenceMs ?? Math.floor(leaseMs * 0.6);
  if (!(heartbeatMs >= 10) || !(fenceMs >= heartbeatMs * 2) || !(leaseMs > fenceMs)) {
    throw new EsxError('INVALID_ARGUMENT', `heartbeat settings must satisfy 10 <= heartbeatMs, 2 x heartbeatMs <= fenceMs < leaseMs (got ${heartbeatMs}/${fenceMs}/${leaseMs})`);
  }
  return { heartbeatMs, leaseMs, fenceMs };
}

export type Liveness = 'alive' | 'dead' | 'unmounted';

export interface HostHeartbeat {
  hostId: number;
  name: string;
  /** alive: mounted and moving; dead: mounted but unchanged past the lease; unmounted: free or reclaimed. */
  liveness: Liveness;
  incarnation: number;
  counter: number;
  /** How long (observer's clock) since the slot last changed. */
  unchangedForMs: number;
}

interface Seen {
  slot: HeartbeatSlot;
  image: Buffer;
  changedAt: number;
}

export class Heartbeat {
  readonly hostId: number;
  readonly settings: HeartbeatSettings;
  private readonly dev: BlockDevice;
  private readonly geo: Geometry;
  private readonly clock: Clock;
  private readonly seen = new Map<number, Seen>();
  private mine: HeartbeatSlot | null = null;
  private myImage: Buffer | null = null;
  private lastOkIssuedAt: number;
  private fencedReason: string | null = null;
  private pending = 0;

  constructor(dev: BlockDevice, geo: Geometry, hostId: number, clock: Clock, settings: HeartbeatSettings) {
    this.dev = dev;
    this.geo = geo;
    this.hostId = hostId;
    this.clock = clock;
    this.settings = settings;
    this.lastOkIssuedAt = clock.now();
  }

  /** Our incarnation: the mounted one, or during mount the one being established (prepare). */
  get incarnation(): number {
    return this.mine?.incarnation ?? this.pending;
  }

  /** Mount: the incarnation we are about to claim, so that locks taken meanwhile carry it. */
  prepare(incarnation: number): void {
    this.pending = incarnation;
  }

  get fenced(): string | null {
    return this.fencedReason;
  }

  /** Throws LOCK_LOST when fenced, or when the fence time has passed since the last good beat. */
  checkFence(): void {
    if (!this.fencedReason && this.mine && this.clock.now() - this.lastOkIssuedAt > this.settings.fenceMs) {
      this.fence(`no successful heartbeat for more than ${this.settings.fenceMs} ms (host frozen or path stalled)`);
    }
    if (this.fencedReason) throw new EsxError('LOCK_LOST', `host ${this.hostId} lost its access to the datastore: ${this.fencedReason}; unmount and mount again`, { reason: 'FENCED' });
  }

  fence(reason: string): void {
    this.fencedReason ??= reason;
  }

  /** Read one slot from the LUN. */
  async readSlot(hostId: number): Promise<{ slot: HeartbeatSlot; image: Buffer }> {
    const lba = this.geo.hbSlot(hostId);
    const image = await this.dev.read(lba, 1);
    return { slot: decodeHeartbeat(image, hostId, lba), image };
  }

  /**
   * Take our slot for a new incarnation (mount): state mounted, incarnation + 1. `expect` is
   * the image the mount inspected; if the slot changed since, another process uses this id.
   * `exact` (hostId 'auto', slots.ts): any change at all since `expect` means another host
   * took the slot first: INVALID_STATE with reason SLOT_TAKEN, nothing written.
   */
  async claim(name: string, expect: Buffer, o: { exact?: boolean } = {}): Promise<void> {
    const lba = this.geo.hbSlot(this.hostId);
    let next: HeartbeatSlot | null = null;
    const issued = this.clock.now();
    const r = await atomicUpdate(this.dev, lba, (cur) => {
      if (o.exact && !cur.equals(expect)) throw new EsxError('INVALID_STATE', `heartbeat slot ${this.hostId} was taken by another host`, { reason: 'SLOT_TAKEN', hostId: this.hostId });
      const s = decodeHeartbeat(cur, this.hostId, lba);
      if (!cur.equals(expect) && s.state === HB_STATE.MOUNTED) throw new EsxError('INVALID_STATE', `host id ${this.hostId} is in use by another live host`, { reason: 'HOST_ID_IN_USE', hostId: this.hostId });
      const incarnation = this.pending || s.incarnation + 1;
      if (incarnation <= s.incarnation) throw new EsxError('INVALID_STATE', `host id ${this.hostId}: slot incarnation moved to ${s.incarnation} during mount`);
      next = { hostId: this.hostId, state: HB_STATE.MOUNTED, incarnation, counter: s.counter + 1, wallMs: Date.now(), name };
      return encodeHeartbeat(next, this.geo.S);
    });
    this.mine = next;
    this.myImage = r.after;
    this.lastOkIssuedAt = issued;
  }

  /** One beat of our own slot. A miscompare (we were reclaimed) fences us. */
  async beat(): Promise<void> {
    this.checkFence();
    const mine = this.mine!;
    const next: HeartbeatSlot = { ...mine, counter: mine.counter + 1, wallMs: Date.now() };
    const image = encodeHeartbeat(next, this.geo.S);
    const issued = this.clock.now();
    const expect = this.myImage!;
    const r = await atomicUpdate(this.dev, this.geo.hbSlot(this.hostId), (cur) => {
      if (!cur.equals(expect)) {
        this.fence('our heartbeat slot was rewritten by another host (we were declared dead and recovered)');
        throw new EsxError('LOCK_LOST', `host ${this.hostId}: heartbeat slot reclaimed by another host`, { reason: 'RECLAIMED' });
      }
      return image;
    });
    if (r.after) {
      this.mine = next;
      this.myImage = image;
      // Only a beat issued before the fence time counts; a late one cannot reopen the fence.
      if (!this.fencedReason) this.lastOkIssuedAt = issued;
    }
  }

  /** Clean unmount: state free. */
  async release(): Promise<void> {
    if (!this.mine || this.fencedReason) return;
    const next: HeartbeatSlot = { ...this.mine, state: HB_STATE.FREE, counter: this.mine.counter + 1, wallMs: Date.now() };
    const expect = this.myImage!;
    await atomicUpdate(this.dev, this.geo.hbSlot(this.hostId), (cur) => (cur.equals(expect) ? encodeHeartbeat(next, this.geo.S) : null));
    this.mine = null;
  }

  /** Read the whole region and update what we have seen of every slot. */
  async observeAll(): Promise<void> {
    const sb = this.geo.sb;
    const all = await this.dev.read(sb.hbStart, sb.maxHosts);
    for (let id = 1; id <= sb.maxHosts; id++) {
      const image = all.subarray((id - 1) * this.geo.S, id * this.geo.S);
      try {
        this.note(id, decodeHeartbeat(image, id, this.geo.hbSlot(id)), image);
      } catch {
        // A corrupt slot is reported by fsck; for liveness it simply never changes.
      }
    }
    if (this.mine && this.myImage && !this.fencedReason) {
      const own = this.seen.get(this.hostId);
      if (own && !own.image.equals(this.myImage)) this.fence('our heartbeat slot was rewritten by another host');
    }
  }

  async observe(hostId: number): Promise<HeartbeatSlot> {
    const { slot, image } = await this.readSlot(hostId);
    this.note(hostId, slot, image);
    return slot;
  }

  private note(hostId: number, slot: HeartbeatSlot, image: Buffer): void {
    const prev = this.seen.get(hostId);
    if (!prev || !prev.image.equals(image)) this.seen.set(hostId, { slot, image: Buffer.from(image), changedAt: this.clock.now() });
  }

  /** The image we last saw of a slot (what a recoverer expects when it reclaims it). */
  seenImage(hostId: number): Buffer | null {
    return this.seen.get(hostId)?.image ?? null;
  }

  /** Liveness from our observations (call observe/observeAll first for fresh data). */
  liveness(hostId: number): HostHeartbeat | null {
    const s = this.seen.get(hostId);
    if (!s) return null;
    const unchangedForMs = this.clock.now() - s.changedAt;
    const liveness: Liveness = s.slot.state !== HB_STATE.MOUNTED ? 'unmounted' : hostId === this.hostId && this.mine && !this.fencedReason ? 'alive' : unchangedForMs > this.settings.leaseMs ? 'dead' : 'alive';
    return { hostId, name: s.slot.name, liveness, incarnation: s.slot.incarnation, counter: s.slot.counter, unchangedForMs };
  }

  all(): HostHeartbeat[] {
    const out: HostHeartbeat[] = [];
    for (const id of [...this.seen.keys()].sort((a, b) => a - b)) {
      const l = this.liveness(id)!;
      if (l.incarnation > 0 || l.liveness !== 'unmounted') out.push(l);
    }
    return out;
  }
}

/**
 * The device as the file system sees it: every write, COMPARE AND WRITE and RESERVE first
 * checks the fence, so a host past its fence time issues nothing more.
 */
export class FencedDevice extends ForwardingDevice {
  private readonly hb: () => Heartbeat | null;

  constructor(inner: BlockDevice, hb: () => Heartbeat | null) {
    super(inner);
    this.hb = hb;
  }
  override async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    this.hb()?.checkFence();
    return this.inner.write(lba, data, opts);
  }
  override async compareAndWrite(lba: number, expected: Buffer, next: Buffer): Promise<CompareAndWriteResult> {
    this.hb()?.checkFence();
    return this.inner.compareAndWrite(lba, expected, next);
  }
  override async reserve(): Promise<boolean> {
    this.hb()?.checkFence();
    return this.inner.reserve();
  }
}
