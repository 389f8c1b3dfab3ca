/**
 * The read-only observer: it sees what mounted hosts see (directories, stats, file contents,
 * free space, lock holders), judges liveness over its observation window (alive, stale,
 * ended, unknown), refuses what it cannot do with stable codes, and never writes a sector,
 * takes a slot or reserves the LUN (checked on the device's own counters).
 */
import t from 'tap';
import { ManualClock, mkfs, mount, observe, ReadOnlyDevice } from '../src/vmfs/index.js';
import { decodeSuperblock, encodeSuperblock, SB_STATE } from '../src/vmfs/format.js';
import { formatted, liveFor, manualHost, memorySan, pattern, SMALL_FS } from './vmfs-helpers.js';

t.test('the observer sees what a mounted host sees, and writes nothing', async (t) => {
  const san = await formatted();
  const a = await manualHost(san, 1);
  await a.fs.mkdir('vm1');
  await a.fs.writeFile('vm1/vm1.vmx', Buffer.from('displayName = "vm1"\n'));
  const disk = await a.fs.open('vm1/vm1-flat.vmdk', 'exclusive', { create: true });
  await disk.truncate(1024 * 1024);
  await disk.write(200 * 1024, pattern(70 * 1024, 3)); // crosses a 64 KiB block boundary
  await disk.close();
  const dev = san.device('observer');
  const obs = await observe(dev, { windowMs: 0 });
  t.same(await obs.readdir('/'), await a.fs.readdir('/'));
  t.same(await obs.readdir('vm1'), await a.fs.readdir('vm1'));
  t.same(await obs.stat('vm1/vm1-flat.vmdk'), await a.fs.stat('vm1/vm1-flat.vmdk'));
  t.same(await obs.df(), await a.fs.df());
  t.equal((await obs.readFile('vm1/vm1.vmx')).toString(), 'displayName = "vm1"\n');
  const flat = await obs.readFile('vm1/vm1-flat.vmdk');
  t.equal(flat.length, 1024 * 1024);
  t.ok(flat.subarray(200 * 1024, 270 * 1024).equals(pattern(70 * 1024, 3)), 'written range read back');
  t.ok(flat.subarray(0, 200 * 1024).every((b) => b === 0) && flat.subarray(270 * 1024).every((b) => b === 0), 'holes read as zeros');
  t.equal(await obs.exists('vm1/nope'), false);
  t.equal(await obs.exists('vm1'), true);
  await obs.hosts();
  await obs.lockInfo('vm1/vm1.vmx');
  t.same([dev.stats.writes, dev.stats.compareAndWrites, dev.stats.reserves, dev.stats.flushes], [0, 0, 0, 0], 'not one write, COMPARE AND WRITE, RESERVE or flush');
  t.ok(dev.stats.reads > 0);
  await a.fs.heartbeatTick();
  t.same(a.fs.hosts().map((h) => h.hostId), [1], 'the observer holds no heartbeat slot');
  await a.fs.unmount();
});

t.test('liveness over the window: unknown, alive, stale, ended; lock holders judged the same way', async (t) => {
  const san = await formatted();
  const a = await manualHost(san, 1);
  const b = await manualHost(san, 2);
  const c = await manualHost(san, 3);
  await a.fs.mkdir('vm1');
  const f = await a.fs.open('vm1/vm1.vswp', 'exclusive', { create: true });
  await c.fs.unmount();
  const clock = new ManualClock();
  const obs = await observe(san.device('observer'), { windowMs: 1000, clock });
  const before = await obs.hosts({ wait: false });
  t.same(before.map((h) => [h.hostId, h.name, h.state, h.liveness]), [[1, 'esx01', 'mounted', 'unknown'], [2, 'esx02', 'mounted', 'unknown'], [3, 'esx03', 'free', 'ended']], 'not watched long enough: unknown');
  t.match(await obs.lockInfo('vm1/vm1.vswp', { wait: false }), { mode: 'exclusive', holders: [{ hostId: 1, hostName: 'esx01', liveness: 'unknown' }] });
  // a beats, b does not (frozen or dead)
  for (let i = 0; i < 10; i++) {
    clock.advance(100);
    await a.fs.heartbeatTick();
    await obs.refresh();
  }
  const after = await obs.hosts();
  t.same(after.map((h) => [h.hostId, h.liveness]), [[1, 'alive'], [2, 'stale'], [3, 'ended']]);
  t.ok(after[0]!.beatsSeen >= 10 && after[1]!.beatsSeen === 0, `beats seen: ${after.map((h) => h.beatsSeen)}`);
  t.match(await obs.lockInfo('vm1/vm1.vswp'), { mode: 'exclusive', gen: Number, holders: [{ hostId: 1, liveness: 'alive' }] });
  // a stops beating: stale after the window; once b recovers it, its lock entry is ended
  clock.advance(1001);
  t.match(await obs.lockInfo('vm1/vm1.vswp'), { holders: [{ hostId: 1, liveness: 'stale' }] });
  a.fs.abandon();
  await liveFor(b, 1200);
  t.same(await b.fs.recoverDeadHosts(), [1]);
  t.match(await obs.lockInfo('vm1/vm1.vswp'), { mode: 'exclusive', holders: [{ hostId: 1, liveness: 'ended' }] }, 'the record still names a, whose mount is over');
  t.match((await obs.hosts()).find((h) => h.hostId === 1), { state: 'reclaimed', liveness: 'ended' });
  t.equal(f.path, '/vm1/vm1.vswp');
  await b.fs.unmount();
});

t.test('a real-time observer: unknown before its window, alive after it for a beating host', async (t) => {
  const san = await formatted();
  const fs = await mount(san.device('esx01'), { hostId: 'auto', hostName: 'esx01', heartbeatMs: 20, leaseMs: 200, fenceMs: 100 });
  t.teardown(() => fs.unmount());
  const obs = await observe(san.device('observer'), { windowMs: 150 });
  t.match(await obs.hosts({ wait: false }), [{ hostId: fs.hostId, liveness: 'unknown' }], 'no judgment before the window');
  t.match(await obs.hosts(), [{ hostId: fs.hostId, name: 'esx01', liveness: 'alive' }], 'waited for the window, then saw it beat');
});

t.test('bad input: NOT_FORMATTED, FORMATTING, NOT_FOUND, directories, size cap, read-only device', async (t) => {
  const san = memorySan(16 * 1024 * 1024);
  await t.rejects(observe(san.device('o')), { code: 'NOT_FORMATTED' });
  await mkfs(san.device('m'), SMALL_FS);
  const a = await manualHost(san, 1);
  await a.fs.mkdir('d');
  await a.fs.writeFile('d/big', Buffer.alloc(100_000, 1));
  const obs = await observe(san.device('o'), { windowMs: 0 });
  await t.rejects(obs.stat('d/missing'), { code: 'NOT_FOUND' });
  await t.rejects(obs.readdir('d/big'), { code: 'INVALID_ARGUMENT' });
  await t.rejects(obs.readFile('d'), { code: 'INVALID_ARGUMENT' });
  await t.rejects(obs.readFile('d/big', { maxBytes: 1000 }), { code: 'PAYLOAD_TOO_LARGE' });
  await t.rejects(obs.lockInfo('../etc'), { code: 'INVALID_ARGUMENT' });
  await t.rejects(observe(san.device('o'), { windowMs: -1 }), { code: 'INVALID_ARGUMENT' });
  const ro = new ReadOnlyDevice(san.device('ro'));
  await t.rejects(ro.write(0, Buffer.alloc(512)), { code: 'INVALID_STATE', details: { reason: 'READ_ONLY' } });
  await t.rejects(ro.compareAndWrite(0, Buffer.alloc(512), Buffer.alloc(512)), { code: 'INVALID_STATE' });
  await t.rejects(ro.reserve(), { code: 'INVALID_STATE' });
  await a.fs.unmount();
  // A superblock left FORMATTING (a format in progress or crashed): INVALID_STATE.
  const raw = san.device('raw');
  const sb = await raw.read(0, 1);
  await raw.write(0, encodeSuperblock({ ...decodeSuperblock(sb, raw), state: SB_STATE.FORMATTING }));
  await t.rejects(observe(san.device('o')), { code: 'INVALID_STATE', details: { reason: 'FORMATTING' } });
});
