/** Shared fixtures of the VMFS tests: a memory LUN seen by several hosts, quick settings. */
import { ManualClock, MemoryBlockDevice, MemoryLun, mkfs, mount, type MkfsOptions, type MountOptions, type Vmfs } from '../src/vmfs/index.js';

export const KIB = 1024;
export const MIB = 1024 * 1024;

/** Small geometry so that tests run fast and fill up quickly. */
export const SMALL_FS: MkfsOptions = { label: 'test-ds', fileBlockSize: 64 * KIB, maxHosts: 8, maxFiles: 128, journalSectors: 64 };

/** Manual time, manual heartbeats: lease logic without sleeping. */
export const MANUAL_HB = { heartbeatMs: 100, leaseMs: 1000, fenceMs: 600, autoHeartbeat: false } as const;

export interface TestSan {
  lun: MemoryLun;
  device(name: string, ats?: boolean): MemoryBlockDevice;
}

export function memorySan(sizeBytes = 16 * MIB, blockSize = 512): TestSan {
  const lun = new MemoryLun(sizeBytes, blockSize);
  return { lun, device: (name, ats = true) => new MemoryBlockDevice(lun, { name, ats, conflictRetryMs: 2000 }) };
}

export async function formatted(o: { sizeBytes?: number; mkfs?: MkfsOptions; blockSize?: number } = {}): Promise<TestSan> {
  const san = memorySan(o.sizeBytes ?? 16 * MIB, o.blockSize ?? 512);
  await mkfs(san.device('mkfs'), { ...SMALL_FS, ...o.mkfs });
  return san;
}

/** Mount host `hostId` on a fresh device of the SAN with its own manual clock. */
export async function manualHost(san: TestSan, hostId: number, o: Partial<MountOptions> & { ats?: boolean; clock?: ManualClock } = {}): Promise<{ fs: Vmfs; clock: ManualClock; dev: MemoryBlockDevice }> {
  const clock = o.clock ?? new ManualClock();
  const dev = san.device(`esx0${hostId}`, o.ats ?? true);
  const fs = await mount(dev, { ...MANUAL_HB, ...o, hostId, hostName: `esx0${hostId}`, clock });
  return { fs, clock, dev };
}

/** A deterministic byte pattern (tests compare what they read with what they wrote). */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Let `ms` of manual time pass for a host that keeps beating (steps shorter than its fence). */
export async function liveFor(h: { fs: Vmfs; clock: ManualClock }, ms: number): Promise<void> {
  const step = h.fs.settings.heartbeatMs;
  for (let done = 0; done < ms; done += step) {
    h.clock.advance(Math.min(step, ms - done));
    await h.fs.heartbeatTick();
  }
}
