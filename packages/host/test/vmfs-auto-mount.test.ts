/**
 * mount(dev, { hostId: 'auto', hostName }): hosts started by name get a heartbeat slot from the
 * datastore. The same name gets its slot back (after a clean unmount, and after a crash, whose
 * locks then end at once); new names take never-used slots first, then ended ones; a slot a
 * live host uses under our name is skipped; a full datastore is INSUFFICIENT_RESOURCES with
 * nothing written; hosts racing to mount all get distinct slots, on both lock paths.
 */
import t from 'tap';
import { fsck, ManualClock, mount, type MountOptions } from '../src/vmfs/index.js';
import { chooseSlot, readSlots } from '../src/vmfs/slots.js';
import { decodeSuperblock } from '../src/vmfs/format.js';
import { formatted, liveFor, MANUAL_HB, type TestSan } from './vmfs-helpers.js';

const auto = (san: TestSan, name: string, o: Partial<MountOptions> & { ats?: boolean; clock?: ManualClock } = {}) =>
  mount(san.device(name, o.ats ?? true), { ...MANUAL_HB, clock: o.clock ?? new ManualClock(), ...o, hostId: 'auto', hostName: name });

async function slotImages(san: TestSan): Promise<Buffer> {
  const dev = san.device('peek');
  const sb = decodeSuperblock(await dev.read(0, 1), dev);
  return dev.read(sb.hbStart, sb.maxHosts);
}

t.test('new names take never-used slots in order; the same name gets its slot back after a clean unmount', async (t) => {
  const san = await formatted();
  const a = await auto(san, 'esx01');
  const b = await auto(san, 'esx02');
  t.same([a.hostId, b.hostId], [1, 2], 'first two never-used slots');
  await a.heartbeatTick(); // observe every slot
  t.same(a.hosts().map((h) => [h.hostId, h.name, h.liveness]), [[1, 'esx01', 'alive'], [2, 'esx02', 'alive']], 'names are on the slots');
  await a.unmount();
  const c = await auto(san, 'esx03');
  t.equal(c.hostId, 3, 'a new name prefers a never-used slot over the ended slot 1 (ids stay stable)');
  const a2 = await auto(san, 'esx01');
  t.equal(a2.hostId, 1, 'esx01 gets slot 1 back');
  await a2.heartbeatTick();
  t.ok(a2.hosts().find((h) => h.hostId === 1)!.incarnation >= 2, 'with a new incarnation');
  for (const fs of [b, c, a2]) await fs.unmount();
  t.same((await fsck(san.device('f'))).errors, []);
});

t.test('ended slots are reused when no never-used slot is left', async (t) => {
  const san = await formatted({ mkfs: { maxHosts: 2 } });
  const a = await auto(san, 'a');
  const b = await auto(san, 'b');
  await a.unmount();
  const c = await auto(san, 'c');
  t.equal(c.hostId, 1, "c takes a's ended slot");
  await c.heartbeatTick();
  t.equal(c.hosts().find((h) => h.hostId === 1)!.name, 'c');
  await b.unmount();
  await c.unmount();
});

t.test('a host restarting after a crash resumes its own slot: its old locks end at once', async (t) => {
  const san = await formatted();
  const a = await auto(san, 'esx01');
  const b = await auto(san, 'esx02');
  await a.mkdir('vm1');
  const held = await a.open('vm1/vm1.vswp', 'exclusive', { create: true });
  t.equal(held.size, 0);
  a.abandon(); // killed: slot still mounted, lock still on disk
  await t.rejects(b.open('vm1/vm1.vswp', 'exclusive'), { code: 'FILE_LOCKED' }, 'the crashed incarnation still holds the lock for others');
  const a2 = await auto(san, 'esx01'); // watches its slot for a lease (real time, bounded), then resumes it
  t.equal(a2.hostId, a.hostId, 'same slot');
  const f = await b.open('vm1/vm1.vswp', 'exclusive');
  t.pass('the old incarnation\'s lock ended when its host came back: no lease wait, no recovery');
  await f.close();
  await a2.unmount();
  await b.unmount();
  t.same((await fsck(san.device('f'))).errors, []);
});

t.test('a slot a live host uses under our name is skipped', async (t) => {
  const san = await formatted();
  const live = { heartbeatMs: 20, leaseMs: 200, fenceMs: 100, autoHeartbeat: true } as const;
  const first = await mount(san.device('one'), { ...live, hostId: 'auto', hostName: 'twin' });
  t.teardown(() => first.unmount());
  const second = await mount(san.device('two'), { ...live, hostId: 'auto', hostName: 'twin' });
  t.teardown(() => second.unmount());
  t.not(second.hostId, first.hostId, 'the second process with the name got another slot');
  t.equal(first.fenced, null, 'the first one was not disturbed');
});

t.test('every slot mounted: INSUFFICIENT_RESOURCES, nothing written; a recovered dead host frees its slot', async (t) => {
  const san = await formatted({ mkfs: { maxHosts: 2 } });
  const a = await auto(san, 'a');
  const bc = new ManualClock();
  const b = await auto(san, 'b', { clock: bc });
  const before = await slotImages(san);
  await t.rejects(auto(san, 'c'), { code: 'INSUFFICIENT_RESOURCES', details: { maxHosts: 2, mounted: 2 } });
  t.ok((await slotImages(san)).equals(before), 'no slot changed');
  a.abandon(); // dead, not recovered: its slot is not free for a new name
  await t.rejects(auto(san, 'c'), { code: 'INSUFFICIENT_RESOURCES' });
  await b.heartbeatTick();
  await liveFor({ fs: b, clock: bc }, 1200); // past a's lease on b's clock
  t.same(await b.recoverDeadHosts(), [1], 'b recovers a');
  const c = await auto(san, 'c');
  t.equal(c.hostId, 1, 'c takes the reclaimed slot');
  await c.unmount();
  await b.unmount();
});

for (const ats of [true, false]) {
  t.test(`${ats ? 'ATS' : 'reservations'}: six hosts racing to mount get six distinct slots`, async (t) => {
    const san = await formatted();
    const names = ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'];
    const all = await Promise.all(names.map((n) => auto(san, n, { ats })));
    t.same(new Set(all.map((fs) => fs.hostId)).size, 6, `ids ${all.map((fs) => fs.hostId).join(',')}`);
    await all[0]!.heartbeatTick();
    const seen = all[0]!.hosts();
    t.same(seen.map((h) => h.name).sort(), names, 'each slot bears the name of the host that holds it');
    for (const fs of all) t.equal(seen.find((h) => h.hostId === fs.hostId)!.name, fs.hostName);
    for (const fs of all) await fs.unmount();
    t.same((await fsck(san.device('f'))).errors, []);
  });
}

t.test('explicit ids still work beside auto, and bad names are refused', async (t) => {
  const san = await formatted();
  const fixed = await mount(san.device('x'), { ...MANUAL_HB, clock: new ManualClock(), hostId: 1, hostName: 'fixed' });
  const a = await auto(san, 'auto1');
  t.equal(a.hostId, 2, 'auto skips the slot a fixed id holds');
  const dev = san.device('bad');
  await t.rejects(mount(dev, { hostId: 'auto' }), { code: 'INVALID_ARGUMENT' }, 'auto needs a name');
  await t.rejects(mount(dev, { hostId: 'auto', hostName: 'x'.repeat(65) }), { code: 'INVALID_ARGUMENT' }, 'a name longer than a slot holds');
  await t.rejects(mount(dev, { hostId: 0 }), { code: 'INVALID_ARGUMENT' });
  await fixed.unmount();
  await a.unmount();
});

t.test('chooseSlot: order of preference, corrupt slots never chosen', async (t) => {
  const san = await formatted({ mkfs: { maxHosts: 4 } });
  const a = await auto(san, 'a');
  const b = await auto(san, 'b');
  await a.unmount();
  const dev = san.device('peek');
  const sb = decodeSuperblock(await dev.read(0, 1), dev);
  // Corrupt slot 3 (never used so far): a flipped byte, so its checksum fails.
  const bad = Buffer.alloc(512, 0x77);
  await dev.write(sb.hbStart + 2, bad);
  const slots = await readSlots(dev, sb);
  t.equal(slots[2]!.slot, null, 'slot 3 does not decode');
  t.match(chooseSlot(slots, 'a'), { kind: 'claim', hostId: 1, why: 'our name' });
  t.match(chooseSlot(slots, 'b'), { kind: 'resume', hostId: 2 }, 'our name, still mounted: resume');
  t.match(chooseSlot(slots, 'b', new Set([2])), { kind: 'claim', hostId: 4, why: 'never used' }, 'skipped: next never-used, not the corrupt one');
  t.match(chooseSlot(slots, 'new'), { kind: 'claim', hostId: 4, why: 'never used' });
  t.match(chooseSlot(slots, 'new', new Set([4])), { kind: 'claim', hostId: 1, why: 'mount ended' });
  t.match(chooseSlot(slots, 'new', new Set([1, 4])), { kind: 'full', mounted: 1, corrupt: 1 });
  await b.unmount();
});
