import t from 'tap';
import { PAGE_SIZE } from '@esxemu/shared';
import {
  bootGuest,
  memstress,
  MEMSTRESS_CYCLES_PER_PAGE,
  MEMSTRESS_FILL_CYCLES_PER_PAGE,
  MEMSTRESS_FILL_DEMAND_MHZ,
  MEMSTRESS_FILL_PAGES_PER_STEP,
  R_MS_FILL_PAGES,
  R_MS_WS_PAGES,
  stepGuest,
} from '../src/index.js';
import { copyPresentPages, makeGuest, type TestGuest } from './helpers/simple-test-backing.js';

const GUEST_PAGES = 1024; // 4 MiB
const SPEC = { kind: 'memstress', workingSetMiB: 2, dirtyPagesPerS: 10_000 } as const; // 512 pages

function run(g: TestGuest, steps: number): void {
  for (let i = 0; i < steps; i++) stepGuest(g.ctx, memstress);
}

function booted(seed: number): TestGuest {
  const g = makeGuest(GUEST_PAGES);
  bootGuest(g.ctx, memstress, SPEC, seed);
  return g;
}

t.test('boot stores the parameters in registers; the fill comes first, 256 pages a step', async (t) => {
  const g = booted(1);
  t.equal(g.regs.get(R_MS_WS_PAGES), 512);
  t.equal(g.regs.get(R_MS_FILL_PAGES), 0);
  t.equal(g.backing.allocated, 0, 'boot touches no memory');
  t.equal(memstress.demandMhz(g.ctx), MEMSTRESS_FILL_DEMAND_MHZ, 'demand while filling');
  t.equal(stepGuest(g.ctx, memstress), MEMSTRESS_FILL_PAGES_PER_STEP * MEMSTRESS_FILL_CYCLES_PER_PAGE);
  t.equal(g.regs.get(R_MS_FILL_PAGES), 256);
  t.equal(g.backing.allocated, 256);
  stepGuest(g.ctx, memstress);
  t.equal(g.regs.get(R_MS_FILL_PAGES), 512);
  t.equal(g.backing.allocated, 512, 'exactly the working set is filled');
  const page = g.mem.read(100 * PAGE_SIZE, PAGE_SIZE);
  t.ok(page.filter((b) => b === 0).length < 64, 'filled pages hold PRNG data, not zeros');
  t.equal(memstress.demandMhz(g.ctx), 300, '10,000 pages/s x 30,000 cycles = 300 MHz');
  t.equal(stepGuest(g.ctx, memstress), MEMSTRESS_CYCLES_PER_PAGE);
  run(g, 500);
  t.equal(g.backing.allocated, 512, 'dirty steps stay in the working set');
});

t.test('a working set that does not fit the guest is refused at boot', async (t) => {
  const g = makeGuest(256); // 1 MiB
  t.throws(() => bootGuest(g.ctx, memstress, { kind: 'memstress', workingSetMiB: 2, dirtyPagesPerS: 10 }, 1), {
    code: 'INVALID_ARGUMENT',
    message: /does not fit/,
  });
  t.throws(() => bootGuest(g.ctx, memstress, { kind: 'memstress', workingSetMiB: 0, dirtyPagesPerS: 10 }, 1), { code: 'INVALID_ARGUMENT' });
  t.throws(() => bootGuest(g.ctx, memstress, { kind: 'memstress', workingSetMiB: 1, dirtyPagesPerS: -1 }, 1), { code: 'INVALID_ARGUMENT' });
  bootGuest(g.ctx, memstress, { kind: 'memstress', workingSetMiB: 1, dirtyPagesPerS: 0 }, 1);
  t.equal(g.regs.get(R_MS_WS_PAGES), 256, 'a working set of the whole guest fits');
  run(g, 3);
  t.equal(memstress.demandMhz(g.ctx), 0, 'no dirty rate, no demand once filled');
});

t.test('K steps from the same seed give the same memory; another seed another', async (t) => {
  const K = 700;
  const a = booted(42);
  const b = booted(42);
  const c = booted(43);
  run(a, K);
  run(b, K);
  run(c, K);
  t.equal(a.mem.hash(), b.mem.hash());
  t.same(a.regs.save(), b.regs.save(), 'and the same registers');
  t.not(a.mem.hash(), c.mem.hash());
});

t.test('stopped mid-run and resumed in fresh memory and registers, it reaches the same state', async (t) => {
  const K1 = 300;
  const K2 = 400;
  const reference = booted(7);
  run(reference, K1 + K2);

  const src = booted(7);
  run(src, K1);
  const dst = makeGuest(GUEST_PAGES);
  t.equal(copyPresentPages(src, dst), 512);
  dst.regs.restore(src.regs.save());
  run(dst, K2);
  t.equal(dst.mem.hash(), reference.mem.hash(), 'resumed run == uninterrupted run');
  t.same(dst.regs.save(), reference.regs.save());
});

t.test('pre-copy with dirty logging while the guest runs, then stop and copy: same state', async (t) => {
  // What vMotion relies on: a full copy while the guest runs, rounds of the pages logged dirty
  // meanwhile, a last round with the vCPU stopped, then the registers.
  const src = booted(99);
  run(src, 2 + 100);
  const dst = makeGuest(GUEST_PAGES);
  src.backing.setDirtyLogging(true);
  // Round 0 is copied in slices with guest steps in between, as a running guest would interleave.
  for (let gpn = 0; gpn < GUEST_PAGES; gpn += 64) {
    copyPresentPages(src, dst, Array.from({ length: 64 }, (_, i) => gpn + i));
    run(src, 10);
  }
  run(src, 40);
  const round1 = src.backing.dirty.harvest();
  t.ok(round1.length > 50, `round 1 resends ${round1.length} pages`);
  copyPresentPages(src, dst, round1);
  run(src, 40);
  // Switchover: the vCPU is stopped; last dirty pages and the registers.
  const last = src.backing.dirty.harvest();
  t.ok(last.length > 0 && last.length <= 40, `last round ${last.length} pages`);
  copyPresentPages(src, dst, last);
  dst.regs.restore(src.regs.save());
  t.equal(dst.mem.hash(), src.mem.hash(), 'destination == source at switchover');
  t.equal(dst.regs.steps, 102 + 160 + 40 + 40);
  run(dst, 120);
  const reference = booted(99);
  run(reference, dst.regs.steps);
  t.equal(dst.mem.hash(), reference.mem.hash(), 'and it goes on as if never moved');
});
