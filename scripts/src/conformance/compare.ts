/**
 * Run libiscsi's conformance suite against esxemu's target and against tgt in the same run, and
 * compare test by test.
 *
 *   node scripts/dist/src/conformance/compare.js [--out bench-results] [--size 256]
 *
 * Prints the totals and every test whose outcome differs or that failed, writes
 * <out>/iscsi-conformance.json, and exits 1 if esxemu passes fewer tests than tgt.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import Table from 'cli-table3';
import { startEsxemuTarget } from '../peers/esxemu-target.js';
import { freePort } from '../peers/free-port.js';
import { startTgt, tgtAvailable } from '../peers/tgt.js';
import { conformanceSuiteAvailable, runConformance, type ConformanceResult } from './iscsi-test-cu.js';

export interface Comparison {
  esxemu: ConformanceResult;
  tgt: ConformanceResult | null;
  /** tests failed by esxemu, with whether tgt passed them */
  esxemuFailures: { name: string; tgtPassed: boolean | null; failures: string[] }[];
}

export async function compareConformance(sizeMiB = 256): Promise<Comparison> {
  const dir = mkdtempSync(join(tmpdir(), 'esxemu-conformance-'));
  try {
    mkdirSync(join(dir, 'esxemu'));
    const ours = await startEsxemuTarget({ dir: join(dir, 'esxemu'), sizeMiB });
    let esxemu: ConformanceResult;
    try {
      esxemu = await runConformance(ours.url);
    } finally {
      await ours.stop();
    }
    let tgt: ConformanceResult | null = null;
    if (tgtAvailable()) {
      mkdirSync(join(dir, 'tgt'));
      const peer = await startTgt({ dir: join(dir, 'tgt'), port: await freePort(), sizeMiB });
      try {
        tgt = await runConformance(peer.url);
      } finally {
        await peer.stop();
      }
    }
    const tgtByName = new Map((tgt?.tests ?? []).map((x) => [`${x.suite}.${x.test}`, x.passed]));
    const esxemuFailures = esxemu.tests
      .filter((x) => !x.passed)
      .map((x) => ({ name: `${x.suite}.${x.test}`, tgtPassed: tgtByName.get(`${x.suite}.${x.test}`) ?? null, failures: x.failures }));
    return { esxemu, tgt, esxemuFailures };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const o = new Command('iscsi-conformance')
    .option('--out <dir>', 'where the JSON goes', 'bench-results')
    .option('--size <MiB>', 'LUN size', (v) => Number(v), 256)
    .parse()
    .opts<{ out: string; size: number }>();
  if (!conformanceSuiteAvailable()) {
    process.stderr.write('iscsi-conformance: NOT_FOUND: iscsi-test-cu is not installed (apt-get install libiscsi-bin)\n');
    process.exit(2);
  }
  const c = await compareConformance(o.size);
  const t = new Table({ head: ['target', 'tests', 'passed', 'failed', 'seconds'], style: { head: [], border: [] } });
  t.push(['esxemu', c.esxemu.total, c.esxemu.passed, c.esxemu.failed, (c.esxemu.elapsedMs / 1000).toFixed(1)]);
  if (c.tgt) t.push(['tgt 1.0.85', c.tgt.total, c.tgt.passed, c.tgt.failed, (c.tgt.elapsedMs / 1000).toFixed(1)]);
  process.stdout.write(t.toString() + '\n');
  for (const f of c.esxemuFailures) process.stdout.write(`esxemu FAILED ${f.name} (tgt: ${f.tgtPassed === null ? 'n/a' : f.tgtPassed ? 'passed' : 'failed'}): ${f.failures[0] ?? ''}\n`);
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'iscsi-conformance.json'), JSON.stringify(c, null, 2) + '\n');
  if (c.tgt && c.esxemu.passed < c.tgt.passed) process.exitCode = 1;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
