import t from 'tap';
import { Bitmap, PAGE_SIZE } from '@esxemu/shared';
import { bootGuest, memstress, MEMSTRESS_RECORD_BYTES, R_MS_DIRTIED, stepGuest } from '../src/index.js';
import { makeGuest, range, sameBytes, snapshotPages } from './helpers/simple-test-backing.js';

function changedPages(before: Uint8Array[], after: Uint8Array[]): number[] {
  return range(before.length).filter((gpn) => !sameBytes(before[gpn]!, after[gpn]!));
}

t.test('the dirty bitmap records exactly the pages written while logging is on', async (t) => {
  const g = makeGuest(256);
  bootGuest(g.ctx, memstress, { kind: 'memstress', workingSetMiB: 0.5, dirtyPagesPerS: 1000 }, 11);
  stepGuest(g.ctx, memstress); // fills the 128-page working set
  t.equal(g.backing.dirty.count(), 0, 'nothing logged while logging is off');

  const before = snapshotPages(g.mem);
  g.backing.setDirtyLogging(true);
  for (let i = 0; i < 60; i++) stepGuest(g.ctx, memstress);
  const dirty = g.backing.dirty.list();
  const changed = changedPages(before, snapshotPages(g.mem));
  t.ok(changed.length > 30, `60 random writes changed many pages (${changed.length})`);
  t.same(dirty, changed, 'dirty pages == pages whose contents changed');

  // A harvest takes the bits; the next round logs only what it writes.
  t.same(g.backing.dirty.harvest(), changed);
  const before2 = snapshotPages(g.mem);
  for (let i = 0; i < 5; i++) stepGuest(g.ctx, memstress);
  t.same(g.backing.dirty.list(), changedPages(before2, snapshotPages(g.mem)), 'second round');

  // Logging off: pages change, no bit is set.
  g.backing.setDirtyLogging(false);
  g.backing.dirty.clearAll();
  const before3 = snapshotPages(g.mem);
  for (let i = 0; i < 40; i++) stepGuest(g.ctx, memstress);
  t.ok(changedPages(before3, snapshotPages(g.mem)).length > 0, 'pages changed');
  t.equal(g.backing.dirty.count(), 0, 'and none was logged');
  t.equal(g.regs.get(R_MS_DIRTIED), 105, 'one dirty write per steady-state step');
});

t.test('reads never set dirty bits; every page of a spanning write does', async (t) => {
  const g = makeGuest(8);
  g.backing.setDirtyLogging(true);
  g.mem.read(0, 8 * PAGE_SIZE);
  g.mem.readU32(PAGE_SIZE * 5 - 2);
  t.equal(g.backing.dirty.count(), 0);
  g.mem.write(PAGE_SIZE - 1, new Uint8Array(PAGE_SIZE + 2).fill(1));
  g.mem.writeU32(4 * PAGE_SIZE - 2, 0x11223344);
  g.mem.fill(6 * PAGE_SIZE + 10, 1, 9);
  t.same(g.backing.dirty.list(), [0, 1, 2, 3, 4, 6]);
});

t.test('a dirty bit is set only once the bytes are in machine memory', async (t) => {
  // If the VMkernel harvests a bit and copies the page, the copy must already hold the write;
  // otherwise the change is lost for the next pre-copy round. Look at the page when the bit is set.
  let seen: Uint8Array[] = [];
  let backingRef: { machine: Uint8Array; pmap: Int32Array } | null = null;
  class WatchingBitmap extends Bitmap {
    override set(i: number): void {
      if (backingRef) {
        const mpn = backingRef.pmap[i]!;
        seen.push(backingRef.machine.slice(mpn * PAGE_SIZE, mpn * PAGE_SIZE + 8));
      }
      super.set(i);
    }
  }
  const g = makeGuest(4, { dirty: new WatchingBitmap(4) });
  backingRef = g.backing;
  g.backing.setDirtyLogging(true);
  g.mem.writeU32(4, 0xcafef00d);
  t.same(seen, [Uint8Array.from([0, 0, 0, 0, 0x0d, 0xf0, 0xfe, 0xca])], 'writeU32');
  seen = [];
  g.mem.write(PAGE_SIZE - 4, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
  t.same(seen[1], Uint8Array.from([5, 6, 7, 8, 0, 0, 0, 0]), 'write, second page of a spanning write');
  seen = [];
  g.mem.fill(2 * PAGE_SIZE, 8, 0x7f);
  t.same(seen, [new Uint8Array(8).fill(0x7f)], 'fill');
});

t.test('a memstress dirty step writes one aligned 64-byte record in one page', async (t) => {
  const g = makeGuest(64);
  bootGuest(g.ctx, memstress, { kind: 'memstress', workingSetMiB: 0.125, dirtyPagesPerS: 100 }, 5);
  stepGuest(g.ctx, memstress);
  for (let i = 0; i < 20; i++) {
    const before = snapshotPages(g.mem);
    stepGuest(g.ctx, memstress);
    const after = snapshotPages(g.mem);
    const changed = changedPages(before, after);
    if (changed.length !== 1 || changed[0]! >= 32) {
      t.fail(`step ${i} changed pages ${changed.join(',')}`);
      continue;
    }
    const a = before[changed[0]!]!;
    const b = after[changed[0]!]!;
    const diff = range(PAGE_SIZE).filter((k) => a[k] !== b[k]);
    const rec = Math.floor(diff[0]! / MEMSTRESS_RECORD_BYTES);
    if (!diff.every((k) => Math.floor(k / MEMSTRESS_RECORD_BYTES) === rec)) t.fail(`step ${i} wrote outside one record`);
  }
  t.pass('20 dirty steps checked');
});
