/**
 * Benchmark: how long a local cluster takes to come up from nothing, and what each host and
 * each VM costs in real memory. Compared within the same run against a bare Node.js process
 * (the floor every esxemu process pays).
 *
 *   node scripts/dist/src/bench/coldstart.js [--runs 3] [--hosts 3] [--vms-per-host 2] [--out bench-results]
 *
 * Prints a table and writes <out>/coldstart.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Command } from 'commander';
import Table from 'cli-table3';
import type { HostInfo, TaskInfo, VmInfo } from '@esxemu/shared';
import { ApiClient } from '../client/api-client.js';
import { clusterDown, clusterUp } from '../cluster/launcher.js';
import { clusterLayout } from '../cluster/layout.js';
import { procMem } from './proc-mem.js';

interface Opts {
  runs: number;
  hosts: number;
  vmsPerHost: number;
  out: string;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

async function bareNode(): Promise<{ startMs: number; rssMiB: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, ['-e', 'process.stdout.write("ready\\n"); setTimeout(() => {}, 30000)'], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('bare node did not start in 10 s')), 10_000);
    child.stdout.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const startMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 300));
  const mem = procMem(child.pid!);
  child.kill('SIGKILL');
  return { startMs, rssMiB: mem?.rssMiB ?? NaN };
}

async function oneRun(o: Opts, run: number, measureVms: boolean) {
  const home = mkdtempSync(join(tmpdir(), 'esxemu-bench-'));
  const phases: Record<string, number> = {};
  const t0 = performance.now();
  let last = t0;
  try {
    const state = await clusterUp({
      home,
      hosts: o.hosts,
      vcenterPort: 0,
      iscsiPort: 0,
      migrationPortBase: 0,
      listenHost: '127.0.0.1',
      hostMemoryMiB: 1024,
      hostCpuCores: 4,
      hostCpuMhz: 2000,
      vmNetwork: `127.${150 + run}.0.0/16`,
      heartbeatIntervalMs: 250,
      statsIntervalMs: 500,
      logLevel: 'info',
      readyTimeoutMs: 60_000,
      onProgress: (m) => {
        const now = performance.now();
        phases[m] = now - last;
        last = now;
      },
    });
    const token = readFileSync(clusterLayout(home).tokenFile, 'utf8').trim();
    const api = new ApiClient({ url: state.vcenterUrl, token });
    for (const deadline = Date.now() + 30_000; ; ) {
      const hs: HostInfo[] = await api.hosts();
      if (hs.filter((h) => h.connectionState === 'connected').length === o.hosts) break;
      if (Date.now() > deadline) throw new Error('hosts did not register within 30 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    const coldStartMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
    const mem = Object.fromEntries(state.processes.map((p) => [p.name, procMem(p.pid)]));
    let vms: { perVmRssMiB: number; perVmGuestMiB: number; perVmOverheadMiB: number; vmCount: number; powerOnMs: number } | null = null;
    if (measureVms && o.vmsPerHost > 0) {
      const hostProcs = state.processes.filter((p) => p.role === 'host');
      const before = hostProcs.map((p) => procMem(p.pid)?.rssMiB ?? NaN);
      const powerOnTimes: number[] = [];
      for (const [hi, hp] of hostProcs.entries()) {
        for (let i = 0; i < o.vmsPerHost; i++) {
          const name = `vm-${hi}-${i}`;
          await api.createVm({ name, memoryMiB: 64, workload: { kind: 'memstress', workingSetMiB: 16, dirtyPagesPerS: 200 }, seed: i });
          const ts = performance.now();
          const task: TaskInfo = await api.powerOn(name, hp.name);
          const done = await api.waitTask(task.id, 60_000);
          if (done.state !== 'success') throw new Error(`power on ${name}: ${done.error?.code} ${done.error?.message}`);
          powerOnTimes.push(performance.now() - ts);
        }
      }
      // Let memstress fill its working set, then read what the VMs consume.
      for (const deadline = Date.now() + 30_000; ; ) {
        const list: VmInfo[] = await api.vms();
        if (list.every((v) => (v.stats?.memConsumedMiB ?? 0) >= 16)) break;
        if (Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      const after = hostProcs.map((p) => procMem(p.pid)?.rssMiB ?? NaN);
      const list: VmInfo[] = await api.vms();
      const guest = list.reduce((s, v) => s + (v.stats?.memConsumedMiB ?? 0), 0);
      const n = hostProcs.length * o.vmsPerHost;
      const delta = after.reduce((s, a, i) => s + (a - before[i]!), 0);
      vms = { vmCount: n, perVmRssMiB: delta / n, perVmGuestMiB: guest / n, perVmOverheadMiB: (delta - guest) / n, powerOnMs: median(powerOnTimes) };
    }
    return { coldStartMs, phases, mem, vms };
  } finally {
    await clusterDown(home);
    rmSync(home, { recursive: true, force: true });
  }
}

async function main() {
  const program = new Command('bench-coldstart')
    .description('cluster cold start time and the memory each host and VM costs')
    .option('--runs <n>', 'cold starts to measure', (v) => Number(v), 3)
    .option('--hosts <n>', 'hosts per cluster', (v) => Number(v), 3)
    .option('--vms-per-host <n>', 'memstress VMs per host for the per-VM cost (last run)', (v) => Number(v), 2)
    .option('--out <dir>', 'where the JSON goes', 'bench-results')
    .parse();
  const o = program.opts<Opts>();
  if (!(o.runs >= 1 && o.runs <= 20 && o.hosts >= 1 && o.hosts <= 16 && o.vmsPerHost >= 0 && o.vmsPerHost <= 16)) {
    process.stderr.write('bench-coldstart: INVALID_ARGUMENT: runs 1-20, hosts 1-16, vms-per-host 0-16\n');
    process.exit(2);
  }
  const bare = await bareNode();
  const runs = [];
  for (let i = 0; i < o.runs; i++) {
    process.stderr.write(`run ${i + 1}/${o.runs}...\n`);
    runs.push(await oneRun(o, i, i === o.runs - 1));
  }
  const cold = runs.map((r) => r.coldStartMs);
  const lastRun = runs[runs.length - 1]!;
  const hostRss = Object.entries(lastRun.mem).filter(([n]) => n.startsWith('esx')).map(([, m]) => m?.rssMiB ?? NaN);
  const result = {
    date: new Date().toISOString(),
    machine: { node: process.version, platform: process.platform },
    params: o,
    baseline: { bareNodeStartMs: bare.startMs, bareNodeRssMiB: bare.rssMiB },
    coldStartMs: { median: median(cold), min: Math.min(...cold), max: Math.max(...cold), runs: cold },
    phasesMs: lastRun.phases,
    processRssMiB: Object.fromEntries(Object.entries(lastRun.mem).map(([n, m]) => [n, m?.rssMiB ?? null])),
    hostRssMiB: median(hostRss),
    vm: lastRun.vms,
  };
  const table = new Table({ head: ['measure', 'value', 'vs bare node'], style: { head: [], border: [] }, chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } });
  table.push(
    [`cluster cold start (${o.hosts} hosts), median of ${o.runs}`, `${result.coldStartMs.median.toFixed(0)} ms (${result.coldStartMs.min.toFixed(0)}-${result.coldStartMs.max.toFixed(0)})`, `${(result.coldStartMs.median / bare.startMs).toFixed(1)}x one node start`],
    ['bare node process start / RSS', `${bare.startMs.toFixed(0)} ms / ${bare.rssMiB.toFixed(1)} MiB`, '1.0x'],
    ...Object.entries(result.processRssMiB).map(([n, v]) => [`RSS ${n} (idle)`, `${(v ?? NaN).toFixed(1)} MiB`, `${((v ?? NaN) / bare.rssMiB).toFixed(2)}x`]),
  );
  if (result.vm) {
    table.push(
      [`per VM: host RSS growth (${result.vm.vmCount} memstress VMs, 16 MiB working set)`, `${result.vm.perVmRssMiB.toFixed(1)} MiB`, ''],
      ['per VM: guest memory consumed', `${result.vm.perVmGuestMiB.toFixed(1)} MiB`, ''],
      ['per VM: overhead (worker thread, VMM, pmap)', `${result.vm.perVmOverheadMiB.toFixed(1)} MiB`, `${(result.vm.perVmOverheadMiB / bare.rssMiB).toFixed(2)}x`],
      ['per VM: power-on task, median', `${result.vm.powerOnMs.toFixed(0)} ms`, ''],
    );
  }
  process.stdout.write(table.toString() + '\n');
  mkdirSync(o.out, { recursive: true });
  const file = join(o.out, 'coldstart.json');
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`wrote ${file}\n`);
}

await main();
