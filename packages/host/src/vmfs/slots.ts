/**
 * Choosing a heartbeat slot for `mount(dev, { hostId: 'auto', hostName })`: hosts of a cluster
 * are started by name, not by number, and get their host id from the datastore itself.
 *
 * The choice, from one read of the heartbeat region (pure: chooseSlot below):
 *   1. a slot that bears our name and is still marked mounted: our previous incarnation
 *      crashed. We resume it (mount's explicit-id path: watch it for a lease, take its journal
 *      lock, replay its journal, then claim it), so that our own journal is replayed and our
 *      old locks end at once. If the slot moves during the watch, another live process uses
 *      our name: that slot is skipped and the choice is made again without it;
 *   2. a slot that bears our name and is not mounted (a clean unmount, or recovered);
 *   3. the first never-used slot (so that hosts keep stable ids across restarts);
 *   4. the first slot whose mount is over (free after an unmount, or reclaimed by recovery).
 * A slot marked mounted under another name is never taken, live or dead: a dead host's journal
 * must be replayed by a recoverer before its slot is free. A slot that does not decode is
 * never taken either (fsck reports it).
 *
 * Claim (cases 2-4): one atomic update of the slot (COMPARE AND WRITE, or the reservation
 * path) against the exact image the choice was made on: two hosts racing for one slot both
 * issue it, one wins, the other sees a miscompare and chooses again from a fresh read. The
 * slot is claimed *before* the journal lock is taken (vmfs.ts), so racing mounts never wait
 * for each other's journal lock; its journal is already empty (clean unmount, recovery) or
 * was never used. Bounded: at most maxHosts + 2 rounds, each one lost to a host that took a
 * slot. When every slot is mounted: INSUFFICIENT_RESOURCES.
 */
import { EsxError } from '@esxemu/shared';
import type { BlockDevice } from './block-device.js';
import { MAX_HOST_NAME_BYTES, type Superblock } from './format.js';
import { decodeHeartbeat, HB_STATE, type HeartbeatSlot } from './records.js';

export interface SlotView {
  hostId: number;
  /** null: the slot does not decode (corrupt). */
  slot: HeartbeatSlot | null;
  image: Buffer;
}

export type SlotChoice =
  | { kind: 'resume'; hostId: number }
  | { kind: 'claim'; hostId: number; image: Buffer; why: 'our name' | 'never used' | 'mount ended' }
  | { kind: 'full'; mounted: number; corrupt: number };

/** One read of the whole heartbeat region. */
export async function readSlots(dev: BlockDevice, sb: Superblock): Promise<SlotView[]> {
  const S = dev.blockSize;
  const all = await dev.read(sb.hbStart, sb.maxHosts);
  const out: SlotView[] = [];
  for (let id = 1; id <= sb.maxHosts; id++) {
    const image = Buffer.from(all.subarray((id - 1) * S, id * S));
    let slot: HeartbeatSlot | null = null;
    try {
      slot = decodeHeartbeat(image, id, sb.hbStart + id - 1);
    } catch {
      // corrupt: never chosen
    }
    out.push({ hostId: id, slot, image });
  }
  return out;
}

/** The host name a slot can carry: 1..64 UTF-8 bytes (it is how a restarting host finds its slot). */
export function checkHostName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name, 'utf8') > MAX_HOST_NAME_BYTES) {
    throw new EsxError('INVALID_ARGUMENT', `hostId 'auto' needs a hostName of 1..${MAX_HOST_NAME_BYTES} UTF-8 bytes`);
  }
  return name;
}

export function chooseSlot(slots: SlotView[], hostName: string, skip: ReadonlySet<number> = new Set()): SlotChoice {
  const usable = slots.filter((v) => v.slot && !skip.has(v.hostId));
  const mounted = (v: SlotView): boolean => v.slot!.state === HB_STATE.MOUNTED;
  const ours = usable.filter((v) => v.slot!.incarnation > 0 && v.slot!.name === hostName);
  const resume = ours.find(mounted);
  if (resume) return { kind: 'resume', hostId: resume.hostId };
  const claim = (v: SlotView | undefined, why: 'our name' | 'never used' | 'mount ended'): SlotChoice | null => (v ? { kind: 'claim', hostId: v.hostId, image: v.image, why } : null);
  return (
    claim(ours.find((v) => !mounted(v)), 'our name') ??
    claim(usable.find((v) => v.slot!.incarnation === 0 && !mounted(v)), 'never used') ??
    claim(usable.find((v) => !mounted(v)), 'mount ended') ?? { kind: 'full', mounted: slots.filter((v) => v.slot && mounted(v)).length, corrupt: slots.filter((v) => !v.slot).length }
  );
}

/** Rounds of choose-and-claim before giving up (each lost round means another host took a slot). */
export function maxClaimRounds(sb: Superblock): number {
  return sb.maxHosts + 2;
}

export function slotsFullError(sb: Superblock, c: Extract<SlotChoice, { kind: 'full' }>, skipped: number): EsxError {
  const extra = [c.corrupt ? `${c.corrupt} unreadable` : '', skipped ? `${skipped} skipped because a live host uses our name there` : ''].filter(Boolean).join(', ');
  return new EsxError(
    'INSUFFICIENT_RESOURCES',
    `all ${sb.maxHosts} heartbeat slots of datastore '${sb.label}' are taken by mounted hosts (${c.mounted} mounted${extra ? `, ${extra}` : ''}); a dead host's slot frees up once a live host recovers it`,
    { maxHosts: sb.maxHosts, mounted: c.mounted, corrupt: c.corrupt },
  );
}
