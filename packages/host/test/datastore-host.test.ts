/**
 * The host's datastore layer against a real iSCSI target (in this process, memory LUN): VM files
 * and power-on locks on VMFS, with COMPARE AND WRITE and with reservations (a LUN that offers no
 * ATS), two hosts racing to power on the same VM 100 times (exactly one wins each time), a
 * full datastore reaching the guest as NO_SPACE and the user as a VM event while the host and
 * its other VM go on, and .vmx / .vmdk files that are wrong refused as CORRUPT.
 */
import t from 'tap';
import { diskioStatus } from '@esxemu/guest';
import { configFromFlags, startIscsiTarget } from '@esxemu/iscsi';
import { silentLogger, waitFor, type VmConfig } from '@esxemu/shared';
import { Datastore } from '../src/datastore/datastore.js';
import { DatastoreMount } from '../src/datastore/mount.js';
import { formatDatastore } from '../src/datastore/format.js';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import { Vmkernel, type VmEvent } from '../src/vmkernel/vmkernel.js';

t.setTimeout(120_000);
const HB = { heartbeatMs: 200, leaseMs: 1500 };

function vm(name: string, over: Partial<VmConfig> = {}): VmConfig {
  return { id: `${name}-id`, name, memoryMiB: 8, vcpus: 1, workload: { kind: 'idle' }, seed: 1, ip: '127.77.252.1', ...over };
}

async function san(lunMiB: number, ats: boolean) {
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config: configFromFlags({ memory: true, lunSize: lunMiB, ats }) });
  const url = `iscsi://127.0.0.1:${target.port}/iqn.2026-11.io.esxemu:datastore1/0`;
  await formatDatastore(url);
  return { target, url };
}

for (const ats of [true, false]) {
  t.test(`${ats ? 'ATS' : 'no ATS (reservations)'}: VM files, power-on locks, 100 power-on races`, async (t) => {
    const { target, url } = await san(64, ats);
    t.teardown(() => target.close());
    t.equal(await formatDatastore(url), 'existing', 'formatting again leaves the datastore as it is');
    const a = await Datastore.connect({ url, hostName: 'esxa', heartbeat: HB, logger: silentLogger() });
    const b = await Datastore.connect({ url, hostName: 'esxb', heartbeat: HB, logger: silentLogger() });
    t.teardown(async () => {
      await a.close();
      await b.close();
    });
    t.equal(a.fs.superblock.label, 'datastore1');
    t.not(a.fs.hostId, b.fs.hostId, 'each host claimed its own heartbeat slot');
    const c = vm('race1', { diskMiB: 4 });
    t.equal(await a.createVm(c), '[datastore1] race1/race1.vmx');
    await t.rejects(b.createVm(c), { code: 'NAME_IN_USE' }, 'the folder exists');
    t.same(await b.readVmx('[datastore1] race1/race1.vmx'), c, 'the other host reads the same configuration');

    let aWins = 0;
    let bWins = 0;
    for (let i = 0; i < 100; i++) {
      const [ra, rb] = await Promise.allSettled([a.powerOn(c), b.powerOn(c)]);
      const won = [ra, rb].filter((r) => r.status === 'fulfilled');
      const lost = [ra, rb].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (won.length !== 1 || (lost[0]?.reason as { code?: string })?.code !== 'FILE_LOCKED') {
        t.fail(`round ${i}: ${won.length} winners (${lost.map((l) => (l.reason as Error).message).join('; ')})`);
        break;
      }
      if (ra.status === 'fulfilled') aWins++;
      else bWins++;
      const lease = (won[0] as PromiseFulfilledResult<Awaited<ReturnType<Datastore['powerOn']>>>).value;
      await lease.disk?.close();
      await lease.release();
    }
    t.equal(aWins + bWins, 100, `exactly one host won each of 100 races (esxa ${aWins}, esxb ${bWins})`);
    const st = a.fs.atomicStats();
    if (ats) t.ok(st.ats > 0 && st.reservations === 0, `locks taken with COMPARE AND WRITE (${st.ats}), no reservation`);
    else t.ok(st.reservations > 0 && st.ats === 0, `the LUN offers no ATS: locks taken with reservations (${st.reservations}), no COMPARE AND WRITE succeeded`);
    t.same((await a.fs.readdir('race1')).map((e) => e.name).sort(), ['race1-flat.vmdk', 'race1.vmdk', 'race1.vmx', 'vmware.log'], 'no .vswp left behind');
    await b.deleteVm('race1');
    t.equal(await a.fs.exists('race1'), false, 'deleted with its files');
  });
}

t.test('a full datastore: the guest gets NO_SPACE, the user a VM event, the host and its other VM go on', async (t) => {
  const { target, url } = await san(24, true);
  t.teardown(() => target.close());
  const ds = await Datastore.connect({ url, hostName: 'esxfull', heartbeat: HB, logger: silentLogger() });
  t.teardown(() => ds.close());
  const k = new Vmkernel({ cpuCores: 2, cpuMhz: 2000, machine: MachineMemory.create(64), logger: silentLogger(), sampleIntervalMs: 200, attachStorage: (c) => ds.powerOn(c) });
  t.teardown(() => k.close());
  const events: VmEvent[] = [];
  k.onVmEvent((e) => events.push(e));
  const big = vm('big', { diskMiB: 64, workload: { kind: 'diskio', pattern: 'seqwrite', blockKiB: 64, queueDepth: 4 } });
  const other = vm('other', { ip: '127.77.252.2' });
  await ds.createVm(big);
  await ds.createVm(other);
  await k.powerOn(big);
  await k.powerOn(other);
  const bigVm = k.get('big-id');
  await waitFor('the guest to see disk errors', () => diskioStatus(bigVm.regs).errors > 0, 60_000);
  await waitFor('a diskError event', () => events.some((e) => e.event === 'diskError'), 10_000);
  const ev = events.find((e) => e.event === 'diskError')!;
  t.match(ev.message, /NO_SPACE/, `the event says why: ${ev.message}`);
  t.ok(diskioStatus(bigVm.regs).ops > 0, 'writes succeeded until the datastore was full');
  t.same(k.list().map((v) => v.powerState).sort(), ['poweredOn', 'poweredOn'], 'both VMs still run');
  const before = events.filter((e) => e.event === 'diskError').length;
  await new Promise((r) => setTimeout(r, 1000));
  t.ok(events.filter((e) => e.event === 'diskError').length - before <= 1, 'events are throttled, not one per failed write');
  await k.powerOff('big-id');
  await k.powerOff('other-id');
  const df = await ds.fs.df();
  t.ok(df.freeBytes < df.fileBlockSize * 2, `the datastore is full (${df.freeBytes} bytes free)`);
});

t.test('wrong files on the datastore: CORRUPT, nothing registered or powered on', async (t) => {
  const { target, url } = await san(24, true);
  t.teardown(() => target.close());
  const ds = await Datastore.connect({ url, hostName: 'esxbad', heartbeat: HB, logger: silentLogger() });
  t.teardown(() => ds.close());
  await ds.fs.mkdir('x');
  const cases: [string, string][] = [
    ['not key = value', 'displayName = "x"\nthis is not vmx\n'],
    ['a field out of range', 'displayName = "x"\nmemSize = "0"\nnumvcpus = "1"\nesxemu.id = "x"\nesxemu.seed = "1"\nesxemu.ip = "127.0.0.9"\nesxemu.workload = "{\\"kind\\":\\"idle\\"}"\n'],
    ['workload not JSON', 'displayName = "x"\nesxemu.workload = "{"\n'],
  ];
  for (const [what, text] of cases) {
    await ds.fs.writeFile('x/x.vmx', Buffer.from(text));
    await t.rejects(ds.readVmx('x/x.vmx'), { code: 'CORRUPT' }, what);
  }
  await ds.fs.writeFile('x/x.vmx', Buffer.alloc(70 * 1024, 0x41));
  await t.rejects(ds.readVmx('x/x.vmx'), { code: 'CORRUPT' }, 'too large');
  await t.rejects(ds.readVmx('../etc/passwd'), { code: 'INVALID_ARGUMENT' }, 'a path out of the datastore');
  const c = vm('desc', { diskMiB: 4 });
  await ds.createVm(c);
  await ds.fs.writeFile('desc/desc.vmdk', Buffer.from('# Disk DescriptorFile\nno extent here\n'));
  await t.rejects(ds.powerOn(c), { code: 'CORRUPT' }, 'a descriptor without an extent line');
  t.equal(await ds.fs.exists('desc/desc.vswp'), false, 'and the failed power-on left no .vswp');
});

t.test('a host started before its SAN mounts the datastore once the target is up; an unformatted LUN is an error it reports', async (t) => {
  // A port nothing listens on yet: the target comes up there later.
  const probe = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config: configFromFlags({ memory: true, lunSize: 24 }) });
  const port = probe.port;
  await probe.close();
  const url = `iscsi://127.0.0.1:${port}/iqn.2026-11.io.esxemu:datastore1/0`;
  const m = new DatastoreMount({ url, hostName: 'esxlate', heartbeat: HB, logger: silentLogger() });
  t.teardown(() => m.close());
  m.start();
  await waitFor('the first attempt to fail', () => m.status().state === 'error', 10_000);
  t.match(m.status().error, /TARGET_UNREACHABLE|ECONNREFUSED|refused/i, `while the SAN is down: ${m.status().error}`);
  t.throws(() => m.require(), { code: 'INVALID_STATE' }, 'VM file operations say why');
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port, logger: silentLogger(), config: configFromFlags({ memory: true, lunSize: 24 }) });
  t.teardown(() => target.close());
  await waitFor('an unformatted LUN to be reported', () => /NOT_FORMATTED/.test(m.status().error ?? ''), 20_000);
  t.equal(m.status().state, 'error', 'a LUN without a file system is not mounted, and not formatted by the host');
  await formatDatastore(url);
  await waitFor('the mount', () => m.status().state === 'mounted', 20_000);
  await m.refresh();
  t.same([m.status().name, m.status().liveHosts], ['datastore1', ['esxlate']], 'mounted by itself, with backoff, once there is a file system');
});
