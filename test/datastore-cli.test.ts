/**
 * `esxemu datastore ...` and `esxemu vmkfstools ...` as a user runs them: the real CLI as a
 * child process against a real esxemu iSCSI target process on loopback, with a VMFS host
 * mounted in this test process beside it (real heartbeats, real locks).
 *
 * Covered: stable error codes (TARGET_UNREACHABLE with no target or nothing listening,
 * INVALID_ARGUMENT, NOT_FORMATTED, NOT_FOUND, NAME_IN_USE, FILE_LOCKED, INVALID_STATE), the
 * default target from the local cluster's cluster.json, mkfs refusals (formatted LUN without
 * --force, live heartbeat with --force) that change nothing, a thin disk with its VMware
 * descriptor, inflate, lock holders with liveness, fsck exit codes (0 clean, 1 on a corrupted
 * sector), and that read-only commands leave the live host undisturbed.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { vmfs } from '@esxemu/host';
import { IscsiInitiator } from '@esxemu/iscsi';
import { startEsxemuTarget, type EsxemuTarget } from '@esxemu/scripts/peers/esxemu-target.js';
import { freePort } from '@esxemu/scripts/peers/free-port.js';
import { Sandbox, type CliResult } from './helpers/cli.js';

t.setTimeout(120_000);

interface LsRow {
  label: string;
  uuid: string;
  capacityBytes: number;
  freeBytes: number;
  liveHosts: string[];
  hosts: { hostId: number; name: string; liveness: string }[];
}

interface BrowseRow {
  name: string;
  type: string;
  size: number;
  allocatedBytes: number;
  lock: { mode: string; holders: { hostId: number; hostName: string }[] };
}

function failed(t: Test, r: CliResult, code: string, what: string): void {
  t.equal(r.exitCode, 1, `${what}: exit code 1`);
  t.match(r.stderr, new RegExp(`^esxemu: ${code}: `), `${what}: ${code} (${r.stderr.trim()})`);
}

t.test('datastore and vmkfstools commands against a real target', async (t) => {
  const sb = new Sandbox('esxemu-ds-cli-');
  let target: EsxemuTarget | null = null;
  t.teardown(async () => {
    await target?.stop();
    await sb.cleanup();
  });
  target = await startEsxemuTarget({ dir: join(sb.home, 'iscsi'), sizeMiB: 64 });
  const T = ['--target', target.url];
  const ds = (args: string[]) => sb.cli([...args, ...T]);
  const json = <X>(args: string[]) => sb.json<X>([...args, ...T]);

  // --- before formatting, and bad targets --------------------------------------------------------
  failed(t, await ds(['datastore', 'ls']), 'NOT_FORMATTED', 'ls on a blank LUN');
  failed(t, await ds(['datastore', 'fsck']), 'NOT_FORMATTED', 'fsck on a blank LUN');
  failed(t, await ds(['vmkfstools', 'create', 'vm1/vm1.vmdk', '--size', '8M']), 'NOT_FORMATTED', 'create on a blank LUN');
  failed(t, await sb.cli(['datastore', 'ls']), 'TARGET_UNREACHABLE', 'no --target and no local cluster');
  const closed = await freePort();
  failed(t, await sb.cli(['datastore', 'ls', '--target', `iscsi://127.0.0.1:${closed}/${target.targetName}/0`]), 'TARGET_UNREACHABLE', 'nothing listens there');
  failed(t, await sb.cli(['datastore', 'ls', '--target', 'http://example/x']), 'INVALID_ARGUMENT', 'not an iscsi URL');

  // --- mkfs ----------------------------------------------------------------------------------------
  const made = await json<{ label: string; uuid: string }>(['datastore', 'mkfs', '--label', 'ds-test']);
  t.equal(made.label, 'ds-test');
  const again = await ds(['datastore', 'mkfs']);
  failed(t, again, 'INVALID_STATE', 'mkfs on a formatted LUN without --force');
  t.match(again.stderr, /--force/, 'says how to overwrite');
  const [ls] = await json<LsRow[]>(['datastore', 'ls']);
  t.match(ls, { label: 'ds-test', uuid: made.uuid, liveHosts: [] }, 'the datastore is still the one formatted first');
  t.ok(ls!.capacityBytes > 32 * 1024 * 1024 && ls!.freeBytes === ls!.capacityBytes, `capacity ${ls!.capacityBytes}, all free`);

  // --- the local cluster's target is the default -----------------------------------------------------
  mkdirSync(sb.home, { recursive: true });
  writeFileSync(join(sb.home, 'cluster.json'), JSON.stringify({ version: 1, startedAt: Date.now(), vcenterUrl: 'http://127.0.0.1:1', processes: [{ role: 'iscsi', name: 'iscsi', pid: target.pid, urls: { iscsi: target.portal }, logFile: '' }] }));
  const [viaCluster] = await sb.json<LsRow[]>(['datastore', 'ls']);
  t.equal(viaCluster!.uuid, made.uuid, 'without --target: the target of cluster.json');

  // --- a thin disk and its descriptor --------------------------------------------------------------
  const created = await json<{ descriptor: string; extent: string; sizeBytes: number; allocatedBytes: number }>(['vmkfstools', 'create', 'vm1/vm1.vmdk', '--size', '8M']);
  t.same(created, { descriptor: 'vm1/vm1.vmdk', extent: 'vm1/vm1-flat.vmdk', sizeBytes: 8 * 1024 * 1024, allocatedBytes: 0, label: 'ds-test' });
  const desc = await ds(['datastore', 'cat', 'vm1/vm1.vmdk']);
  t.equal(desc.exitCode, 0);
  for (const line of ['# Disk DescriptorFile', 'version=1', 'createType="vmfs"', 'RW 16384 VMFS "vm1-flat.vmdk"']) t.ok(desc.stdout.split('\n').includes(line), `descriptor has: ${line}`);
  failed(t, await ds(['vmkfstools', 'create', 'vm1/vm1.vmdk', '--size', '8M']), 'NAME_IN_USE', 'create over an existing disk');
  failed(t, await ds(['vmkfstools', 'create', 'vm2/vm2.vmdk', '--size', '1000b']), 'INVALID_ARGUMENT', 'a size that is not whole sectors');
  failed(t, await ds(['vmkfstools', 'create', 'vm2/disk.img', '--size', '1M']), 'INVALID_ARGUMENT', 'not a .vmdk path');
  let rows = await json<BrowseRow[]>(['datastore', 'browse', 'vm1']);
  t.same(rows.map((r) => [r.name, r.type, r.size, r.allocatedBytes, r.lock.mode]), [
    ['vm1-flat.vmdk', 'file', 8 * 1024 * 1024, 0, 'free'],
    ['vm1.vmdk', 'file', Buffer.byteLength(desc.stdout + '\n'), 1024 * 1024, 'free'], // (the CLI helper strips the last newline)
  ], 'thin extent: nothing allocated; the descriptor takes one block');
  const root = await ds(['datastore', 'browse']);
  t.match(root.stdout, /vm1\/\s.*directory/, 'browse without a path lists the root');

  // --- a live host holds the disk ------------------------------------------------------------------
  const init = await IscsiInitiator.connect({ portal: target.portal, targetName: target.targetName, initiatorName: 'iqn.2026-11.io.esxemu:esx-test' });
  t.teardown(() => init.close());
  const dev = await vmfs.IscsiBlockDevice.open(init, { lun: 0, name: 'esx-test' });
  const host = await vmfs.mount(dev, { hostId: 'auto', hostName: 'esx-test', heartbeatMs: 200, leaseMs: 1000, fenceMs: 600 });
  t.teardown(() => host.unmount());
  const disk = await host.open('vm1/vm1-flat.vmdk', 'exclusive');
  const locks = await json<vmfs.ObservedLockInfo>(['vmkfstools', 'locks', 'vm1/vm1-flat.vmdk', '--window', '1000']);
  t.match(locks, { path: '/vm1/vm1-flat.vmdk', mode: 'exclusive', holders: [{ hostId: host.hostId, hostName: 'esx-test', liveness: 'alive' }] });
  t.equal(locks.holders.length, 1);
  const text = await ds(['vmkfstools', 'locks', 'vm1/vm1-flat.vmdk', '--window', '1000']);
  t.match(text.stdout, /exclusive[\s\S]*esx-test[\s\S]*alive/, 'the table names the holder and its liveness');
  failed(t, await ds(['vmkfstools', 'inflate', 'vm1/vm1.vmdk']), 'FILE_LOCKED', 'inflate of a disk a live host holds');
  const [live] = await json<LsRow[]>(['datastore', 'ls', '--window', '1000']);
  t.same(live!.liveHosts, ['esx-test'], 'ls shows the live host (and no CLI slot is live)');
  rows = await json<BrowseRow[]>(['datastore', 'browse', 'vm1']);
  t.match(rows[0], { name: 'vm1-flat.vmdk', lock: { mode: 'exclusive', holders: [{ hostId: host.hostId, hostName: 'esx-test' }] } });
  const forced = await ds(['datastore', 'mkfs', '--force']);
  failed(t, forced, 'INVALID_STATE', 'mkfs --force while a heartbeat is live');
  t.match(forced.stderr, /heartbeat is live/);
  t.equal(host.fenced, null, 'the live host was not disturbed by any of it');
  await disk.write(0, Buffer.alloc(4096, 7));
  await disk.close();
  await host.unmount();

  // --- inflate, then the lock is free again --------------------------------------------------------
  const inflated = await json<{ sizeBytes: number; allocatedBeforeBytes: number; allocatedBytes: number }>(['vmkfstools', 'inflate', 'vm1/vm1.vmdk']);
  t.same([inflated.allocatedBeforeBytes, inflated.allocatedBytes, inflated.sizeBytes], [1024 * 1024, 8 * 1024 * 1024, 8 * 1024 * 1024], 'every block allocated');
  t.match(await json<vmfs.ObservedLockInfo>(['vmkfstools', 'locks', 'vm1/vm1-flat.vmdk']), { mode: 'free', holders: [] });
  const thick = (await ds(['datastore', 'cat', 'vm1/vm1.vmdk'])).stdout;
  t.ok(thick.includes('RW 16384 VMFS "vm1-flat.vmdk"') && !thick.includes('thinProvisioned'), 'the descriptor no longer says thin');
  const hosts = await json<{ name: string; liveness: string }[]>(['datastore', 'hosts']);
  t.ok(hosts.length >= 2 && hosts.every((h) => h.liveness === 'ended'), `every slot ended after clean unmounts: ${hosts.map((h) => h.name)}`);
  t.ok(hosts.some((h) => h.name === 'esx-test') && hosts.some((h) => h.name.startsWith('cli-')), 'the test host and the CLI had slots of their own');

  // --- bad paths -------------------------------------------------------------------------------------
  failed(t, await ds(['datastore', 'cat', 'vm1/nope.vmx']), 'NOT_FOUND', 'cat of a missing file');
  failed(t, await ds(['datastore', 'browse', 'nope']), 'NOT_FOUND', 'browse of a missing folder');
  failed(t, await ds(['vmkfstools', 'locks', 'nope/x-flat.vmdk']), 'NOT_FOUND', 'locks of a missing file');
  failed(t, await ds(['vmkfstools', 'inflate', 'nope/x.vmdk']), 'NOT_FOUND', 'inflate of a missing disk');

  // --- fsck: clean, then a corrupted bitmap sector ---------------------------------------------------
  const clean = await ds(['datastore', 'fsck']);
  t.equal(clean.exitCode, 0, `fsck clean: ${clean.stdout}${clean.stderr}`);
  t.match(clean.stdout, /ds-test: clean/);
  const obs = await vmfs.observe(dev, { windowMs: 0 });
  const w = await init.write(0, obs.superblock.bitmapStart, Buffer.alloc(512, 0xee));
  t.ok(w.ok, 'corrupted one bitmap sector with a raw write');
  const bad = await ds(['datastore', 'fsck']);
  t.equal(bad.exitCode, 1, 'fsck exits 1 on findings');
  t.match(bad.stdout, /error\s.*BAD_RECORD|error\s.*BAD_CHECKSUM/, `the finding is printed: ${bad.stdout}`);
  const report = await sb.cli(['--json', 'datastore', 'fsck', ...T]);
  t.equal(report.exitCode, 1);
  t.equal((JSON.parse(report.stdout) as { clean: boolean }).clean, false);
});
