/**
 * Atomic read-modify-write of one shared sector (a lock record, a heartbeat slot, the
 * superblock during mkfs) against every other host:
 *
 *  - ATS path: read the sector, compute the new image, COMPARE AND WRITE(old, new). A
 *    miscompare means another host changed it in between: re-read and try again (bounded).
 *  - Reservation path (no ATS on the LUN, or switched off): RESERVE the LU, read, compute,
 *    write with FUA, RELEASE. While reserved, other hosts' I/O gets RESERVATION CONFLICT and
 *    retries (block-device.ts). SPC-2 reservations belong to the nexus, not to a caller, so the
 *    callers of one host take turns on a per-device mutex; RESERVE itself is retried on
 *    conflict for a bounded time.
 *
 * `update(current)` is pure: it returns the new image, null for "no change", or throws (e.g.
 * FILE_LOCKED), in which case nothing is written and the reservation is released.
 */
import { EsxError, sleep } from '@esxemu/shared';
import { Mutex, type BlockDevice } from './block-device.js';

export interface AtomicStats {
  ats: number;
  reservations: number;
  miscompares: number;
}

const gates = new WeakMap<BlockDevice, Mutex>();
const stats = new WeakMap<BlockDevice, AtomicStats>();

export function atomicStats(dev: BlockDevice): AtomicStats {
  let s = stats.get(dev);
  if (!s) stats.set(dev, (s = { ats: 0, reservations: 0, miscompares: 0 }));
  return s;
}

function gate(dev: BlockDevice): Mutex {
  let g = gates.get(dev);
  if (!g) gates.set(dev, (g = new Mutex()));
  return g;
}

export const ATOMIC_ATTEMPTS = 64;
export const RESERVE_BUDGET_MS = 5_000;

export interface AtomicResult {
  before: Buffer;
  /** The image written, or null when update() asked for no change. */
  after: Buffer | null;
}

export async function atomicUpdate(dev: BlockDevice, lba: number, update: (current: Buffer) => Buffer | null): Promise<AtomicResult> {
  const st = atomicStats(dev);
  for (let attempt = 0; dev.ats && attempt < ATOMIC_ATTEMPTS; attempt++) {
    const before = await dev.read(lba, 1);
    const after = update(before);
    if (!after) return { before, after: null };
    let r;
    try {
      r = await dev.compareAndWrite(lba, before, after);
    } catch (err) {
      if (err instanceof EsxError && err.details?.['reason'] === 'ATS_UNSUPPORTED') break; // the device switched itself to reservations
      throw err;
    }
    st.ats++;
    if (r === 'ok') return { before, after };
    st.miscompares++;
    await sleep(Math.min(20, attempt));
  }
  if (dev.ats) throw new EsxError('TIMEOUT', `sector ${lba} kept changing under ${ATOMIC_ATTEMPTS} COMPARE AND WRITE attempts`);
  return gate(dev).run(async () => {
    await reserve(dev);
    st.reservations++;
    try {
      const before = await dev.read(lba, 1);
      const after = update(before);
      if (after) await dev.write(lba, after, { fua: true });
      return { before, after };
    } finally {
      await dev.release();
    }
  });
}

async function reserve(dev: BlockDevice): Promise<void> {
  const deadline = Date.now() + RESERVE_BUDGET_MS;
  let delay = 1;
  while (!(await dev.reserve())) {
    if (Date.now() >= deadline) throw new EsxError('TIMEOUT', `RESERVE of ${dev.name}: held by another host for ${RESERVE_BUDGET_MS} ms`);
    await sleep(delay);
    delay = Math.min(50, delay * 2);
  }
}
