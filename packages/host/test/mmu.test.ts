/**
 * The guest MMU proof, in the main thread, with the real MachineMemory + Pmap + GuestMemory and
 * the memstress workload: while dirty logging is on, the dirty bitmap holds exactly the pages
 * whose contents changed; pages written while it is off are not in it.
 */
import t from 'tap';
import { GuestMemory, Registers, bootGuest, getWorkload, stepGuest, type GuestContext } from '@esxemu/guest';
import { PAGE_SIZE, type WorkloadSpec } from '@esxemu/shared';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import { Pmap } from '../src/vmkernel/memory/pmap.js';

t.setTimeout(30_000);

function snapshot(pmap: Pmap): Uint8Array[] {
  const pages: Uint8Array[] = [];
  for (let gpn = 0; gpn < pmap.pages; gpn++) pages.push(pmap.readPage(gpn));
  return pages;
}

function changedPages(before: Uint8Array[], after: Uint8Array[]): number[] {
  const out: number[] = [];
  for (let gpn = 0; gpn < before.length; gpn++) {
    if (!Buffer.from(before[gpn]!).equals(after[gpn]!)) out.push(gpn);
  }
  return out;
}

t.test('dirty logging records exactly the pages a workload wrote', async (t) => {
  const mm = MachineMemory.createPages(2048);
  const pmap = Pmap.create(1024, mm); // 4 MiB guest
  const ctx: GuestContext = { mem: new GuestMemory(pmap), regs: new Registers(), nic: null };
  const spec: WorkloadSpec = { kind: 'memstress', workingSetMiB: 2, dirtyPagesPerS: 1000 };
  const w = getWorkload('memstress');
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) stepGuest(ctx, w);
  };
  bootGuest(ctx, w, spec, 1234);

  // Logging off: the fill and some dirtying leave no dirty bit.
  run(200);
  t.equal(pmap.consumedPages, 512, 'the working set (2 MiB) got machine pages, nothing else');
  t.equal(pmap.dirty.count(), 0, 'nothing is logged while dirty logging is off');

  const before = snapshot(pmap);
  pmap.setDirtyLogging(true);
  t.ok(ctx.mem.dirtyLogging, 'the guest MMU sees dirty logging on');
  run(300);
  pmap.setDirtyLogging(false);
  const after = snapshot(pmap);

  const changed = changedPages(before, after);
  const dirty = pmap.dirty.list();
  t.ok(changed.length > 50 && changed.length < 512, `a part of the working set changed (${changed.length} pages)`);
  t.same(dirty, changed, 'dirty bitmap == pages whose contents changed');

  // Logging off again: pages keep changing, the bitmap does not.
  run(300);
  const later = snapshot(pmap);
  const changedLater = changedPages(after, later);
  t.ok(changedLater.length > 50, 'pages changed after logging was turned off');
  t.ok(changedLater.some((g) => !dirty.includes(g)), 'some of them were not dirty before');
  t.same(pmap.dirty.list(), dirty, 'pages written while logging was off are not in the bitmap');

  // Harvesting takes the bits and clears them.
  t.same(pmap.dirty.harvest(), dirty);
  t.equal(pmap.dirty.count(), 0);

  t.equal(pmap.release(), 512, 'release frees every page of the VM');
  t.equal(mm.usedPages, 0);
  t.equal(pmap.consumedPages, 0);
});

t.test('first touch, reads of absent pages, exhaustion', async (t) => {
  const mm = MachineMemory.createPages(4);
  const pmap = Pmap.create(4, mm);
  const other = Pmap.create(4, mm); // memory is overcommitted: 8 guest pages on 4 machine pages
  const mem = new GuestMemory(pmap);
  t.equal(mem.readU32(2 * PAGE_SIZE), 0, 'an absent page reads as zeros');
  t.equal(pmap.consumedPages, 0, 'and reading it allocates nothing');
  mem.writeU32(2 * PAGE_SIZE + 8, 0xdeadbeef);
  t.equal(pmap.consumedPages, 1, 'a write faults in one page');
  t.equal(mem.readU32(2 * PAGE_SIZE + 8), 0xdeadbeef);
  t.ok(mem.present(2));
  t.ok(pmap.accessed.test(2), 'the access is recorded for active memory');
  t.equal(pmap.sampleActive(), 1);
  t.equal(pmap.accessed.count(), 0, 'sampling clears the accessed bits');
  t.equal(pmap.activePages, 1);

  const otherMem = new GuestMemory(other);
  for (let g = 0; g < 3; g++) otherMem.writeU32(g * PAGE_SIZE, g + 1);
  t.equal(mm.usedPages, 4, 'machine memory is full');
  t.throws(() => mem.writeU32(3 * PAGE_SIZE, 1), { code: 'INSUFFICIENT_RESOURCES' }, 'one more page cannot be had');
  t.notOk(mem.present(3), 'and nothing was mapped');
  t.equal(pmap.consumedPages, 1);
  t.equal(pmap.release(), 1);
  t.equal(other.release(), 3);
  t.equal(mm.usedPages, 0);
});

t.test('hash: same contents, same hash; untouched by bits', async (t) => {
  const mm = MachineMemory.createPages(64);
  const a = Pmap.create(16, mm);
  const b = Pmap.create(16, mm);
  const ma = new GuestMemory(a);
  const mb = new GuestMemory(b);
  ma.write(3 * PAGE_SIZE + 10, new Uint8Array([1, 2, 3]));
  mb.write(3 * PAGE_SIZE + 10, new Uint8Array([1, 2, 3]));
  a.accessed.clearAll();
  t.equal(ma.hash(), mb.hash());
  t.equal(a.accessed.count(), 0, 'hashing touches no accessed bit');
  mb.writeU32(0, 1);
  t.not(ma.hash(), mb.hash());
});
