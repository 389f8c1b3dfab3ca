/**
 * Persistence: a closed or killed (SIGKILL) vcenter restarted on the same data directory comes
 * back with the same inventory, token and secret; tasks cut short end as TASK_INTERRUPTED; hosts
 * reconcile when they say hello again.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { EventInfo, HostInfo, TaskInfo, VmConfig, VmInfo } from '@esxemu/shared';
import { Api, FAST, startFixture, tempDir } from './helpers/vcenter-fixture.js';
import { FakeHost } from './helpers/fake-host.js';

t.setTimeout(60_000);

t.test('close and restart on the same data dir keeps hosts, VMs, token and secret', async (t) => {
  const dataDir = tempDir(t);
  const first = await startFixture(t, { dataDir });
  const { host } = await FakeHost.connect({ url: first.vc.url, secret: first.vc.clusterSecret, name: 'esx01', heartbeatMs: 50 });
  t.teardown(() => host.close());
  const vm = (await first.api.post<VmInfo>('/api/vms', { name: 'vm1', memoryMiB: 128 })).body;
  await first.api.post<VmInfo>('/api/vms', { name: 'vm2' });
  const on = await first.api.post<TaskInfo>('/api/vms/vm1/power-on');
  const req = await host.nextRequest('vm.powerOn');
  const config = (req.args as { config: VmConfig }).config;
  host.respond(req.id, { config, powerState: 'poweredOn', startedAt: Date.now() });
  t.equal((await first.api.finishedTask(on.body.id)).state, 'success');
  const hostsBefore = (await first.api.get<HostInfo[]>('/api/hosts')).body;
  await first.vc.close();
  host.close();

  const second = await startFixture(t, { dataDir });
  t.equal(second.vc.token, first.vc.token, 'same token');
  t.equal(second.vc.clusterSecret, first.vc.clusterSecret, 'same cluster secret');
  const hosts = (await second.api.get<HostInfo[]>('/api/hosts')).body;
  t.equal(hosts.length, 1);
  t.match(hosts[0], { id: hostsBefore[0]!.id, name: 'esx01', registeredAt: hostsBefore[0]!.registeredAt, connectionState: 'disconnected' }, 'host kept, not connected yet');
  const vms = (await second.api.get<VmInfo[]>('/api/vms')).body;
  t.same(vms.map((v) => v.name), ['vm1', 'vm2']);
  t.match(vms[0], { id: vm.id, ip: vm.ip, seed: vm.seed, memoryMiB: 128, powerState: 'poweredOn', host: 'esx01' }, 'VM kept with its last known state');
  t.equal((await second.api.get<TaskInfo>(`/api/tasks/${on.body.id}`)).body.state, 'success', 'finished tasks kept');
  const started = (await second.api.get<EventInfo[]>('/api/events')).body.filter((e) => e.type === 'VcenterStarted');
  t.equal(started.length, 2, 'events kept across restarts');

  // The host comes back and no longer runs vm1: reconciled to poweredOff.
  const { host: back, answer } = await FakeHost.connect({ url: second.vc.url, secret: second.vc.clusterSecret, name: 'esx01', heartbeatMs: 50 });
  t.teardown(() => back.close());
  t.match(answer, { type: 'welcome', hostId: hostsBefore[0]!.id }, 'same host id');
  t.match((await second.api.get<VmInfo>('/api/vms/vm1')).body, { powerState: 'poweredOff' });
});

/** Run vcenter in a child process (so it can be SIGKILLed); resolves with its address. */
async function spawnVcenter(t: { teardown(fn: () => unknown): void }, dataDir: string) {
  const index = new URL('../src/index.js', import.meta.url).href;
  const shared = import.meta.resolve('@esxemu/shared');
  const script = `
    import { startVcenter } from ${JSON.stringify(index)};
    import { silentLogger } from ${JSON.stringify(shared)};
    const vc = await startVcenter({ dataDir: ${JSON.stringify(dataDir)}, listenHost: '127.0.0.1', port: 0, logger: silentLogger(),
      heartbeatIntervalMs: ${FAST.heartbeatIntervalMs}, hostTimeoutMs: ${FAST.hostTimeoutMs}, statsIntervalMs: ${FAST.statsIntervalMs} });
    console.log(JSON.stringify({ url: vc.url, token: vc.token, clusterSecret: vc.clusterSecret }));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    exited.then(() => Promise.reject(new Error('vcenter child exited before it was ready'))),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('vcenter child not ready in 15 s')), 15_000).unref()),
  ]);
  return { child, exited, info: JSON.parse(first) as { url: string; token: string; clusterSecret: string } };
}

t.test('kill -9 during a task: restart keeps the inventory, the task is TASK_INTERRUPTED', async (t) => {
  const dataDir = tempDir(t);
  const { child, exited, info } = await spawnVcenter(t, dataDir);
  const api = new Api(info.url, info.token);
  const { host } = await FakeHost.connect({ url: info.url, secret: info.clusterSecret, name: 'esx01', heartbeatMs: 50 });
  t.teardown(() => host.close());
  const vm = (await api.post<VmInfo>('/api/vms', { name: 'vm1' })).body;
  const task = (await api.post<TaskInfo>('/api/vms/vm1/power-on')).body;
  await host.nextRequest('vm.powerOn'); // the host never answers: the task stays running
  t.equal((await api.get<TaskInfo>(`/api/tasks/${task.id}`)).body.state, 'running');

  child.kill('SIGKILL');
  await exited;
  t.equal(child.signalCode, 'SIGKILL', 'killed');
  host.close();

  const f = await startFixture(t, { dataDir });
  t.equal(f.vc.token, info.token, 'same token after a crash');
  const after = (await f.api.get<TaskInfo>(`/api/tasks/${task.id}`)).body;
  t.equal(after.state, 'error');
  t.equal(after.error?.code, 'TASK_INTERRUPTED');
  t.ok(after.completedAt !== null);
  t.match((await f.api.get<VmInfo>('/api/vms/vm1')).body, { id: vm.id, powerState: 'poweredOff' }, 'VM kept');
  t.match((await f.api.get<HostInfo>('/api/hosts/esx01')).body, { connectionState: 'disconnected' }, 'host kept, disconnected');
  const events = (await f.api.get<EventInfo[]>('/api/events')).body;
  t.ok(events.some((e) => e.type === 'TaskFailed' && e.taskId === task.id), 'TaskFailed recorded for the interrupted task');
  t.match(events.at(-1), { type: 'VcenterStarted', message: /1 unfinished task/ });

  // The VM can be powered on again once a host is back.
  const { host: back } = await FakeHost.connect({ url: f.vc.url, secret: f.vc.clusterSecret, name: 'esx01', heartbeatMs: 50 });
  t.teardown(() => back.close());
  const retry = (await f.api.post<TaskInfo>('/api/vms/vm1/power-on')).body;
  const req = await back.nextRequest('vm.powerOn');
  back.respond(req.id, { config: (req.args as { config: VmConfig }).config, powerState: 'poweredOn', startedAt: Date.now() });
  t.equal((await f.api.finishedTask(retry.id)).state, 'success');
});

t.test('a graceful close interrupts running tasks too', async (t) => {
  const dataDir = tempDir(t);
  const first = await startFixture(t, { dataDir });
  const { host } = await FakeHost.connect({ url: first.vc.url, secret: first.vc.clusterSecret, name: 'esx01', heartbeatMs: 50 });
  t.teardown(() => host.close());
  await first.api.post('/api/vms', { name: 'vm1' });
  const task = (await first.api.post<TaskInfo>('/api/vms/vm1/power-on')).body;
  await host.nextRequest('vm.powerOn');
  await first.vc.close();
  const second = await startFixture(t, { dataDir });
  t.match((await second.api.get<TaskInfo>(`/api/tasks/${task.id}`)).body, { state: 'error', error: { code: 'TASK_INTERRUPTED' } });
});
