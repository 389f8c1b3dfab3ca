/** The memory backstore: reads what was written, unmaps to zeros, reports its allocation, bounds every call. */
import t from 'tap';
import { AllocationMap } from '../src/backstore/allocation-map.js';
import { MemoryBackstore } from '../src/backstore/memory.js';

t.test('read, write, unmap, mapping', async (t) => {
  const m = new MemoryBackstore(64 * 512);
  t.same(await m.mapping(0, 64 * 512), [{ offset: 0, length: 64 * 512, mapped: false }], 'all unmapped at first');
  await m.write(512, Buffer.alloc(1024, 0xaa));
  t.ok((await m.read(512, 1024)).equals(Buffer.alloc(1024, 0xaa)), 'reads what was written');
  t.same(await m.mapping(0, 4 * 512), [
    { offset: 0, length: 512, mapped: false },
    { offset: 512, length: 1024, mapped: true },
    { offset: 1536, length: 512, mapped: false },
  ], 'runs clipped to the range asked');
  await m.unmap(1024, 512);
  t.ok((await m.read(1024, 512)).equals(Buffer.alloc(512)), 'unmapped block reads zero');
  t.same((await m.mapping(512, 1024)).map((r) => r.mapped), [true, false], 'and is deallocated');
  const copy = await m.read(512, 512);
  copy[0] = 1;
  t.equal((await m.read(512, 512))[0], 0xaa, 'read returns a copy');
  await m.flush();
  await m.close();
  await t.rejects(m.read(0, 512), { code: 'INVALID_STATE' }, 'closed');
});

t.test('bounds', async (t) => {
  const m = new MemoryBackstore(64 * 512);
  await t.rejects(m.read(1, 512), { code: 'INVALID_ARGUMENT' }, 'unaligned');
  await t.rejects(m.read(63 * 512, 1024), { code: 'INVALID_ARGUMENT' }, 'beyond the end');
  await t.rejects(m.write(-512, Buffer.alloc(512)), { code: 'INVALID_ARGUMENT' }, 'negative');
  t.throws(() => new MemoryBackstore(1000), { code: 'INVALID_ARGUMENT' }, 'size not a multiple of the block size');
  t.throws(() => new MemoryBackstore(4096, 520), { code: 'INVALID_ARGUMENT' }, 'odd block size');
  t.throws(() => new MemoryBackstore(8 * 1024 * 1024 * 1024), { code: 'INVALID_ARGUMENT' }, 'bounded size');
});

t.test('allocation map at a coarse granularity', async (t) => {
  const map = new AllocationMap(10 * 4096 + 1024, 4096);
  t.equal(map.granules, 11, 'a short last granule');
  t.same(map.markMapped(4096 + 512, 8192), { lo: 0, hi: 1 }, 'bytes of the bitmap changed');
  t.equal(map.markMapped(4096, 512), null, 'nothing changes the second time');
  t.same(map.coveredGranules(4000, 3 * 4096), { first: 1, end: 3 }, 'fully covered granules');
  t.same(map.coveredGranules(9 * 4096 + 1, 4096 + 1023), { first: 10, end: 11 }, 'the short last granule is covered up to the end');
  t.same(map.runs(0, 5 * 4096).map((r) => [r.offset / 4096, r.length / 4096, r.mapped]), [[0, 1, false], [1, 3, true], [4, 1, false]]);
  map.setAll();
  t.equal(map.countMapped(), 11, 'setAll marks exactly every granule');
  map.clear(0, 11);
  t.equal(map.countMapped(), 0);
  t.equal(map.runs(0, map.sizeBytes, 3).length, 1, 'one run for a uniform map');
});
