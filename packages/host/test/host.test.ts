/**
 * startHost as a whole: the vMotion listener (NOT_IMPLEMENTED for now, PORT_IN_USE when taken),
 * the vmkernel log, option checks, close().
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { silentLogger, type VmConfig } from '@esxemu/shared';
import { startHost, startHostInternals, type HostOptions } from '../src/host.js';

t.setTimeout(60_000);

function opts(dataDir: string, over: Partial<HostOptions> = {}): HostOptions {
  return {
    name: 'esx-h1',
    // Nothing listens on port 9 (discard) of loopback: the link just retries in the background.
    vcenterUrl: 'http://127.0.0.1:9',
    clusterSecret: 'x',
    cpuCores: 2,
    cpuMhz: 1000,
    memoryMiB: 16,
    migrationListenHost: '127.0.0.1',
    migrationPort: 0,
    dataDir,
    logger: silentLogger(),
    ...over,
  };
}

function readLine(address: string): Promise<string> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const s = connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    let buf = '';
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error('no answer'));
    });
    s.on('data', (d) => (buf += d.toString()));
    s.on('end', () => resolve(buf));
    s.on('error', reject);
  });
}

t.test('the migration listener answers NOT_IMPLEMENTED; its port cannot be taken twice', async (t) => {
  const dir = t.testdir();
  const host = await startHost(opts(dir));
  t.teardown(() => host.close());
  t.equal(host.name, 'esx-h1');
  t.match(host.migrationAddress, /^127\.0\.0\.1:\d+$/);
  const line = await readLine(host.migrationAddress);
  t.ok(line.endsWith('\n'), 'one line');
  t.match(JSON.parse(line), { error: { code: 'NOT_IMPLEMENTED' } });

  const port = Number(host.migrationAddress.split(':')[1]);
  await t.rejects(startHost(opts(t.testdir(), { name: 'esx-h2', migrationPort: port })), { code: 'PORT_IN_USE' });

  const adv = await startHost(opts(t.testdir(), { name: 'esx-h3', advertiseHost: 'esx-h3.lab' }));
  t.match(adv.migrationAddress, /^esx-h3\.lab:\d+$/, 'advertiseHost is what others are told');
  await adv.close();
});

t.test('vmkernel.log: microsecond lines for the host and its VMs; close powers VMs off', async (t) => {
  const dir = t.testdir();
  const host = await startHostInternals(opts(dir));
  const vm: VmConfig = { id: 'v1', name: 'vm01', memoryMiB: 4, vcpus: 1, workload: { kind: 'idle' }, seed: 3, ip: '127.77.252.1' };
  await host.vmkernel.powerOn(vm);
  t.equal(host.vmkernel.list().length, 1);
  await host.close();
  await host.close(); // idempotent
  t.equal(host.vmkernel.machine.usedPages, 0, 'close powered the VM off');
  const log = readFileSync(join(dir, 'vmkernel.log'), 'utf8').trim().split('\n');
  const lineRe = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z cpu\d+:\d+\)\w+: .+$/;
  t.ok(
    log.every((l) => lineRe.test(l)),
    'every line: ISO time with microseconds, cpuN:world)Module: message',
  );
  t.ok(log.some((l) => /VM: vm01 powered on \(idle, 4 MiB\)/.test(l)), 'power on line');
  t.ok(log.some((l) => /VM: vm01 powered off, \d+ pages/.test(l)), 'power off line');
  t.ok(log.some((l) => /Init: host esx-h1 stopped/.test(l)), 'host stop line');
});

t.test('bad options are refused before anything starts', async (t) => {
  const dir = t.testdir();
  await t.rejects(startHost(opts(dir, { name: 'bad name' })), { code: 'INVALID_ARGUMENT' });
  await t.rejects(startHost(opts(dir, { memoryMiB: 0 })), { code: 'INVALID_ARGUMENT' });
  await t.rejects(startHost(opts(dir, { memoryMiB: 8192 })), { code: 'INVALID_ARGUMENT' });
  await t.rejects(startHost(opts(dir, { cpuCores: 0 })), { code: 'INVALID_ARGUMENT' });
  await t.rejects(startHost(opts(dir, { vcenterUrl: 'ftp://x' })), { code: 'INVALID_ARGUMENT' });
  await t.rejects(startHost(opts(dir, { vcenterUrl: 'not a url' })), { code: 'INVALID_ARGUMENT' });
});
