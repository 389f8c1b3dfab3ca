/**
 * The shared datastore in a real cluster: `cluster up` formats the LUN and all three host
 * processes mount it; creating a VM writes its folder, .vmx and thin disk; a diskrecords guest
 * writes and flushes records through VMM -> VMkernel -> VMFS -> iSCSI; its host is killed with
 * SIGKILL and another mount of the datastore (this test process, as a fourth host) reads the
 * VM's disk once the dead host's lock is breakable: every record the guest reported flushed
 * before the kill is there. Registering from a .vmx path works and refuses corrupt files;
 * hosts create and delete VM folders at the same time; deleting a VM removes its files; fsck
 * finds the datastore consistent, the dead host's journal included.
 */
import t from 'tap';
import { countRecords, diskRecordsKey } from '@esxemu/guest';
import { Datastore, encodeVmx, vmfs } from '@esxemu/host';
import { silentLogger, type HostInfo, type TaskInfo, type VmInfo } from '@esxemu/shared';
import { Sandbox, uniqueVmNetwork, until } from './helpers/cli.js';

t.setTimeout(240_000);

t.test('VMs on the shared VMFS datastore of a 3-host cluster', async (t) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const vmNetwork = uniqueVmNetwork();
  await sb.json(['cluster', 'up', '--hosts', '3', '--ephemeral-ports', '--host-memory', '512', '--vm-network', vmNetwork, '--heartbeat-interval', '250', '--host-timeout', '3000', '--stats-interval', '300'], { timeoutMs: 120_000 });
  const iscsi = sb.clusterState().processes.find((p) => p.role === 'iscsi')!;
  const url = `iscsi://${iscsi.urls['iscsi']}/iqn.2026-11.io.esxemu:datastore1/0`;

  const hosts = await until(
    'all three hosts to mount the datastore and see each other',
    async () => {
      const hs = await sb.json<HostInfo[]>(['host', 'ls']);
      return hs.length === 3 && hs.every((h) => h.stats?.datastore?.state === 'mounted' && h.stats.datastore.liveHosts.length === 3) ? hs : null;
    },
    60_000,
  );
  t.same(hosts.map((h) => h.stats!.datastore!.name), ['datastore1', 'datastore1', 'datastore1'], 'one VMFS datastore1, mounted by every host');

  // Concurrent metadata changes from all three hosts: each writes VM folders at the same time.
  const names = Array.from({ length: 6 }, (_, i) => `c${i}`);
  const created = await Promise.all(names.map((n, i) => sb.json<VmInfo>(['vm', 'create', n, '--memory', '8', '--disk', '8', '--host', `esx0${(i % 3) + 1}`])));
  t.same(created.map((v) => v.vmxPath), names.map((n) => `[datastore1] ${n}/${n}.vmx`), 'six VMs created at once by the three hosts, each with its files');

  const dr = await sb.json<VmInfo>(['vm', 'create', 'dr1', '--workload', 'diskrecords', '--records-per-s', '500', '--flush-every', '8', '--disk', '16', '--memory', '16', '--seed', '77', '--host', 'esx01']);
  t.equal(dr.vmxPath, '[datastore1] dr1/dr1.vmx', 'the VM has its files on the datastore');
  const plain = await sb.json<VmInfo>(['vm', 'create', 'plain1', '--memory', '16']);
  t.equal(plain.vmxPath, '[datastore1] plain1/plain1.vmx');

  // A fourth mount, as another host would: it sees the files the cluster wrote.
  const checker = await Datastore.connect({ url, hostName: 'checker', logger: silentLogger() });
  t.teardown(() => checker.close());
  t.same((await checker.fs.readdir('dr1')).map((e) => e.name).sort(), ['dr1-flat.vmdk', 'dr1.vmdk', 'dr1.vmx', 'vmware.log'], 'folder, .vmx, descriptor, thin extent, log');
  t.equal((await checker.readVmx(dr.vmxPath!)).seed, 77, 'the .vmx holds the configuration');

  const on = await sb.json<TaskInfo>(['vm', 'power', 'on', 'dr1', '--host', 'esx01']);
  t.equal(on.state, 'success', 'dr1 powered on');
  t.ok(await checker.fs.exists('dr1/dr1.vswp'), 'power-on created the .vswp');
  t.not((await checker.fs.lockInfo('dr1/dr1-flat.vmdk')).mode, 'free', 'and locked the disk');
  await t.rejects(checker.powerOn(await checker.readVmx(dr.vmxPath!)), { code: 'FILE_LOCKED' }, 'another host cannot run the VM while esx01 does');

  const flushed = await until(
    'the guest to report 300 flushed records',
    async () => {
      const v = await sb.json<VmInfo>(['vm', 'info', 'dr1']);
      const f = v.stats?.guest?.['flushed'] ?? 0;
      return f >= 300 ? f : null;
    },
    60_000,
  );
  const esx01 = sb.clusterState().processes.find((p) => p.name === 'esx01')!;
  process.kill(esx01.pid, 'SIGKILL');

  // The dead host's lock becomes breakable after the lease; then its disk is read here.
  const file = await until(
    "esx01's lock on dr1's disk to be breakable",
    async () => {
      try {
        return await checker.fs.open('dr1/dr1-flat.vmdk', 'read-only');
      } catch (err) {
        if ((err as { code?: string }).code === 'FILE_LOCKED') return null;
        throw err;
      }
    },
    30_000,
    500,
  );
  const image = await file.read(0, 16 * 1024 * 1024);
  await file.close();
  const onDisk = countRecords(image, diskRecordsKey(77));
  t.ok(onDisk >= flushed, `${onDisk} records on the disk, at least the ${flushed} reported flushed before the kill`);

  // Register from a path: a valid .vmx of a VM the inventory does not know, then bad ones.
  await checker.fs.mkdir('reg1');
  await checker.fs.writeFile('reg1/reg1.vmx', encodeVmx({ id: 'reg1-id', name: 'reg1', memoryMiB: 16, vcpus: 1, workload: { kind: 'idle' }, seed: 5, ip: vmNetwork.replace('0.0/16', '9.9') }));
  const reg = await sb.json<VmInfo>(['vm', 'register', '[datastore1] reg1/reg1.vmx', '--host', 'esx02']);
  t.same([reg.name, reg.vmxPath], ['reg1', '[datastore1] reg1/reg1.vmx'], 'registered from its .vmx');
  const regOn = await sb.json<TaskInfo>(['vm', 'power', 'on', 'reg1', '--host', 'esx03']);
  t.equal(regOn.state, 'success', 'and it powers on on another host');
  await checker.fs.mkdir('bad1');
  await checker.fs.writeFile('bad1/bad1.vmx', Buffer.from('displayName = "bad1"\nmemSize = lots\n'));
  const bad = await sb.cli(['vm', 'register', '[datastore1] bad1/bad1.vmx']);
  t.match(bad.stderr, /CORRUPT/, 'a corrupt .vmx: CORRUPT');
  const missing = await sb.cli(['vm', 'register', '[datastore1] nope/nope.vmx']);
  t.match(missing.stderr, /NOT_FOUND/, 'a missing one: NOT_FOUND');
  const dup = await sb.cli(['vm', 'register', dr.vmxPath!]);
  t.match(dup.stderr, /NAME_IN_USE/, 'one already in the inventory: NAME_IN_USE');

  // Deletes at the same time, by the surviving hosts (one of the VMs was registered on esx01).
  const removed = await Promise.all(names.slice(0, 3).map((n) => sb.cli(['vm', 'rm', n])));
  t.same(removed.map((r) => r.exitCode), [0, 0, 0], 'three deleted at once');
  t.same((await Promise.all(names.map((n) => checker.fs.exists(n)))), [false, false, false, true, true, true], 'their folders are gone, the others are there');

  const rm = await sb.cli(['vm', 'rm', 'plain1']);
  t.equal(rm.exitCode, 0, rm.stderr);
  t.equal(await checker.fs.exists('plain1'), false, 'deleting a VM removes its folder');

  const off = await sb.json<TaskInfo>(['vm', 'power', 'off', 'reg1']);
  t.equal(off.state, 'success');
  t.equal(await checker.fs.exists('reg1/reg1.vswp'), false, 'power-off removed the .vswp');
  // The dead host's journal and locks are recovered by the survivors; the file system is consistent.
  await checker.fs.recoverDeadHosts();
  const dev = checker.fs.dev;
  const report = await vmfs.fsck(dev);
  t.same(report.errors, [], 'fsck: no error');
});
