/**
 * vMotion's pre-copy decisions (convergence.ts) on measured passes: switch over within the
 * downtime budget, keep going while the dirty set shrinks, throttle a guest that outruns the
 * link (20%, then +10% each time, capped), and at the caps switch over only if the downtime
 * stays bearable, else give up so the VM stays on the source.
 */
import t from 'tap';
import { DEFAULT_CONVERGENCE, decide, initialState, type ConvergenceState, type Decision } from '../src/migration/convergence.js';

const MB = 1_000_000;
/** A pass that sent `mb` MB in `ms` ms and left `dirty` pages. */
const pass = (n: number, dirty: number, mb = 100, ms = 1000) => ({ pass: n, dirtyPages: dirty, bytesSent: mb * MB, durationMs: ms });

function run(passes: ReturnType<typeof pass>[], memoryBytes = 1024 * MB): { state: ConvergenceState; decisions: Decision[] } {
  let state = initialState(memoryBytes);
  const decisions: Decision[] = [];
  for (const p of passes) {
    const r = decide(state, p);
    state = r.state;
    decisions.push(r.decision);
  }
  return { state, decisions };
}

t.test('a guest that calms down: passes until the rest fits the budget, then switchover', (t) => {
  // 100 MB/s = 100 kB/ms: the 300 ms budget holds 30 MB, about 7,300 pages
  const { decisions } = run([pass(1, 200_000), pass(2, 50_000), pass(3, 10_000), pass(4, 5_000)]);
  t.same(decisions.map((d) => d.action), ['continue', 'continue', 'continue', 'switchover']);
  const last = decisions[3]!;
  t.ok(last.expectedDowntimeMs <= DEFAULT_CONVERGENCE.downtimeBudgetMs, `expected downtime ${last.expectedDowntimeMs.toFixed(0)} ms`);
  t.match(last.why, /within the 300 ms budget/);
  t.end();
});

t.test('a guest that outruns the link is throttled, harder each time, never past the cap', (t) => {
  const passes = Array.from({ length: 12 }, (_, i) => pass(i + 1, 20_000));
  const { decisions, state } = run(passes);
  const throttles = decisions.map((d) => (d.action === 'continue' ? d.throttlePct : -1));
  t.same(throttles, [0, 0, 20, 20, 30, 30, 40, 40, 50, 50, 60, 60], 'two stalled passes, then 20%, then +10% per two more');
  t.equal(state.throttlePct, 60);
  const many = run(Array.from({ length: 29 }, (_, i) => pass(i + 1, 20_000)), 100_000 * MB);
  t.ok(many.state.throttlePct <= DEFAULT_CONVERGENCE.throttleMaxPct, `capped at ${DEFAULT_CONVERGENCE.throttleMaxPct}%`);
  t.end();
});

t.test('at the caps: switch over if bearable, else give up', (t) => {
  const bearable = run(Array.from({ length: 30 }, (_, i) => pass(i + 1, 100, 1, 1000)), 100_000 * MB); // 1 MB/s, 100 pages: ~410 ms
  t.equal(bearable.decisions[29]!.action, 'switchover', 'pass 30 with ~410 ms expected: switch over');
  t.match(bearable.decisions[29]!.why, /30 passes/);
  const hopeless = run(Array.from({ length: 30 }, (_, i) => pass(i + 1, 200_000)), 100_000 * MB); // 8 s expected
  t.equal(hopeless.decisions[29]!.action, 'giveUp', 'pass 30 with seconds of downtime expected: give up');
  const bytesCap = run([pass(1, 50_000, 6000, 600_000), pass(2, 50_000, 6000, 600_000)], 1024 * MB); // 12 GB sent for a 1 GiB VM, 20 s expected
  t.equal(bytesCap.decisions[1]!.action, 'giveUp');
  t.match(bytesCap.decisions[1]!.why, /10x the VM's memory/);
  t.end();
});

t.test('a zero-length pass does not divide by zero', (t) => {
  const { decisions } = run([{ pass: 1, dirtyPages: 0, bytesSent: 0, durationMs: 0 }]);
  t.equal(decisions[0]!.action, 'switchover', 'nothing dirty: switch over');
  t.ok(Number.isFinite(decisions[0]!.expectedDowntimeMs));
  t.end();
});
