/** The task set's bound and ordering, and the LBA range lock's exclusion and fairness. */
import t from 'tap';
import { RangeLock } from '../src/scsi/range-lock.js';
import { TaskSet } from '../src/scsi/task-set.js';

t.test('task set: bounded, ORDERED waits for earlier tasks', async (t) => {
  const ts = new TaskSet(2);
  const a = ts.enter('simple')!;
  const b = ts.enter('ordered')!;
  t.equal(ts.enter('simple'), null, 'full: the caller answers TASK SET FULL');
  const seen: string[] = [];
  void b.ready.then(() => seen.push('ordered ready'));
  await a.ready;
  await new Promise((r) => setImmediate(r));
  t.same(seen, [], 'ordered waits for the simple task before it');
  a.done();
  await b.ready;
  t.same(seen, ['ordered ready']);
  const c = ts.enter('simple')!;
  let cReady = false;
  void c.ready.then(() => (cReady = true));
  await new Promise((r) => setImmediate(r));
  t.equal(cReady, false, 'a simple task after an ORDERED one waits for it');
  b.done();
  await c.ready;
  const h = ts.enter('headOfQueue')!;
  t.ok(h, 'room again once b is done');
  await h.ready;
  t.pass('HEAD OF QUEUE starts at once, with c still running');
  c.done();
  h.done();
  b.done(); // a second done() is harmless
  t.equal(ts.size, 0, 'empty');
});

t.test('range lock: overlapping extents exclude each other, in arrival order', async (t) => {
  const lock = new RangeLock();
  const order: string[] = [];
  const r1 = await lock.acquire(0, 8);
  const p2 = lock.acquire(4, 8).then((rel) => (order.push('overlapping'), rel));
  const p3 = lock.acquire(100, 1).then((rel) => (order.push('disjoint'), rel));
  const p4 = lock.acquire(10, 1).then((rel) => (order.push('behind the overlapping waiter'), rel));
  const r3 = await p3;
  t.same(order, ['disjoint'], 'a disjoint extent is granted at once');
  r1();
  const r2 = await p2;
  t.same(order, ['disjoint', 'overlapping'], 'the waiter gets it when released');
  await new Promise((r) => setImmediate(r));
  t.same(order.length, 2, 'a later waiter overlapping an earlier one waits for it');
  r2();
  (await p4)();
  r3();
  t.equal(lock.heldCount, 0, 'everything released');
});
