/**
 * Benchmark: esxemu's iSCSI target against Linux tgt on loopback, both driven by the same
 * third-party initiators in the same run, alternating targets round by round:
 *   - 64 KiB sequential reads, queue depth 8        (libiscsi iscsi-perf)
 *   - 4 KiB random reads, queue depth 32            (libiscsi iscsi-perf)
 *   - 64 KiB sequential writes, queue depth 8       (qemu-img bench through QEMU's libiscsi driver)
 *   - 4 KiB sequential writes, queue depth 32       (qemu-img bench)
 * and the same workloads through the hosts' own initiator (esxemu's software iSCSI adapter),
 * against both targets.
 * Both LUNs are 256 MiB files, filled first (so reads hit written data, not holes).
 *
 *   node scripts/dist/src/bench/iscsi.js [--rounds 3] [--seconds 5] [--size 256] [--out bench-results]
 *
 * Prints MB/s and IOPS side by side with the ratio to tgt, and writes <out>/iscsi.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import Table from 'cli-table3';
import { iscsiPerf, qemuImgAvailable, qemuImgWrite, type IoResult } from '../peers/libiscsi-tools.js';
import { initiatorLoad } from '../peers/esxemu-initiator-load.js';
import { startEsxemuTarget } from '../peers/esxemu-target.js';
import { freePort } from '../peers/free-port.js';
import { startTgt, tgtAvailable } from '../peers/tgt.js';

interface Workload {
  name: string;
  tool: string;
  run(url: string, seconds: number, sizeMiB: number): Promise<IoResult>;
  /** The same workload through the hosts' own initiator. */
  own(url: string, seconds: number, sizeMiB: number): Promise<IoResult>;
}

const MiB = 1024 * 1024;

const WORKLOADS: Workload[] = [
  {
    name: '64 KiB seq read QD8',
    tool: 'iscsi-perf',
    run: (url, s) => iscsiPerf(url, { blocks: 128, depth: 8, seconds: s, random: false }),
    own: (url, s, size) => initiatorLoad(url, { op: 'read', bytes: 65536, depth: 8, random: false, seconds: s, sizeBytes: size * MiB }),
  },
  {
    name: '4 KiB rand read QD32',
    tool: 'iscsi-perf',
    run: (url, s) => iscsiPerf(url, { blocks: 8, depth: 32, seconds: s, random: true }),
    own: (url, s, size) => initiatorLoad(url, { op: 'read', bytes: 4096, depth: 32, random: true, seconds: s, sizeBytes: size * MiB }),
  },
  {
    name: '64 KiB seq write QD8',
    tool: 'qemu-img bench',
    run: (url, _s, size) => qemuImgWrite(url, { bytes: 65536, depth: 8, count: (size * MiB) / 65536 }),
    own: (url, _s, size) => initiatorLoad(url, { op: 'write', bytes: 65536, depth: 8, random: false, count: (size * MiB) / 65536, sizeBytes: size * MiB }),
  },
  {
    name: '4 KiB seq write QD32',
    tool: 'qemu-img bench',
    run: (url, _s, size) => qemuImgWrite(url, { bytes: 4096, depth: 32, count: Math.min(50_000, (size * MiB) / 4096) }),
    own: (url, _s, size) => initiatorLoad(url, { op: 'write', bytes: 4096, depth: 32, random: false, count: Math.min(50_000, (size * MiB) / 4096), sizeBytes: size * MiB }),
  },
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

async function main() {
  const o = new Command('bench-iscsi')
    .description('esxemu iSCSI target vs tgt, same initiators, same run')
    .option('--rounds <n>', 'rounds per workload (targets alternate)', (v) => Number(v), 3)
    .option('--seconds <s>', 'seconds per read run', (v) => Number(v), 5)
    .option('--size <MiB>', 'LUN size', (v) => Number(v), 256)
    .option('--out <dir>', 'where the JSON goes', 'bench-results')
    .parse()
    .opts<{ rounds: number; seconds: number; size: number; out: string }>();
  if (!(o.rounds >= 1 && o.rounds <= 20 && o.seconds >= 1 && o.seconds <= 120 && o.size >= 16 && o.size <= 4096)) {
    process.stderr.write('bench-iscsi: INVALID_ARGUMENT: rounds 1-20, seconds 1-120, size 16-4096\n');
    process.exit(2);
  }
  if (!tgtAvailable()) {
    process.stderr.write('bench-iscsi: NOT_FOUND: tgt is not installed (apt-get install tgt)\n');
    process.exit(2);
  }
  const workloads = qemuImgAvailable() ? WORKLOADS : WORKLOADS.filter((w) => w.tool !== 'qemu-img bench');
  const dir = mkdtempSync(join(tmpdir(), 'esxemu-bench-iscsi-'));
  mkdirSync(join(dir, 'tgt'));
  mkdirSync(join(dir, 'esxemu'));
  const results: Record<string, Record<string, IoResult[]>> = {};
  let tgt: Awaited<ReturnType<typeof startTgt>> | null = null;
  let ours: Awaited<ReturnType<typeof startEsxemuTarget>> | null = null;
  try {
    // Inside the try: if either target fails to start, the other is stopped and the dir removed.
    tgt = await startTgt({ dir: join(dir, 'tgt'), port: await freePort(), sizeMiB: o.size });
    ours = await startEsxemuTarget({ dir: join(dir, 'esxemu'), sizeMiB: o.size });
    const targets = [
      { name: 'tgt', url: tgt.url },
      { name: 'esxemu', url: ours.url },
    ];
    if (qemuImgAvailable()) {
      for (const t of targets) {
        process.stderr.write(`filling ${t.name} LUN (${o.size} MiB)...\n`);
        await qemuImgWrite(t.url, { bytes: 1024 * 1024, depth: 4, count: o.size, pattern: 0xa5 });
      }
    }
    for (const w of workloads) {
      results[w.name] = { tgt: [], esxemu: [], 'own->tgt': [], 'own->esxemu': [] };
      for (let r = 0; r < o.rounds; r++) {
        const order = r % 2 === 0 ? targets : [...targets].reverse();
        for (const t of order) {
          process.stderr.write(`${w.name}: ${t.name} round ${r + 1}/${o.rounds}...\n`);
          results[w.name]![t.name]!.push(await w.run(t.url, o.seconds, o.size));
          results[w.name]![`own->${t.name}`]!.push(await w.own(t.url, o.seconds, o.size));
        }
      }
    }
  } finally {
    await ours?.stop();
    await tgt?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const table = new Table({
    head: ['workload', 'initiator', 'tgt MB/s', 'tgt IOPS', 'esxemu MB/s', 'esxemu IOPS', 'esxemu / tgt', 'own initiator -> tgt MB/s', 'own -> esxemu MB/s'],
    style: { head: [], border: [] },
  });
  const summary = workloads.map((w) => {
    const med = (k: string) => {
      const xs = results[w.name]![k]!;
      return { mbPerS: median(xs.map((x) => x.mbPerS)), iops: median(xs.map((x) => x.iops)) };
    };
    const row = { workload: w.name, tool: w.tool, tgt: med('tgt'), esxemu: med('esxemu'), ownToTgt: med('own->tgt'), ownToEsxemu: med('own->esxemu'), ratio: 0 };
    row.ratio = row.esxemu.iops / row.tgt.iops;
    table.push([
      w.name,
      w.tool,
      row.tgt.mbPerS.toFixed(0),
      row.tgt.iops.toFixed(0),
      row.esxemu.mbPerS.toFixed(0),
      row.esxemu.iops.toFixed(0),
      row.ratio.toFixed(2),
      `${row.ownToTgt.mbPerS.toFixed(0)} (${row.ownToTgt.iops.toFixed(0)} IOPS)`,
      `${row.ownToEsxemu.mbPerS.toFixed(0)} (${row.ownToEsxemu.iops.toFixed(0)} IOPS)`,
    ]);
    return row;
  });
  process.stdout.write(table.toString() + '\n');
  mkdirSync(o.out, { recursive: true });
  const file = join(o.out, 'iscsi.json');
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), params: o, summary, raw: results }, null, 2) + '\n');
  process.stdout.write(`medians of ${o.rounds} alternating rounds; wrote ${file}\n`);
}

await main();
