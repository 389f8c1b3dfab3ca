/**
 * libiscsi's conformance suite (`iscsi-test-cu`, Debian package libiscsi-bin) as the judge of
 * an iSCSI target: run it with --dataloss in XML mode and read CUnit's results file into one
 * record per test (a test with any failed assertion failed).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { XMLParser } from 'fast-xml-parser';

export const ISCSI_TEST_CU = '/usr/bin/iscsi-test-cu';

export interface ConformanceTest {
  suite: string;
  test: string;
  passed: boolean;
  /** Failed assertions: file:line condition. */
  failures: string[];
}

export interface ConformanceResult {
  url: string;
  total: number;
  passed: number;
  failed: number;
  elapsedMs: number;
  tests: ConformanceTest[];
}

export function conformanceSuiteAvailable(): boolean {
  return existsSync(ISCSI_TEST_CU);
}

const asArray = <T>(x: T | T[] | undefined): T[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

export function parseCunitResults(xml: string): ConformanceTest[] {
  const doc = new XMLParser({ trimValues: true, parseTagValue: false }).parse(xml);
  const suites = asArray(doc?.CUNIT_TEST_RUN_REPORT?.CUNIT_RESULT_LISTING?.CUNIT_RUN_SUITE);
  const byKey = new Map<string, ConformanceTest>();
  for (const s of suites) {
    const body = s.CUNIT_RUN_SUITE_SUCCESS ?? s.CUNIT_RUN_SUITE_FAILURE;
    if (!body) continue;
    const suite = String(body.SUITE_NAME ?? '?').trim();
    for (const rec of asArray<Record<string, unknown>>(body.CUNIT_RUN_TEST_RECORD)) {
      for (const ok of asArray<Record<string, unknown>>(rec['CUNIT_RUN_TEST_SUCCESS'] as never)) {
        const test = String(ok['TEST_NAME']).trim();
        const key = `${suite}.${test}`;
        if (!byKey.has(key)) byKey.set(key, { suite, test, passed: true, failures: [] });
      }
      for (const bad of asArray<Record<string, unknown>>(rec['CUNIT_RUN_TEST_FAILURE'] as never)) {
        const test = String(bad['TEST_NAME']).trim();
        const key = `${suite}.${test}`;
        const entry = byKey.get(key) ?? { suite, test, passed: false, failures: [] };
        entry.passed = false;
        entry.failures.push(`${String(bad['FILE_NAME']).trim()}:${String(bad['LINE_NUMBER']).trim()} ${String(bad['CONDITION']).trim()}`);
        byKey.set(key, entry);
      }
    }
  }
  return [...byKey.values()];
}

/** Run the whole suite against `url` (iscsi://host:port/iqn/lun), bounded by timeoutMs. */
export async function runConformance(url: string, opts: { timeoutMs?: number; initiator1?: string; initiator2?: string } = {}): Promise<ConformanceResult> {
  const cwd = mkdtempSync(join(tmpdir(), 'esxemu-cu-'));
  const t0 = performance.now();
  try {
    const args = ['--dataloss', '-x'];
    if (opts.initiator1) args.push('-i', opts.initiator1);
    if (opts.initiator2) args.push('-I', opts.initiator2);
    args.push(url);
    await execa(ISCSI_TEST_CU, args, { cwd, reject: false, timeout: opts.timeoutMs ?? 600_000, stdin: 'ignore' });
    const xmlFile = join(cwd, 'CUnitAutomated-Results.xml');
    const tests = existsSync(xmlFile) ? parseCunitResults(readFileSync(xmlFile, 'utf8')) : [];
    const passed = tests.filter((x) => x.passed).length;
    return { url, total: tests.length, passed, failed: tests.length - passed, elapsedMs: performance.now() - t0, tests };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}
