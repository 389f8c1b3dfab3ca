import { createHash } from 'node:crypto';
import t from 'tap';
import { Bitmap, PAGE_SIZE } from '@esxemu/shared';
import { GuestMemory, PMAP_NONE } from '../src/index.js';
import { makeGuest, range, SimpleTestBacking } from './helpers/simple-test-backing.js';

t.test('reads of untouched pages return zeros and allocate nothing', async (t) => {
  const { mem, backing } = makeGuest(8);
  t.equal(mem.pages, 8);
  t.equal(mem.bytes, 8 * PAGE_SIZE);
  t.equal(mem.readU32(0), 0);
  t.equal(mem.readU32(3 * PAGE_SIZE + 2), 0, 'unaligned read of an untouched page');
  t.same(mem.read(PAGE_SIZE - 10, PAGE_SIZE + 20), new Uint8Array(PAGE_SIZE + 20));
  t.equal(backing.allocated, 0, 'no machine page handed out');
  t.ok(range(8).every((gpn) => !mem.present(gpn) && backing.pmap[gpn] === PMAP_NONE));
  t.same(backing.accessed.list(), [0, 1, 2, 3], 'reads mark pages accessed');
});

t.test('writes fault pages in and may span page boundaries', async (t) => {
  const { mem, backing } = makeGuest(8);
  const data = Uint8Array.from(range(300), (i) => (i * 7 + 1) & 0xff);
  mem.write(2 * PAGE_SIZE - 100, data);
  t.ok(mem.present(1) && mem.present(2), 'both pages present');
  t.notOk(mem.present(0) || mem.present(3), 'neighbours untouched');
  t.equal(backing.allocated, 2);
  t.same(mem.read(2 * PAGE_SIZE - 100, 300), data);
  // The bytes landed in the machine pages the pmap names.
  const m1 = backing.pmap[1]!;
  const m2 = backing.pmap[2]!;
  t.same(backing.machine.subarray(m1 * PAGE_SIZE + PAGE_SIZE - 100, (m1 + 1) * PAGE_SIZE), data.subarray(0, 100));
  t.same(backing.machine.subarray(m2 * PAGE_SIZE, m2 * PAGE_SIZE + 200), data.subarray(100));
  mem.fill(PAGE_SIZE * 3 - 5, 10, 0xab);
  t.same(mem.read(PAGE_SIZE * 3 - 6, 12), Uint8Array.from([0, ...new Array<number>(10).fill(0xab), 0]), 'fill across a page boundary');
  t.equal(backing.allocated, 3);
});

t.test('readU32 and writeU32 are little-endian, aligned or not, across pages too', async (t) => {
  const { mem } = makeGuest(4);
  mem.writeU32(8, 0xdeadbeef);
  t.same(mem.read(8, 4), Uint8Array.from([0xef, 0xbe, 0xad, 0xde]));
  t.equal(mem.readU32(8), 0xdeadbeef, 'aligned read gives an unsigned value');
  for (const gpa of [1, 2, 3, PAGE_SIZE - 3, PAGE_SIZE - 2, PAGE_SIZE - 1]) {
    const v = (0x80000000 + gpa * 2654435761) >>> 0;
    mem.writeU32(gpa, v);
    t.equal(mem.readU32(gpa), v, `round trip at ${gpa}`);
    const b = mem.read(gpa, 4);
    t.equal(new DataView(b.buffer).getUint32(0, true), v, `bytes at ${gpa} are little-endian`);
  }
  mem.write(2 * PAGE_SIZE - 2, Uint8Array.from([1, 2, 3, 4]));
  t.equal(mem.readU32(2 * PAGE_SIZE - 2), 0x04030201, 'unaligned read across a page boundary');
  mem.writeU32(0, -1);
  t.equal(mem.readU32(0), 0xffffffff, 'negative values are stored as u32');
});

t.test('accesses outside guest memory throw RangeError and change nothing', async (t) => {
  const { mem, backing } = makeGuest(2);
  const end = 2 * PAGE_SIZE;
  t.throws(() => mem.read(-1, 1), RangeError);
  t.throws(() => mem.read(end - 2, 4), RangeError);
  t.throws(() => mem.read(1.5, 1), RangeError);
  t.throws(() => mem.readU32(end - 2), RangeError);
  t.throws(() => mem.readU32(end), RangeError);
  t.throws(() => mem.writeU32(end - 3, 1), RangeError);
  t.throws(() => mem.write(end - 1, new Uint8Array(2)), RangeError);
  t.throws(() => mem.fill(0, end + 1, 1), RangeError);
  t.throws(() => mem.present(2), RangeError);
  t.throws(() => mem.present(-1), RangeError);
  t.equal(backing.allocated, 0, 'no page was faulted in by a rejected write');
  t.equal(backing.accessed.count(), 0, 'no page marked accessed');
  t.equal(mem.readU32(end - 4), 0, 'the last word is reachable');
  mem.write(end - 1, Uint8Array.from([9]));
  t.same(mem.read(end - 1, 1), Uint8Array.from([9]));
});

t.test('the constructor rejects flags or bitmaps shorter than the pmap', async (t) => {
  const b = new SimpleTestBacking(64);
  t.throws(() => new GuestMemory({ ...b, fault: (g) => b.fault(g), flags: new Uint8Array(10) }), RangeError);
  t.throws(() => new GuestMemory({ ...b, fault: (g) => b.fault(g), dirty: new Bitmap(10) }), RangeError);
});

t.test('a fault the VMkernel cannot satisfy surfaces as its error', async (t) => {
  const { mem } = makeGuest(4, { machinePages: 1 });
  mem.writeU32(0, 1);
  t.throws(() => mem.writeU32(PAGE_SIZE, 1), { code: 'INSUFFICIENT_RESOURCES' });
});

t.test('a write to a shared page breaks sharing and leaves the other page alone', async (t) => {
  const { mem, backing } = makeGuest(4);
  mem.write(0, new Uint8Array(PAGE_SIZE).fill(5));
  backing.share(0, 1);
  t.same(mem.read(PAGE_SIZE, 4), Uint8Array.from([5, 5, 5, 5]), 'the sharer reads the shared contents');
  t.equal(backing.cowBreaks, 0, 'reads do not break sharing');
  mem.writeU32(PAGE_SIZE + 4, 0x01020304);
  t.equal(backing.cowBreaks, 1);
  t.not(backing.pmap[1], backing.pmap[0], 'page 1 got its own machine page');
  t.equal(mem.readU32(4), 0x05050505, 'page 0 is unchanged');
  t.equal(mem.readU32(PAGE_SIZE + 4), 0x01020304);
  t.equal(mem.readU32(PAGE_SIZE + 8), 0x05050505, 'the private copy kept the rest of the page');
});

t.test('a swapped-out page reads back its contents, and hash() sees them', async (t) => {
  const { mem, backing } = makeGuest(4);
  mem.write(2 * PAGE_SIZE + 100, Uint8Array.from([1, 2, 3]));
  const before = mem.hash();
  backing.swapOut(2);
  t.notOk(mem.present(2));
  t.equal(mem.hash(), before, 'hash of a swapped page is of its contents, not zeros');
  t.same(mem.read(2 * PAGE_SIZE + 100, 3), Uint8Array.from([1, 2, 3]));
  t.ok(mem.present(2), 'read faulted the page back in');
  backing.swapOut(2);
  mem.writeU32(2 * PAGE_SIZE, 7);
  t.same(mem.read(2 * PAGE_SIZE + 100, 3), Uint8Array.from([1, 2, 3]), 'a write to a swapped page keeps the rest of it');
});

t.test('hash() covers the address space as the guest sees it and touches no bits', async (t) => {
  const zeros = createHash('sha256').update(new Uint8Array(4 * PAGE_SIZE)).digest('hex');
  const a = makeGuest(4);
  t.equal(a.mem.hash(), zeros, 'an untouched guest hashes as zeros');
  // Same contents, different machine layout: same hash.
  const b = makeGuest(4);
  a.mem.writeU32(3 * PAGE_SIZE, 42);
  a.mem.writeU32(0, 1);
  b.mem.writeU32(0, 1);
  b.mem.writeU32(3 * PAGE_SIZE, 42);
  t.not(a.backing.pmap[3], b.backing.pmap[3], 'machine layouts differ');
  t.equal(a.mem.hash(), b.mem.hash());
  t.not(a.mem.hash(), zeros);
  a.backing.accessed.clearAll();
  a.backing.setDirtyLogging(true);
  a.mem.hash();
  t.equal(a.backing.accessed.count(), 0, 'hash marks nothing accessed');
  t.equal(a.backing.dirty.count(), 0, 'hash marks nothing dirty');
  // A zero write still allocates, and still hashes as zeros.
  const c = makeGuest(4);
  c.mem.writeU32(0, 0);
  t.equal(c.mem.hash(), zeros);
});
