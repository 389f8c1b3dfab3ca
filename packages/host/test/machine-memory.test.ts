import t from 'tap';
import { Worker } from 'node:worker_threads';
import { PAGE_SIZE } from '@esxemu/shared';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';

t.setTimeout(60_000);

t.test('allocate, free, zeroing, exhaustion', async (t) => {
  const mm = MachineMemory.createPages(100);
  t.equal(mm.pageCount, 100);
  t.equal(mm.usedPages, 0);
  const got = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const mpn = mm.allocate();
    t.ok(mpn >= 0 && mpn < 100, `page ${mpn} in range`);
    got.add(mpn);
    mm.page(mpn).fill(0xab);
  }
  t.equal(got.size, 100, 'every page handed out once');
  t.equal(mm.allocate(), -1, 'exhausted: -1');
  t.equal(mm.usedPages, 100);
  t.equal(mm.freePages, 0);

  mm.free(42);
  t.equal(mm.usedPages, 99);
  t.notOk(mm.isAllocated(42));
  const again = mm.allocate();
  t.equal(again, 42, 'the freed page is the one left');
  t.ok(mm.page(42).every((b) => b === 0), 'a page is zeroed when handed out again');

  mm.free(7);
  t.throws(() => mm.free(7), { code: 'INTERNAL' }, 'double free refused');
  t.equal(mm.usedPages, 99, 'a refused free changes nothing');
  t.throws(() => mm.free(100), { code: 'INTERNAL' }, 'out of range refused');
  t.throws(() => mm.free(-1), { code: 'INTERNAL' });
});

t.test('sizes', async (t) => {
  t.throws(() => MachineMemory.create(0), { code: 'INVALID_ARGUMENT' });
  t.throws(() => MachineMemory.create(4097), { code: 'INVALID_ARGUMENT' });
  t.throws(() => MachineMemory.create(1.5), { code: 'INVALID_ARGUMENT' });
  const mm = MachineMemory.create(1);
  t.equal(mm.pageCount, 256);
  t.equal(mm.memoryMiB, 1);
  t.equal(mm.bytes.length, 256 * PAGE_SIZE);
});

t.test('a page count that is not a multiple of 32 never hands out a page past the end', async (t) => {
  const mm = MachineMemory.createPages(33);
  const pages: number[] = [];
  for (;;) {
    const p = mm.allocate();
    if (p < 0) break;
    pages.push(p);
  }
  t.equal(pages.length, 33);
  t.ok(pages.every((p) => p < 33));
});

t.test('attach sees the same memory and allocator', async (t) => {
  const a = MachineMemory.createPages(64);
  const b = MachineMemory.attach(a.handle());
  const p = a.allocate();
  b.page(p).fill(9);
  t.equal(a.page(p)[100], 9, 'same bytes');
  t.equal(b.usedPages, 1, 'same counts');
  const q = b.allocate();
  t.not(q, p, 'same allocator');
  a.free(q);
  t.equal(b.usedPages, 1);
});

/**
 * Two real worker threads allocate from the same machine memory at the same time. Each tags the
 * pages it owns and checks, when it gets a page, that it is zero, and when it frees one, that
 * its tag is still there: a page handed to both at once would fail one of the checks.
 */
t.test('allocation racing from two worker threads never hands out a page twice', async (t) => {
  const mm = MachineMemory.createPages(2048);
  const go = new Int32Array(new SharedArrayBuffer(8));
  const moduleUrl = new URL('../src/vmkernel/memory/machine-memory.js', import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(moduleUrl)}).then(({ MachineMemory }) => {
      const { handle, go, tag, churn } = workerData;
      const mm = MachineMemory.attach(handle);
      const flag = new Int32Array(go);
      Atomics.wait(flag, 0, 0, 10000);
      const dv = new DataView(mm.bytes.buffer);
      let violations = 0;
      const grab = () => {
        const p = mm.allocate();
        if (p < 0) return -1;
        const pg = mm.page(p);
        for (let i = 0; i < pg.length; i += 512) if (pg[i] !== 0) { violations++; break; }
        dv.setUint32(p * 4096, tag, true);
        dv.setUint32(p * 4096 + 4092, tag, true);
        return p;
      };
      // Phase 1: take as many pages as possible.
      const owned = [];
      for (;;) { const p = grab(); if (p < 0) break; owned.push(p); }
      const phase1 = owned.slice();
      // Barrier: neither frees anything before both are done taking.
      Atomics.add(flag, 1, 1);
      Atomics.notify(flag, 1);
      for (let v = Atomics.load(flag, 1); v < 2; v = Atomics.load(flag, 1)) Atomics.wait(flag, 1, v, 1000);
      // Phase 2: free and allocate in churn, checking tags.
      let x = tag * 7919;
      for (let i = 0; i < churn; i++) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        if (owned.length > 0 && (x & 1)) {
          const k = x % owned.length;
          const p = owned[k];
          if (dv.getUint32(p * 4096, true) !== tag || dv.getUint32(p * 4096 + 4092, true) !== tag) violations++;
          owned[k] = owned[owned.length - 1];
          owned.pop();
          mm.free(p);
        } else {
          const p = grab();
          if (p >= 0) owned.push(p);
        }
      }
      for (const p of owned) if (dv.getUint32(p * 4096, true) !== tag) violations++;
      parentPort.postMessage({ phase1, owned, violations });
    });`;
  const run = (tag: number): Promise<{ phase1: number[]; owned: number[]; violations: number }> =>
    new Promise((resolve, reject) => {
      const w = new Worker(code, { eval: true, workerData: { handle: mm.handle(), go: go.buffer, tag, churn: 40_000 } });
      w.once('message', (m) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
    });
  const results = Promise.all([run(1), run(2)]);
  await new Promise((r) => setTimeout(r, 200)); // both workers waiting on the flag
  Atomics.store(go, 0, 1);
  Atomics.notify(go, 0);
  const [a, b] = await results;

  t.equal(a.phase1.length + b.phase1.length, 2048, 'phase 1: together they took every page');
  const all = new Set([...a.phase1, ...b.phase1]);
  t.equal(all.size, 2048, 'phase 1: no page went to both');
  t.equal(a.violations, 0, 'worker 1 never saw a page it owned change hands');
  t.equal(b.violations, 0, 'worker 2 never saw a page it owned change hands');
  const end = new Set([...a.owned, ...b.owned]);
  t.equal(end.size, a.owned.length + b.owned.length, 'at the end no page is owned by both');
  t.equal(mm.usedPages, end.size, 'the used count matches the pages owned');
});
