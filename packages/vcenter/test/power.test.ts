/** Power operations as tasks, dispatched to a real protocol peer; placement; the event stream. */
import t from 'tap';
import WebSocket from 'ws';
import { waitFor, type EventInfo, type HostInfo, type StreamMessage, type TaskInfo, type VmConfig, type VmInfo } from '@esxemu/shared';
import { FakeHost, type RequestMsg } from './helpers/fake-host.js';
import { startFixture, type Fixture } from './helpers/vcenter-fixture.js';

t.setTimeout(60_000);

function connect(f: Fixture, name: string, memoryMiB = 4096) {
  return FakeHost.connect({ url: f.vc.url, secret: f.vc.clusterSecret, name, heartbeatMs: 50, memoryMiB });
}

/** Answer a vm.powerOn the way a host does: the VM's runtime. */
function runtimeFor(req: RequestMsg) {
  const config = (req.args as { config: VmConfig }).config;
  return { config, powerState: 'poweredOn', startedAt: Date.now() };
}

async function openStream(f: Fixture, query = `?token=${f.vc.token}`): Promise<{ ws: WebSocket; messages: StreamMessage[] }> {
  const ws = new WebSocket(`${f.vc.url.replace('http', 'ws')}/api/stream${query}`);
  const messages: StreamMessage[] = [];
  ws.on('message', (d) => messages.push(JSON.parse(String(d)) as StreamMessage));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, messages };
}

t.test('power on, reset, power off through the host; tasks and events on the stream', async (t) => {
  const f = await startFixture(t);
  const { host, answer } = await connect(f, 'esx01');
  t.teardown(() => host.close());
  t.equal(answer.type, 'welcome');
  const stream = await openStream(f);
  t.teardown(() => stream.ws.terminate());
  await waitFor('stream hello', () => stream.messages.length > 0, 2000);
  t.match(stream.messages[0], { kind: 'hello', version: '0.1.0' }, 'hello first');

  const vm = (await f.api.post<VmInfo>('/api/vms', { name: 'vm1', memoryMiB: 512 })).body;
  const r = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  t.equal(r.status, 202);
  t.match(r.body, { op: 'vm.powerOn', state: 'queued', targetId: vm.id });

  const req = await host.nextRequest('vm.powerOn');
  t.match(req.args, { config: { id: vm.id, name: 'vm1', memoryMiB: 512, ip: vm.ip, seed: vm.seed } }, 'the host gets the VM config');
  const running = (await f.api.get<TaskInfo>(`/api/tasks/${r.body.id}`)).body;
  t.equal(running.state, 'running', 'running while the host works');
  t.ok(running.progress > 0 && running.progress < 100);
  host.respond(req.id, runtimeFor(req));

  const done = await f.api.finishedTask(r.body.id);
  t.equal(done.state, 'success');
  t.equal(done.progress, 100);
  t.match(done.result, { name: 'vm1', powerState: 'poweredOn', host: 'esx01' });
  t.match((await f.api.get<VmInfo>('/api/vms/vm1')).body, { powerState: 'poweredOn', host: 'esx01' });
  t.match((await f.api.get<HostInfo>('/api/hosts/esx01')).body, { vmCount: 1 });

  const again = await f.api.post('/api/vms/vm1/power-on');
  t.equal(again.status, 409);
  t.equal(again.body.error.code, 'INVALID_STATE', 'already on');
  const del = await f.api.call('DELETE', '/api/vms/vm1');
  t.equal(del.body.error.code, 'INVALID_STATE', 'cannot delete a running VM');

  const reset = await f.api.post<TaskInfo>('/api/vms/vm1/reset');
  const resetReq = await host.nextRequest('vm.reset');
  t.same(resetReq.args, { vmId: vm.id });
  host.respond(resetReq.id, runtimeFor(req));
  t.equal((await f.api.finishedTask(reset.body.id)).state, 'success');

  const off = await f.api.post<TaskInfo>('/api/vms/vm1/power-off');
  const offReq = await host.nextRequest('vm.powerOff');
  t.same(offReq.args, { vmId: vm.id });
  host.respond(offReq.id, { vmId: vm.id });
  t.equal((await f.api.finishedTask(off.body.id)).state, 'success');
  t.match((await f.api.get<VmInfo>('/api/vms/vm1')).body, { powerState: 'poweredOff', host: 'esx01' });

  const events = (await f.api.get<EventInfo[]>('/api/events')).body;
  const on = events.find((e) => e.type === 'VmPoweredOn');
  t.match(on, { vm: 'vm1', host: 'esx01', taskId: r.body.id });
  t.ok(events.some((e) => e.type === 'VmReset' && e.taskId === reset.body.id));
  t.ok(events.some((e) => e.type === 'VmPoweredOff' && e.taskId === off.body.id));

  await waitFor('stream to see the power-off', () => stream.messages.some((m) => m.kind === 'task' && m.task.id === off.body.id && m.task.state === 'success'), 2000);
  const states = stream.messages.filter((m): m is Extract<StreamMessage, { kind: 'task' }> => m.kind === 'task' && m.task.id === r.body.id).map((m) => m.task.state);
  t.equal(states[0], 'queued');
  t.ok(states.includes('running'));
  t.equal(states.at(-1), 'success', 'task updates in order on the stream');
  const streamed = stream.messages.filter((m) => m.kind === 'event').map((m) => (m as Extract<StreamMessage, { kind: 'event' }>).event.type);
  t.ok(['VmCreated', 'VmPoweredOn', 'VmReset', 'VmPoweredOff'].every((type) => streamed.includes(type)), 'events on the stream');
});

t.test('the stream needs the token', async (t) => {
  const f = await startFixture(t);
  const status = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${f.vc.url.replace('http', 'ws')}/api/stream?token=wrong`);
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => {
      resolve(101);
      ws.terminate();
    });
    ws.on('error', () => undefined);
  });
  t.equal(status, 401);
  const viaHeader = new WebSocket(`${f.vc.url.replace('http', 'ws')}/api/stream`, { headers: { authorization: `Bearer ${f.vc.token}` } });
  t.teardown(() => viaHeader.terminate());
  const first = await new Promise<string>((resolve, reject) => {
    viaHeader.once('message', (d) => resolve(String(d)));
    viaHeader.once('error', reject);
  });
  t.match(JSON.parse(first), { kind: 'hello' }, 'bearer header works too');
});

t.test('host errors, timeouts and disconnects end the task with that error', async (t) => {
  const f = await startFixture(t, { tuning: { hostRequestTimeoutMs: 1000 } });
  const { host } = await connect(f, 'esx01');
  t.teardown(() => host.close());
  await f.api.post('/api/vms', { name: 'vm1' });

  const a = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  const reqA = await host.nextRequest('vm.powerOn');
  host.respondError(reqA.id, 'INSUFFICIENT_RESOURCES', 'host memory exhausted');
  const doneA = await f.api.finishedTask(a.body.id);
  t.match(doneA, { state: 'error', error: { code: 'INSUFFICIENT_RESOURCES', message: 'host memory exhausted' } });

  const b = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  await host.nextRequest('vm.powerOn'); // never answered
  t.match(await f.api.finishedTask(b.body.id), { state: 'error', error: { code: 'TIMEOUT' } });

  const c = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  const reqC = await host.nextRequest('vm.powerOn');
  host.respond(reqC.id, { not: 'a runtime' });
  t.match(await f.api.finishedTask(c.body.id), { state: 'error', error: { code: 'PROTOCOL_ERROR' } }, 'an invalid result is refused');

  const d = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  await host.nextRequest('vm.powerOn');
  host.close();
  t.match(await f.api.finishedTask(d.body.id), { state: 'error', error: { code: 'HOST_DISCONNECTED' } });
  t.equal((await f.api.get<VmInfo>('/api/vms/vm1')).body.powerState, 'poweredOff', 'nothing recorded on failure');
  const failed = (await f.api.get<EventInfo[]>('/api/events')).body.filter((e) => e.type === 'TaskFailed');
  t.equal(failed.length, 4, 'one TaskFailed per failed task');
});

t.test('tasks on one VM run in order: the second power-on finds it on', async (t) => {
  const f = await startFixture(t);
  const { host } = await connect(f, 'esx01');
  t.teardown(() => host.close());
  await f.api.post('/api/vms', { name: 'vm1' });
  const first = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  const second = await f.api.post<TaskInfo>('/api/vms/vm1/power-on');
  t.equal(second.status, 202, 'accepted: the VM is still off when asked');
  const req = await host.nextRequest('vm.powerOn');
  t.equal((await f.api.get<TaskInfo>(`/api/tasks/${second.body.id}`)).body.state, 'queued', 'waits for the first');
  host.respond(req.id, runtimeFor(req));
  t.equal((await f.api.finishedTask(first.body.id)).state, 'success');
  t.match(await f.api.finishedTask(second.body.id), { state: 'error', error: { code: 'INVALID_STATE' } });
  t.equal(host.requests.length, 0, 'only one request reached the host');
});

t.test('placement: requested host, else registered host, else most free memory', async (t) => {
  const f = await startFixture(t);
  const { host: small } = await connect(f, 'small', 1024);
  const { host: big } = await connect(f, 'big', 2048);
  t.teardown(() => small.close());
  t.teardown(() => big.close());
  const answerAll = (h: FakeHost) => {
    const timer = setInterval(() => {
      for (const r of h.requests.splice(0)) h.respond(r.id, r.op === 'vm.powerOn' ? runtimeFor(r) : { vmId: (r.args as { vmId: string }).vmId });
    }, 10);
    t.teardown(() => clearInterval(timer));
  };
  answerAll(small);
  answerAll(big);
  const powerOn = async (name: string, body?: unknown) => f.api.finishedTask((await f.api.post<TaskInfo>(`/api/vms/${name}/power-on`, body)).body.id);

  await f.api.post('/api/vms', { name: 'v1', memoryMiB: 1500 });
  t.equal((await powerOn('v1')).state, 'success');
  t.equal((await f.api.get<VmInfo>('/api/vms/v1')).body.host, 'big', 'most free memory');

  await f.api.post('/api/vms', { name: 'v2', memoryMiB: 600 });
  t.equal((await powerOn('v2')).state, 'success');
  t.equal((await f.api.get<VmInfo>('/api/vms/v2')).body.host, 'small', 'small now has more free memory (1024 vs 548)');

  await f.api.post('/api/vms', { name: 'v3', memoryMiB: 64 });
  t.equal((await powerOn('v3', { host: 'big' })).state, 'success');
  t.equal((await f.api.get<VmInfo>('/api/vms/v3')).body.host, 'big', 'requested host');

  await f.api.post('/api/vms', { name: 'v4', memoryMiB: 64, host: 'small' });
  t.equal((await powerOn('v4')).state, 'success');
  t.equal((await f.api.get<VmInfo>('/api/vms/v4')).body.host, 'small', 'registered host');

  await f.api.post('/api/vms', { name: 'huge', memoryMiB: 4096 });
  const huge = await powerOn('huge');
  t.match(huge, { state: 'error', error: { code: 'INSUFFICIENT_RESOURCES', message: /4096 MiB/ } });

  const unknown = await f.api.post('/api/vms/huge/power-on', { host: 'nohost' });
  t.equal(unknown.body.error.code, 'HOST_NOT_FOUND');
});
