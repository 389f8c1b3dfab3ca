/**
 * Recovering a dead host (VMFS "journal replay on behalf of a crashed host").
 *
 * A host whose heartbeat slot has not moved for longer than the lease (on our clock) may
 * still own locks, and its journal may hold a committed transaction whose home writes did
 * not all land. Before any of its locks can be broken:
 *   1. take its journal lock, breaking the dead owner's entry: only one host recovers it (a
 *      second recoverer finds the lock held by a live host and waits, bounded);
 *   2. replay its journal (journal.ts) and mark it empty;
 *   3. reclaim its heartbeat slot (state RECLAIMED, same incarnation), atomically against the
 *      image we judged stale: if the slot moved in between, the host is alive and we stop;
 *   4. release the journal lock.
 * From then on the dead incarnation's lock entries count as ended (locks.ts) and any host may
 * drop them. If the dead host comes back it finds its slot rewritten at its next beat and
 * fences itself (heartbeat.ts); it was already fenced by its own clock anyway.
 */
import { EsxError, sleep } from '@esxemu/shared';
import { atomicUpdate } from './atomic.js';
import type { BlockDevice } from './block-device.js';
import type { Geometry } from './format.js';
import type { Heartbeat } from './heartbeat.js';
import type { Journal } from './journal.js';
import type { Locks } from './locks.js';
import { decodeHeartbeat, encodeHeartbeat, HB_STATE } from './records.js';

export interface RecoveryContext {
  dev: BlockDevice;
  geo: Geometry;
  hb: Heartbeat;
  locks: Locks;
  journal: Journal;
  lockWaitMs: number;
  onRecovered?: (hostId: number, replayed: number) => void;
}

/** Recover `hostId` if it is dead; returns true when this call reclaimed it. */
export async function recoverHost(c: RecoveryContext, hostId: number): Promise<boolean> {
  if (hostId === c.hb.hostId) throw new EsxError('INTERNAL', 'a host does not recover itself while mounted');
  const slot = await c.hb.observe(hostId);
  const stale = c.hb.seenImage(hostId);
  if (c.hb.liveness(hostId)?.liveness !== 'dead' || !stale) return false;
  const lba = c.geo.journalLock(hostId);
  const deadline = Date.now() + c.lockWaitMs;
  let held;
  for (;;) {
    try {
      held = await c.locks.acquire(lba, 'exclusive', `journal of host ${hostId}`, { breakDead: true });
      break;
    } catch (err) {
      if (!(err instanceof EsxError) || err.code !== 'FILE_LOCKED' || Date.now() >= deadline) throw err;
      await sleep(20); // another host is recovering it (or it is coming back)
      if ((await c.hb.observe(hostId)).state !== HB_STATE.MOUNTED) return false;
    }
  }
  let reclaimed = false;
  try {
    const { replayed } = await c.journal.replay(hostId);
    const at = c.geo.hbSlot(hostId);
    await atomicUpdate(c.dev, at, (cur) => {
      const s = decodeHeartbeat(cur, hostId, at);
      if (s.state !== HB_STATE.MOUNTED || s.incarnation !== slot.incarnation) return null; // already reclaimed, or remounted
      if (!cur.equals(stale)) throw new EsxError('INVALID_STATE', `host ${hostId} came back while being recovered`);
      reclaimed = true;
      return encodeHeartbeat({ ...s, state: HB_STATE.RECLAIMED, counter: s.counter + 1, wallMs: Date.now() }, c.geo.S);
    });
    if (reclaimed) c.onRecovered?.(hostId, replayed);
  } finally {
    await c.locks.release(held);
  }
  await c.hb.observe(hostId);
  return reclaimed;
}
