/** The host link: registration, rejection, protocol errors, heartbeats, stats, VM events. */
import t from 'tap';
import { encodeFrame, HOSTLINK_MAX_FRAME_BYTES, waitFor, type EventInfo, type HostInfo, type VmInfo, type VmRuntime } from '@esxemu/shared';
import { FakeHost } from './helpers/fake-host.js';
import { startFixture, type Fixture } from './helpers/vcenter-fixture.js';

t.setTimeout(60_000);

async function events(f: Fixture, type: string): Promise<EventInfo[]> {
  return (await f.api.get<EventInfo[]>('/api/events?limit=1000')).body.filter((e) => e.type === type);
}

function connect(f: Fixture, name: string, extra: { secret?: string; heartbeatMs?: number; vms?: VmRuntime[]; memoryMiB?: number } = {}) {
  return FakeHost.connect({ url: f.vc.url, secret: extra.secret ?? f.vc.clusterSecret, name, heartbeatMs: extra.heartbeatMs ?? 50, vms: extra.vms, memoryMiB: extra.memoryMiB });
}

t.test('wrong secret: reject BAD_SECRET, link closed, HostRejected, no host', async (t) => {
  const f = await startFixture(t);
  const { host, answer } = await connect(f, 'esx01', { secret: 'wrong' });
  t.teardown(() => host.close());
  t.match(answer, { type: 'reject', error: { code: 'BAD_SECRET' } });
  await host.waitClosed();
  t.same((await f.api.get('/api/hosts')).body, [], 'no host registered');
  const rejected = await events(f, 'HostRejected');
  t.equal(rejected.length, 1);
  t.match(rejected[0], { host: 'esx01', severity: 'warning' });
});

t.test('good hello: welcome with intervals, host listed connected', async (t) => {
  const f = await startFixture(t);
  const { host, answer } = await connect(f, 'esx01', { memoryMiB: 8192 });
  t.teardown(() => host.close());
  t.equal(answer.type, 'welcome');
  if (answer.type !== 'welcome') return;
  t.equal(answer.heartbeatIntervalMs, 100);
  t.equal(answer.statsIntervalMs, 100);
  const hosts = (await f.api.get<HostInfo[]>('/api/hosts')).body;
  t.equal(hosts.length, 1);
  t.match(hosts[0], { id: answer.hostId, name: 'esx01', cluster: 'cluster01', connectionState: 'connected', memoryMiB: 8192, cpuCores: 4, cpuMhz: 2000, version: 'test', vmCount: 0 });
  t.ok(hosts[0]!.registeredAt > 0 && hosts[0]!.lastSeenAt !== null);
  t.equal((await f.api.get<HostInfo>(`/api/hosts/${answer.hostId}`)).body.name, 'esx01', 'by id');
  await host.waitMessage((m) => m.type === 'heartbeatAck');
  t.pass('heartbeats are acknowledged');
  t.equal((await events(f, 'HostConnected')).length, 1);
  t.match((await f.api.get('/api/clusters')).body[0], { hostCount: 1 });
});

t.test('malformed frames close the link; the server keeps serving and nothing changes', async (t) => {
  const f = await startFixture(t);
  const { host: good } = await connect(f, 'esx01');
  t.teardown(() => good.close());
  const garbage: [string, Buffer | string][] = [
    ['undecodable bytes', Buffer.from([0xc1, 0xff, 0x00, 0x13])],
    ['valid msgpack, not a message', encodeFrame({ type: 'nonsense' } as never)],
    ['text frame', 'hello'],
    ['message before hello', encodeFrame({ type: 'heartbeat', seq: 1, sentAt: 0 })],
  ];
  for (const [what, data] of garbage) {
    const h = await FakeHost.open(f.vc.url);
    h.sendRaw(data);
    const closed = await h.waitClosed();
    t.equal(closed.code, 1002, `${what}: closed with 1002`);
    const reject = h.messages.find((m) => m.type === 'reject');
    t.match(reject, { error: { code: 'PROTOCOL_ERROR' } }, `${what}: told PROTOCOL_ERROR`);
  }
  const big = await FakeHost.open(f.vc.url);
  big.sendRaw(Buffer.alloc(HOSTLINK_MAX_FRAME_BYTES + 1));
  t.equal((await big.waitClosed()).code, 1009, 'oversized frame: closed with 1009');

  // An active host that sends garbage is disconnected, and only that.
  const { host: bad } = await connect(f, 'esx02');
  bad.sendRaw(Buffer.from([0xc1]));
  await bad.waitClosed();
  await waitFor('esx02 disconnected', async () => (await f.api.get<HostInfo>('/api/hosts/esx02')).body.connectionState === 'disconnected', 3000);

  t.equal((await f.api.get('/api/health')).status, 200, 'server still serves');
  t.equal((await f.api.get<HostInfo>('/api/hosts/esx01')).body.connectionState, 'connected', 'the good host is untouched');
  t.same((await f.api.get<HostInfo[]>('/api/hosts')).body.map((h) => h.name), ['esx01', 'esx02'], 'no host came from garbage');
  t.equal(good.closeInfo, null, 'the good link is still open');
});

t.test('no hello in time: closed', async (t) => {
  const f = await startFixture(t, { tuning: { helloTimeoutMs: 200 } });
  const h = await FakeHost.open(f.vc.url);
  t.teardown(() => h.close());
  const closed = await h.waitClosed(3000);
  t.equal(closed.code, 1008);
  t.match(h.messages[0], { type: 'reject', error: { code: 'PROTOCOL_ERROR', message: /no hello/ } });
});

t.test('same name on a live link: NAME_IN_USE; a stale link is replaced', async (t) => {
  // A long host timeout: the link must be replaced as stale, not disconnected by the watchdog.
  const f = await startFixture(t, { options: { hostTimeoutMs: 10_000 } });
  const { host: first } = await connect(f, 'esx01');
  t.teardown(() => first.close());
  const { host: second, answer } = await connect(f, 'esx01');
  t.teardown(() => second.close());
  t.match(answer, { type: 'reject', error: { code: 'NAME_IN_USE' } });
  await second.waitClosed();
  t.equal(first.closeInfo, null, 'the live link is kept');

  // The first link stops heartbeating (frozen host): after two missed heartbeats a new hello
  // for the same name replaces it.
  first.stopHeartbeats();
  await new Promise((r) => setTimeout(r, 300));
  const { host: third, answer: a3 } = await connect(f, 'esx01');
  t.teardown(() => third.close());
  t.equal(a3.type, 'welcome');
  await first.waitClosed();
  t.equal((await f.api.get<HostInfo>('/api/hosts/esx01')).body.connectionState, 'connected');
  t.equal((await events(f, 'HostDisconnected')).length, 0, 'no disconnection in between');
  t.equal((await f.api.get<HostInfo[]>('/api/hosts')).body.length, 1);
});

t.test('a silent host is disconnected; its VMs keep their state; it can come back', async (t) => {
  const f = await startFixture(t);
  const vm = (await f.api.post<VmInfo>('/api/vms', { name: 'vm1' })).body;
  const running: VmRuntime = { config: { id: vm.id, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, workload: vm.workload, seed: vm.seed, ip: vm.ip }, powerState: 'poweredOn', startedAt: Date.now() };
  const { host } = await connect(f, 'esx01', { vms: [running] });
  t.teardown(() => host.close());
  t.equal((await f.api.get<VmInfo>('/api/vms/vm1')).body.powerState, 'poweredOn');
  host.stopHeartbeats();
  await waitFor('esx01 disconnected', async () => (await f.api.get<HostInfo>('/api/hosts/esx01')).body.connectionState === 'disconnected', 5000);
  await host.waitClosed();
  const ev = await events(f, 'HostDisconnected');
  t.equal(ev.length, 1);
  t.match(ev[0], { host: 'esx01', message: /no heartbeat/ });
  t.match((await f.api.get<VmInfo>('/api/vms/vm1')).body, { powerState: 'poweredOn', host: 'esx01' }, 'last known state kept');

  const { host: back, answer } = await connect(f, 'esx01', { vms: [running] });
  t.teardown(() => back.close());
  t.equal(answer.type, 'welcome');
  t.equal((await f.api.get<HostInfo>('/api/hosts/esx01')).body.connectionState, 'connected');
  t.equal((await f.api.get<HostInfo[]>('/api/hosts')).body.length, 1, 'same host record');
});

t.test('stats are exposed in HostInfo and VmInfo; vmEvents change power state', async (t) => {
  const f = await startFixture(t);
  const vm = (await f.api.post<VmInfo>('/api/vms', { name: 'vm1' })).body;
  const running: VmRuntime = { config: { id: vm.id, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, workload: vm.workload, seed: vm.seed, ip: vm.ip }, powerState: 'poweredOn', startedAt: Date.now() };
  const { host } = await connect(f, 'esx01', { vms: [running] });
  t.teardown(() => host.close());
  const hostStats = { cpuCapacityMhz: 8000, cpuDemandMhz: 100, cpuUsageMhz: 90, memCapacityMiB: 4096, memConsumedMiB: 300, memActiveMiB: 200, rssMiB: 80, vmsRunning: 1 };
  const vmStats = { vmId: vm.id, cpuDemandMhz: 100, cpuUsageMhz: 90, memConsumedMiB: 256, memActiveMiB: 100, steps: 1234, uptimeS: 5 };
  host.send({ type: 'stats', host: hostStats, vms: [vmStats, { ...vmStats, vmId: 'unknown-vm' }] });
  await waitFor('host stats', async () => (await f.api.get<HostInfo>('/api/hosts/esx01')).body.stats !== null, 3000);
  t.same((await f.api.get<HostInfo>('/api/hosts/esx01')).body.stats, hostStats);
  t.same((await f.api.get<VmInfo>('/api/vms/vm1')).body.stats, vmStats);

  host.send({ type: 'vmEvent', vmId: vm.id, event: 'reset', message: 'guest rebooted' });
  host.send({ type: 'vmEvent', vmId: vm.id, event: 'crashed', message: 'triple fault' });
  host.send({ type: 'vmEvent', vmId: 'unknown-vm', event: 'poweredOff', message: '' });
  await waitFor('vm1 off', async () => (await f.api.get<VmInfo>('/api/vms/vm1')).body.powerState === 'poweredOff', 3000);
  t.equal((await f.api.get<VmInfo>('/api/vms/vm1')).body.stats, null, 'no stats for a VM that is off');
  t.match((await events(f, 'VmReset'))[0], { vm: 'vm1', host: 'esx01', message: /guest rebooted/ });
  t.match((await events(f, 'VmCrashed'))[0], { vm: 'vm1', severity: 'error', message: /triple fault/ });
  host.send({ type: 'vmEvent', vmId: vm.id, event: 'poweredOn', message: 'back' });
  await waitFor('vm1 on', async () => (await f.api.get<VmInfo>('/api/vms/vm1')).body.powerState === 'poweredOn', 3000);
  t.equal(host.closeInfo, null, 'an unknown VM in an event is not a protocol error');
});

t.test('reconciliation at hello', async (t) => {
  const f = await startFixture(t);
  const mk = async (name: string) => (await f.api.post<VmInfo>('/api/vms', { name })).body;
  const a = await mk('a');
  const b = await mk('b');
  const rt = (v: VmInfo, powerState: VmRuntime['powerState'] = 'poweredOn'): VmRuntime => ({
    config: { id: v.id, name: v.name, memoryMiB: v.memoryMiB, vcpus: v.vcpus, workload: v.workload, seed: v.seed, ip: v.ip },
    powerState,
    startedAt: Date.now(),
  });
  // First connection: both run there.
  const { host: h1 } = await connect(f, 'esx01', { vms: [rt(a), rt(b)] });
  t.match((await f.api.get<VmInfo>('/api/vms/a')).body, { powerState: 'poweredOn', host: 'esx01' });
  t.match((await f.api.get<VmInfo>('/api/vms/b')).body, { powerState: 'poweredOn', host: 'esx01' });
  h1.close();
  await waitFor('esx01 disconnected', async () => (await f.api.get<HostInfo>('/api/hosts/esx01')).body.connectionState === 'disconnected', 3000);

  // It comes back running only a, plus a VM the inventory never heard of.
  const stranger: VmRuntime = { config: { id: 'f00dfeed-0000-4000-8000-000000000001', name: 'stranger', memoryMiB: 128, vcpus: 1, workload: { kind: 'idle' }, seed: 7, ip: '127.77.9.9' }, powerState: 'poweredOn', startedAt: Date.now() };
  const clash: VmRuntime = { ...stranger, config: { ...stranger.config, id: 'f00dfeed-0000-4000-8000-000000000002', name: 'a' } };
  const twin: VmRuntime = { ...stranger, config: { ...stranger.config, id: 'f00dfeed-0000-4000-8000-000000000003', ip: '127.77.9.10' } };
  const { host: h2 } = await connect(f, 'esx01', { vms: [rt(a), stranger, clash, twin] });
  t.teardown(() => h2.close());
  t.match((await f.api.get<VmInfo>('/api/vms/a')).body, { powerState: 'poweredOn', host: 'esx01' });
  t.match((await f.api.get<VmInfo>('/api/vms/b')).body, { powerState: 'poweredOff', host: 'esx01' }, 'not reported: powered off');
  t.match((await f.api.get<VmInfo>('/api/vms/stranger')).body, { id: stranger.config.id, powerState: 'poweredOn', host: 'esx01', ip: '127.77.9.9' }, 'unknown VM adopted');
  t.equal((await f.api.get<VmInfo[]>('/api/vms')).body.length, 3, 'VMs whose names collide are not adopted');
  const offs = await events(f, 'VmPoweredOff');
  t.equal(offs.length, 1);
  t.match(offs[0], { vm: 'b', severity: 'warning' });
});
