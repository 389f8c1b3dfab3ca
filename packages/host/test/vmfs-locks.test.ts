/**
 * Locks and heartbeats between hosts on one memory LUN, for both lock paths (COMPARE AND WRITE
 * and SPC-2 RESERVE/RELEASE): lock modes and FILE_LOCKED, breaking a dead host's lock only
 * after the lease (manual clocks), LOCK_LOST for the host that lost it, self-fencing from the
 * host's own clock before any further write, liveness as others see it, a host id already in
 * use, and concurrent metadata updates from two hosts.
 */
import t from 'tap';
import { fsck, mount } from '../src/vmfs/index.js';
import { formatted, liveFor, manualHost, MANUAL_HB, pattern } from './vmfs-helpers.js';

const esx = (c: string, details?: Record<string, unknown>) => ({ code: c, ...(details ? { details } : {}) });

for (const ats of [true, false]) {
  const path = ats ? 'ATS' : 'reservations';

  t.test(`${path}: lock modes between two hosts`, async (t) => {
    const san = await formatted();
    const a = await manualHost(san, 1, { ats });
    const b = await manualHost(san, 2, { ats });
    await a.fs.mkdir('vm1');
    await a.fs.writeFile('vm1/vm1.vmx', Buffer.from('x'));
    const fa = await a.fs.open('vm1/vm1.vmx', 'exclusive');
    await t.rejects(b.fs.open('vm1/vm1.vmx', 'exclusive'), esx('FILE_LOCKED', { holders: [1] }));
    await t.rejects(b.fs.open('vm1/vm1.vmx', 'read-only'), esx('FILE_LOCKED'));
    await t.rejects(b.fs.unlink('vm1/vm1.vmx'), esx('FILE_LOCKED'), 'an open file cannot be removed');
    const info = await b.fs.lockInfo('vm1/vm1.vmx');
    t.match(info, { mode: 'exclusive', holders: [{ hostId: 1, hostName: 'esx01', liveness: 'alive' }] });
    await fa.close();
    t.match(await b.fs.lockInfo('vm1/vm1.vmx'), { mode: 'free', holders: [] });
    // read-only is shared, and excludes writers
    const r1 = await a.fs.open('vm1/vm1.vmx', 'read-only');
    const r2 = await b.fs.open('vm1/vm1.vmx', 'read-only');
    t.equal((await r2.read(0, 1)).toString(), 'x');
    await t.rejects(r2.write(0, Buffer.from('y')), esx('INVALID_STATE'));
    await t.rejects(a.fs.open('vm1/vm1.vmx', 'exclusive'), esx('FILE_LOCKED'));
    await t.rejects(b.fs.open('vm1/vm1.vmx', 'multi-writer'), esx('FILE_LOCKED'));
    t.equal((await a.fs.lockInfo('vm1/vm1.vmx')).holders.length, 2);
    await r1.close();
    await r2.close();
    // multi-writer: shared writes into an inflated (eager-zeroed) file, no allocation
    const disk = await a.fs.open('vm1/shared.vmdk', 'exclusive', { create: true });
    await disk.truncate(256 * 1024);
    await disk.inflate();
    await disk.close();
    const m1 = await a.fs.open('vm1/shared.vmdk', 'multi-writer');
    const m2 = await b.fs.open('vm1/shared.vmdk', 'multi-writer');
    await m1.write(0, pattern(512, 1));
    await m2.write(512, pattern(512, 2));
    t.ok((await m2.read(0, 512)).equals(pattern(512, 1)), 'each sees the other\'s writes');
    t.ok((await m1.read(512, 512)).equals(pattern(512, 2)));
    await t.rejects(m1.write(256 * 1024, Buffer.alloc(512)), esx('INVALID_STATE'), 'multi-writer cannot grow the file');
    await m1.close();
    await m2.close();
    const sa = a.fs.atomicStats();
    if (ats) t.ok(sa.ats > 0 && sa.reservations === 0, `COMPARE AND WRITE used (${JSON.stringify(sa)})`);
    else t.ok(sa.reservations > 0 && sa.ats === 0, `RESERVE/RELEASE used (${JSON.stringify(sa)})`);
    t.equal(a.dev.stats.compareAndWrites > 0, ats, 'the device saw the matching commands');
    t.same((await fsck(san.device('f'))).errors, []);
    await a.fs.unmount();
    await b.fs.unmount();
  });

  t.test(`${path}: a dead host's lock is breakable only after the lease; the old owner gets LOCK_LOST`, async (t) => {
    const san = await formatted();
    const a = await manualHost(san, 1, { ats });
    const b = await manualHost(san, 2, { ats });
    const fa = await a.fs.open('vm.vmx', 'exclusive', { create: true });
    await fa.write(0, Buffer.from('owned by a'));
    await b.fs.heartbeatTick(); // b sees a's current beat now
    t.equal(b.fs.heartbeatOf(1)?.liveness, 'alive');
    t.same(b.fs.liveHosts().map((h) => h.hostId), [1, 2]);
    // a freezes: no more beats. Just before the lease, the lock holds.
    await liveFor(b, MANUAL_HB.leaseMs - 1);
    await t.rejects(b.fs.open('vm.vmx', 'exclusive'), esx('FILE_LOCKED'), 'not breakable before the lease');
    t.equal(b.fs.heartbeatOf(1)?.liveness, 'alive');
    await liveFor(b, 2);
    t.equal(b.fs.heartbeatOf(1)?.liveness, 'dead', 'past the lease: dead to the datastore');
    t.same(b.fs.liveHosts().map((h) => h.hostId), [2]);
    const genBefore = (await b.fs.lockInfo('vm.vmx')).gen;
    const fb = await b.fs.open('vm.vmx', 'exclusive');
    const info = await b.fs.lockInfo('vm.vmx');
    t.ok(info.gen > genBefore, 'breaking bumped the generation');
    t.match(info.holders, [{ hostId: 2 }]);
    t.equal(b.fs.heartbeatOf(1)?.liveness, 'unmounted', 'a was recovered (slot reclaimed)');
    t.equal((await fb.read(0, 10)).toString(), 'owned by a');
    // a wakes up (its clock did not move: it does not know it was frozen)
    const writesBefore = a.dev.stats.writes;
    await t.rejects(a.fs.heartbeatTick(), esx('LOCK_LOST'), 'its next beat finds its slot reclaimed');
    await t.rejects(fa.write(0, Buffer.from('late')), esx('LOCK_LOST'));
    await t.rejects(fa.read(0, 1), esx('LOCK_LOST'));
    await t.rejects(fa.flush(), esx('LOCK_LOST'));
    await t.rejects(a.fs.create('other'), esx('LOCK_LOST'));
    t.equal(a.dev.stats.writes, writesBefore, 'a wrote nothing after losing the lock');
    t.equal((await fb.read(0, 10)).toString(), 'owned by a', 'the data is b\'s to change now');
    await fa.close();
    await a.fs.unmount(); // fenced: writes nothing
    // a mounts again (new incarnation) and sees b as the owner
    const a2 = await mount(san.device('esx01-again', ats), { ...MANUAL_HB, hostId: 1, leaseMs: 100, heartbeatMs: 10, fenceMs: 50 });
    await t.rejects(a2.open('vm.vmx', 'exclusive'), esx('FILE_LOCKED', { holders: [2] }));
    await fb.close();
    t.same((await fsck(san.device('f'))).errors, []);
    await a2.unmount();
    await b.fs.unmount();
  });

  t.test(`${path}: a host frozen past its fence time issues no further write`, async (t) => {
    const san = await formatted();
    const a = await manualHost(san, 1, { ats });
    const fa = await a.fs.open('disk', 'exclusive', { create: true });
    await fa.write(0, pattern(4096, 1));
    await a.fs.heartbeatTick();
    a.clock.advance(MANUAL_HB.fenceMs - 1);
    await fa.write(0, pattern(4096, 2)); // still within the fence
    a.clock.advance(2); // SIGSTOP for longer than the fence, then SIGCONT
    const writes = a.dev.stats.writes + a.dev.stats.compareAndWrites;
    await t.rejects(fa.write(0, pattern(4096, 3)), esx('LOCK_LOST', { reason: 'FENCED' }));
    await t.rejects(a.fs.heartbeatTick(), esx('LOCK_LOST'), 'the heartbeat does not resume by itself');
    await t.rejects(a.fs.mkdir('x'), esx('LOCK_LOST'));
    t.equal(a.dev.stats.writes + a.dev.stats.compareAndWrites, writes, 'not one more write reached the LUN');
    t.ok(a.fs.fenced);
    t.ok((await a.dev.read(0, 1)).length, 'the device itself is fine');
    a.fs.abandon();
  });

  t.test(`${path}: concurrent metadata updates from two hosts in one directory`, async (t) => {
    const san = await formatted();
    const a = await manualHost(san, 1, { ats });
    const b = await manualHost(san, 2, { ats });
    await a.fs.mkdir('shared');
    const work = (fs: typeof a.fs, tag: string) =>
      (async () => {
        for (let i = 0; i < 12; i++) {
          await fs.writeFile(`shared/${tag}-${i}`, pattern(3000 + i, i));
          if (i % 3 === 2) await fs.unlink(`shared/${tag}-${i - 1}`);
        }
      })();
    await Promise.all([work(a.fs, 'a'), work(b.fs, 'b'), work(a.fs, 'a2')]);
    const names = (await b.fs.readdir('shared')).map((e) => e.name);
    t.equal(names.length, 3 * 8);
    for (const n of names) {
      const i = Number(n.split('-')[1]);
      t.ok((await b.fs.readFile(`shared/${n}`)).equals(pattern(3000 + i, i)), `${n} intact`);
    }
    t.same((await fsck(san.device('f'))).errors, []);
    await a.fs.unmount();
    await b.fs.unmount();
  });
}

t.test('a host id in use by a live host cannot be mounted twice', async (t) => {
  const san = await formatted();
  const live = await mount(san.device('one'), { hostId: 3, heartbeatMs: 20, leaseMs: 300, fenceMs: 150 });
  await t.rejects(mount(san.device('two'), { hostId: 3, heartbeatMs: 20, leaseMs: 300, fenceMs: 150 }), esx('INVALID_STATE', { hostId: 3 }));
  t.same(await live.readdir('/'), []);
  await live.unmount();
  const again = await mount(san.device('two'), { hostId: 3, heartbeatMs: 20, leaseMs: 300, fenceMs: 150 });
  await again.unmount();
});

t.test('heartbeat settings are checked', async (t) => {
  const san = await formatted();
  await t.rejects(mount(san.device('x'), { hostId: 1, heartbeatMs: 1000, leaseMs: 1500 }), esx('INVALID_ARGUMENT'));
});
