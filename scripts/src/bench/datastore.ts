/**
 * Benchmark: what the VMFS datastore costs a guest's disk, and what its locks cost, in one run
 * against one esxemu iSCSI target process on loopback.
 *
 *   node scripts/dist/src/bench/datastore.js [--rounds 3] [--seconds 5] [--size 256] [--locks 200] [--out bench-results]
 *
 * 1. raw: the hosts' own initiator (esxemu-initiator-load.ts) straight on the LUN, before mkfs
 *    (raw writes would destroy a file system), over the first --size MiB (the guest disk's
 *    extent lands right after the metadata, a few MiB further). The region is written once
 *    first, so reads hit written data as the guest's reads of its inflated disk do. Each
 *    workload runs --seconds.
 * 2. vmfs file: mkfs, mount (hostId 'auto'), bench/bench-flat.vmdk of --size MiB created and
 *    inflated (eager-zeroed: no allocation during the run); the same workloads straight on the
 *    open VmfsFile from this process, no VM: what the file system itself costs.
 * 3. guest: the same file as the disk of a VM in this process (VMkernel
 *    on the main thread, VMM + diskio guest in a worker) whose disk is that file
 *    (VmfsDiskBackend): guest -> VMM -> VMkernel -> VMFS -> initiator -> target. Each workload
 *    warms up, then ops and KiB are counted over --seconds from the guest's own registers.
 * 4. locks: open (take the file's on-disk lock, exclusive) and close (release it) one file
 *    --locks times, with COMPARE AND WRITE and with SCSI RESERVE/RELEASE (a second mount whose
 *    device has ATS switched off), each path alone on the LUN; p50/p99 in ms.
 *
 * The goal of the issue: the file system costs under 30%, i.e. guest/raw >= 0.70; vmfs/raw
 * tells how much of a gap is the file system and how much the VM's disk path above it. The
 * benchmark only prints and writes <out>/datastore.json; nothing here asserts a timing.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import Table from 'cli-table3';
import { diskioStatus, type DiskioPattern } from '@esxemu/guest';
import { MachineMemory, Vmkernel, VmfsDiskBackend, vmfs } from '@esxemu/host';
import { IscsiInitiator } from '@esxemu/iscsi';
import { silentLogger, sleep, type VmConfig } from '@esxemu/shared';
import { initiatorLoad } from '../peers/esxemu-initiator-load.js';
import { startEsxemuTarget, type EsxemuTarget } from '../peers/esxemu-target.js';
import type { IoResult } from '../peers/libiscsi-tools.js';

const MiB = 1024 * 1024;
const EXTENT = 'bench/bench-flat.vmdk';
/** LUN space for VMFS metadata and the extent's pointer block, beyond the disk itself. */
const METADATA_MIB = 16;

interface Workload {
  name: string;
  pattern: DiskioPattern;
  blockKiB: number;
  depth: number;
}

const WORKLOADS: Workload[] = [
  { name: '64 KiB seq read QD8', pattern: 'seqread', blockKiB: 64, depth: 8 },
  { name: '64 KiB seq write QD8', pattern: 'seqwrite', blockKiB: 64, depth: 8 },
  { name: '4 KiB rand read QD32', pattern: 'randread', blockKiB: 4, depth: 32 },
  { name: '4 KiB rand write QD32', pattern: 'randwrite', blockKiB: 4, depth: 32 },
];

interface Params {
  rounds: number;
  seconds: number;
  size: number;
  locks: number;
  out: string;
}

interface LockLatency {
  path: 'ATS' | 'reservations';
  iterations: number;
  acquireMs: { p50: number; p99: number; max: number };
  releaseMs: { p50: number; p99: number; max: number };
  /** Atomic updates as the mount counted them: proof of the path taken. */
  atomic: vmfs.AtomicStats;
}

const say = (msg: string): void => void process.stderr.write(`${msg}\n`);

function percentiles(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1]! };
}

async function rawPhase(target: EsxemuTarget, p: Params): Promise<Record<string, IoResult>> {
  const sizeBytes = p.size * MiB;
  say(`raw: writing the ${p.size} MiB region once...`);
  await initiatorLoad(target.url, { op: 'write', bytes: MiB, depth: 4, random: false, count: p.size, sizeBytes });
  const out: Record<string, IoResult> = {};
  for (const w of WORKLOADS) {
    say(`raw: ${w.name} for ${p.seconds} s...`);
    out[w.name] = await initiatorLoad(target.url, { op: w.pattern.endsWith('write') ? 'write' : 'read', bytes: w.blockKiB * 1024, depth: w.depth, random: w.pattern.startsWith('rand'), seconds: p.seconds, sizeBytes });
  }
  return out;
}

async function connect(target: EsxemuTarget, name: string, ats: boolean): Promise<{ init: IscsiInitiator; dev: vmfs.IscsiBlockDevice }> {
  const init = await IscsiInitiator.connect({ portal: target.portal, targetName: target.targetName, initiatorName: `iqn.2026-11.io.esxemu:${name}`, queueDepth: 64, logger: silentLogger() });
  try {
    return { init, dev: await vmfs.IscsiBlockDevice.open(init, { lun: target.lun, ats, name }) };
  } catch (err) {
    await init.close().catch(() => undefined);
    throw err;
  }
}

/** The workloads on the open extent itself: `depth` calls in flight for `seconds`. */
async function filePhase(f: vmfs.VmfsFile, p: Params): Promise<Record<string, IoResult>> {
  const out: Record<string, IoResult> = {};
  for (const w of WORKLOADS) {
    say(`vmfs file: ${w.name} for ${p.seconds} s...`);
    const bytes = w.blockKiB * 1024;
    const slots = Math.floor((p.size * MiB) / bytes);
    const data = Buffer.alloc(bytes, 0xa5);
    let seq = 0;
    let x = 2463534242;
    const slot = (): number => {
      if (w.pattern.startsWith('seq')) return seq++ % slots;
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % slots;
    };
    let done = 0;
    const t0 = performance.now();
    const end = t0 + p.seconds * 1000;
    const write = w.pattern.endsWith('write');
    await Promise.all(
      Array.from({ length: w.depth }, async () => {
        for (; performance.now() < end; done++) await (write ? f.write(slot() * bytes, data) : f.read(slot() * bytes, bytes));
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    out[w.name] = { iops: done / seconds, mbPerS: (done * bytes) / seconds / 1e6, seconds };
  }
  return out;
}

/** One diskio VM per workload on the VMFS file; ops and KiB over the window after a warm-up. */
async function guestPhase(fs: vmfs.Vmfs, p: Params): Promise<Record<string, IoResult & { errors: number }>> {
  const k = new Vmkernel({ cpuCores: 2, cpuMhz: 2000, machine: MachineMemory.create(64), logger: silentLogger(), sampleIntervalMs: 1000, openDisk: (c) => VmfsDiskBackend.open(fs, EXTENT, c.diskMiB! * MiB) });
  const out: Record<string, IoResult & { errors: number }> = {};
  const warmupMs = Math.min(2000, Math.max(500, (p.seconds * 1000) / 4));
  try {
    for (const [i, w] of WORKLOADS.entries()) {
      say(`guest: ${w.name}: ${warmupMs} ms warm-up, then ${p.seconds} s...`);
      const id = `dio${i}`;
      const cfg: VmConfig = { id, name: id, memoryMiB: 4, vcpus: 1, workload: { kind: 'diskio', pattern: w.pattern, blockKiB: w.blockKiB, queueDepth: w.depth }, seed: 1000 + i, ip: `127.77.252.${i + 1}`, diskMiB: p.size };
      await k.powerOn(cfg);
      try {
        const vm = k.get(id);
        await sleep(warmupMs);
        const s0 = diskioStatus(vm.regs);
        const t0 = performance.now();
        await sleep(p.seconds * 1000);
        const s1 = diskioStatus(vm.regs);
        const seconds = (performance.now() - t0) / 1000;
        out[w.name] = { iops: (s1.ops - s0.ops) / seconds, mbPerS: ((s1.kib - s0.kib) * 1024) / seconds / 1e6, seconds, errors: s1.errors };
      } finally {
        await k.powerOff(id);
      }
    }
  } finally {
    await k.close();
  }
  return out;
}

async function lockPhase(fs: vmfs.Vmfs, path: LockLatency['path'], n: number): Promise<LockLatency> {
  const file = `bench/lock-${path === 'ATS' ? 'ats' : 'rsv'}`;
  await fs.writeFile(file, Buffer.from('lock'));
  const before = fs.atomicStats();
  const acquire: number[] = [];
  const release: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const f = await fs.open(file, 'exclusive');
    const t1 = performance.now();
    await f.close();
    acquire.push(t1 - t0);
    release.push(performance.now() - t1);
  }
  const after = fs.atomicStats();
  return { path, iterations: n, acquireMs: percentiles(acquire), releaseMs: percentiles(release), atomic: { ats: after.ats - before.ats, reservations: after.reservations - before.reservations, miscompares: after.miscompares - before.miscompares } };
}

async function main(): Promise<void> {
  const p = new Command('bench-datastore')
    .description('guest disk throughput on VMFS vs the raw LUN, and VMFS lock latency (ATS vs reservations)')
    .option('--rounds <n>', 'rounds of raw / vmfs file / guest, one after the other; medians are reported', (v) => Number(v), 3)
    .option('--seconds <s>', 'seconds per measured run', (v) => Number(v), 5)
    .option('--size <MiB>', 'guest disk size (and the raw region)', (v) => Number(v), 256)
    .option('--locks <n>', 'lock acquire/release iterations per path', (v) => Number(v), 200)
    .option('--out <dir>', 'where the JSON goes', 'bench-results')
    .parse()
    .opts<Params>();
  if (!(Number.isInteger(p.rounds) && p.rounds >= 1 && p.rounds <= 20 && Number.isInteger(p.seconds) && p.seconds >= 1 && p.seconds <= 120 && Number.isInteger(p.size) && p.size >= 16 && p.size <= 4096 && Number.isInteger(p.locks) && p.locks >= 10 && p.locks <= 100_000)) {
    process.stderr.write('bench-datastore: INVALID_ARGUMENT: rounds 1-20, seconds 1-120, size 16-4096, locks 10-100000 (integers)\n');
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'esxemu-bench-ds-'));
  let target: EsxemuTarget | null = null;
  const closers: (() => Promise<void>)[] = [];
  const rawRounds: Record<string, IoResult>[] = [];
  const fileRounds: Record<string, IoResult>[] = [];
  const guestRounds: Record<string, IoResult & { errors: number }>[] = [];
  const locks: LockLatency[] = [];
  try {
    target = await startEsxemuTarget({ dir, sizeMiB: p.size + METADATA_MIB });
    // Rounds of the three phases one after the other, so that a slow moment of the machine
    // falls on one round of every phase rather than on one phase; medians are reported.
    for (let round = 1; round <= p.rounds; round++) {
      say(`round ${round}/${p.rounds}`);
      rawRounds.push(await rawPhase(target, p));
      say('guest: mkfs, mount, create and inflate the disk...');
      const host = await connect(target, 'bench-host', true);
      try {
        await vmfs.mkfs(host.dev, { label: 'bench', force: true }); // the raw phase left data in sector 0
        const fsRound = await vmfs.mount(host.dev, { hostId: 'auto', hostName: 'bench-host' });
        try {
          await fsRound.mkdir('bench');
          const disk = await fsRound.open(EXTENT, 'exclusive', { create: true });
          await disk.truncate(p.size * MiB);
          await disk.inflate();
          try {
            fileRounds.push(await filePhase(disk, p));
          } finally {
            await disk.close();
          }
          guestRounds.push(await guestPhase(fsRound, p));
        } finally {
          await fsRound.unmount();
        }
      } finally {
        await host.init.close();
      }
    }

    const host = await connect(target, 'bench-host', true);
    closers.push(() => host.init.close());
    const fs = await vmfs.mount(host.dev, { hostId: 'auto', hostName: 'bench-host' });
    closers.unshift(() => fs.unmount());
    say(`locks: ${p.locks} x open/close with COMPARE AND WRITE...`);
    locks.push(await lockPhase(fs, 'ATS', p.locks));
    await fs.unmount(); // each lock path alone on the LUN
    say(`locks: ${p.locks} x open/close with RESERVE/RELEASE...`);
    const rsv = await connect(target, 'bench-host-rsv', false);
    closers.push(() => rsv.init.close());
    const fsR = await vmfs.mount(rsv.dev, { hostId: 'auto', hostName: 'bench-host-rsv' });
    closers.unshift(() => fsR.unmount());
    locks.push(await lockPhase(fsR, 'reservations', p.locks));
    say('fsck...');
    await fsR.unmount();
    const report = await vmfs.fsck(rsv.dev);
    if (!report.clean) say(`fsck found errors after the run: ${JSON.stringify(report.errors.slice(0, 3))}`);
  } finally {
    for (const c of closers) await c().catch(() => undefined);
    await target?.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const table = new Table({ head: ['workload', 'raw MB/s', 'raw IOPS', 'vmfs file MB/s', 'vmfs file IOPS', 'guest MB/s', 'guest IOPS', 'vmfs / raw', 'guest / raw'], style: { head: [], border: [] } });
  const summary = WORKLOADS.map((w) => {
    const r = medianOf(rawRounds.map((x) => x[w.name]!));
    const v = medianOf(fileRounds.map((x) => x[w.name]!));
    const g = medianOf(guestRounds.map((x) => x[w.name]!));
    const ratio = g.iops / r.iops;
    table.push([w.name, r.mbPerS.toFixed(1), r.iops.toFixed(0), v.mbPerS.toFixed(1), v.iops.toFixed(0), g.mbPerS.toFixed(1), g.iops.toFixed(0), (v.iops / r.iops).toFixed(2), `${ratio.toFixed(2)}${g.errors ? ` (${g.errors} errors)` : ''}`]);
    return { workload: w.name, raw: r, vmfsFile: v, guest: g, vmfsRatio: v.iops / r.iops, ratio, goalMet: ratio >= 0.7 };
  });
  const lockTable = new Table({ head: ['lock path', 'acquire p50 ms', 'acquire p99 ms', 'release p50 ms', 'release p99 ms', 'atomic updates (ATS / reservations)'], style: { head: [], border: [] } });
  for (const l of locks) lockTable.push([l.path, l.acquireMs.p50.toFixed(2), l.acquireMs.p99.toFixed(2), l.releaseMs.p50.toFixed(2), l.releaseMs.p99.toFixed(2), `${l.atomic.ats} / ${l.atomic.reservations}`]);
  process.stdout.write(table.toString() + '\n' + lockTable.toString() + '\n');
  mkdirSync(p.out, { recursive: true });
  const file = join(p.out, 'datastore.json');
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), params: p, goal: 'guest / raw >= 0.70', summary, locks, rounds: { raw: rawRounds, vmfsFile: fileRounds, guest: guestRounds } }, null, 2) + '\n');
  process.stdout.write(`medians of ${p.rounds} rounds, ${p.seconds} s per run, ${p.size} MiB disk, ${p.locks} lock iterations per path; wrote ${file}\n`);
}

/** The result of the median round, by IOPS. */
function medianOf<T extends IoResult>(xs: T[]): T {
  return [...xs].sort((a, b) => a.iops - b.iops)[Math.floor((xs.length - 1) / 2)]!;
}

await main();
