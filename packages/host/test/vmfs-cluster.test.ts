/**
 * Three ESX hosts as three processes, each with its own iSCSI session to one esxemu target
 * (loopback), on one VMFS LUN:
 *  - concurrent creates, writes and deletes from all three leave fsck clean and every kept
 *    file readable from a fourth host;
 *  - a host killed with SIGKILL in the middle of metadata updates leaves fsck clean (before
 *    and after recovery), the other hosts go on, and its lock is refused before the lease
 *    and breakable after it.
 */
import t from 'tap';
import { performance } from 'node:perf_hooks';
import { EsxError } from '@esxemu/shared';
import { fsck, mkfs, mount } from '../src/vmfs/index.js';
import { pattern } from './vmfs-helpers.js';
import { connectHost, HostChild, startTarget } from './vmfs-iscsi-helpers.js';

t.setTimeout(60_000);
const HB = { heartbeatMs: 200, leaseMs: 1500 };

const { target, portal } = await startTarget(64);
t.teardown(() => target.close());
const admin = await connectHost(portal, 8);
t.teardown(() => admin.init.close());
await mkfs(admin.dev, { label: 'shared', fileBlockSize: 64 * 1024, maxHosts: 8, maxFiles: 512 });

const children: HostChild[] = [];
t.teardown(async () => {
  for (const c of children) await c.kill('SIGKILL');
});

t.test('three hosts create, write and delete at once: fsck clean', async (t) => {
  const hosts = [1, 2, 3].map((hostId) => new HostChild({ portal, hostId, mode: 'churn', iterations: 6, ...HB }));
  children.push(...hosts);
  const codes = await Promise.all(hosts.map((h) => Promise.race([h.exit, new Promise((r) => setTimeout(() => r('timeout'), 45_000).unref())])));
  t.same(codes, [0, 0, 0], `all three finished (stderr: ${hosts.map((h) => h.stderr).join(' | ')})`);
  for (const h of hosts) t.equal(h.count('progress'), 6, `host ${h.events[0]?.['hostId']} did every round`);
  const report = await fsck(admin.dev);
  t.same(report.errors, [], 'fsck clean');
  t.same(report.warnings, [], 'no leftovers: every host unmounted cleanly');
  const fs = await mount(admin.dev, { hostId: 8, ...HB });
  const names = (await fs.readdir('/')).map((e) => e.name);
  t.same(names, ['h1-vm0', 'h1-vm2', 'h1-vm4', 'h2-vm0', 'h2-vm2', 'h2-vm4', 'h3-vm0', 'h3-vm2', 'h3-vm4']);
  for (const host of [1, 2, 3]) {
    for (const i of [0, 2, 4]) {
      const seed = host * 1000 + i;
      const disk = await fs.readFile(`h${host}-vm${i}/disk-flat.vmdk`);
      t.ok(disk.subarray(4096).equals(pattern(100 * 1024 + seed, seed)) && disk.subarray(0, 4096).equals(Buffer.alloc(4096)), `h${host}-vm${i} disk intact`);
    }
  }
  await fs.unmount();
});

t.test('a host killed -9 during metadata updates: fsck clean, others go on, its lock breakable only after the lease', async (t) => {
  const hosts = [1, 2, 3].map((hostId) => new HostChild({ portal, hostId, mode: 'hold-and-churn', ...HB }));
  children.push(...hosts);
  for (const h of hosts) await h.waitFor('ready and 2 rounds', (ev) => ev.some((e) => e.event === 'progress' && (e['n'] as number) >= 2), 30_000);
  const fs = await mount(admin.dev, { hostId: 8, ...HB });
  t.teardown(() => fs.unmount());
  await t.rejects(fs.open('locks/h2.lck', 'exclusive'), { code: 'FILE_LOCKED', details: { holders: [2] } }, 'held while host 2 lives');

  const victim = hosts[1]!;
  await victim.kill('SIGKILL');
  const killedAt = performance.now();
  await t.rejects(fs.open('locks/h2.lck', 'exclusive'), { code: 'FILE_LOCKED' }, 'still refused right after the kill');

  const others = [hosts[0]!, hosts[2]!];
  const base = others.map((h) => h.count('progress'));
  await Promise.all(others.map((h, i) => h.waitFor('2 more rounds after the kill', (ev) => ev.filter((e) => e.event === 'progress').length >= base[i]! + 2, 30_000)));
  t.pass('the other hosts went on');

  // Poll for the lock: it must not be breakable before the lease.
  let refusedAfterKill = 0;
  let broken = null;
  while (!broken && performance.now() - killedAt < 20_000) {
    try {
      broken = await fs.open('locks/h2.lck', 'exclusive');
    } catch (err) {
      if (!(err instanceof EsxError && err.code === 'FILE_LOCKED')) throw err;
      refusedAfterKill++;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const elapsed = performance.now() - killedAt;
  t.ok(broken, `the lock was broken ${Math.round(elapsed)} ms after the kill (${refusedAfterKill} attempts refused)`);
  // Host 2 beat at most one heartbeat before it died, and we judge from when we saw that beat.
  t.ok(elapsed >= HB.leaseMs - HB.heartbeatMs, `not before the lease: ${Math.round(elapsed)} ms >= ${HB.leaseMs - HB.heartbeatMs} ms`);
  t.equal((await broken!.read(0, 16)).toString(), 'held by host 2');
  await broken!.close();
  t.equal(fs.heartbeatOf(2)?.liveness, 'unmounted', 'host 2 was recovered');

  for (const h of others) await h.kill('SIGTERM');
  t.same(others.map((h) => h.count('exit')), [1, 1], 'the others unmounted cleanly');
  const report = await fsck(admin.dev);
  t.same(report.errors, [], 'fsck clean');
  t.notOk(report.warnings.some((w) => w.kind === 'PENDING_JOURNAL'), 'no journal left to replay');
});

t.test('fsck right after a kill -9, before any recovery, is clean too', async (t) => {
  const h = new HostChild({ portal, hostId: 5, mode: 'hold-and-churn', ...HB });
  children.push(h);
  await h.waitFor('3 rounds', (ev) => ev.some((e) => e.event === 'progress' && (e['n'] as number) >= 3), 30_000);
  await h.kill('SIGKILL');
  const report = await fsck(admin.dev, { observeMs: HB.leaseMs });
  t.same(report.errors, [], 'no error: the dead host\'s committed journal is taken into account');
  t.ok(report.warnings.some((w) => w.kind === 'STALE_LOCK' && w.hostId === 5), 'its locks are reported as stale');
});
