/** The client API without hosts: health, auth, VM create/validate/delete, lists, errors. */
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { EventInfo, TaskInfo, VmInfo } from '@esxemu/shared';
import { startVcenter } from '../src/index.js';
import { silentLogger } from '@esxemu/shared';
import { Api, startFixture, tempDir } from './helpers/vcenter-fixture.js';

t.setTimeout(60_000);

t.test('health needs no token and reports the version', async (t) => {
  const { vc } = await startFixture(t);
  const api = new Api(vc.url, null);
  const r = await api.get('/api/health');
  t.equal(r.status, 200);
  t.same(r.body, { ok: true, version: '0.1.0' });
});

t.test('every other route needs the bearer token', async (t) => {
  const { vc, dataDir } = await startFixture(t);
  t.equal(readFileSync(join(dataDir, 'token'), 'utf8').trim(), vc.token, 'token file holds the token');
  t.equal(statSync(join(dataDir, 'token')).mode & 0o777, 0o600, 'token file is 0600');
  t.equal(statSync(join(dataDir, 'cluster-secret')).mode & 0o777, 0o600, 'cluster-secret is 0600');
  const api = new Api(vc.url, vc.token);
  for (const path of ['/api/hosts', '/api/vms', '/api/tasks', '/api/events', '/api/clusters']) {
    const none = await api.call('GET', path, undefined, null);
    t.equal(none.status, 401, `${path} without token`);
    t.equal(none.body.error.code, 'UNAUTHORIZED');
    const wrong = await api.call('GET', path, undefined, 'not-the-token');
    t.equal(wrong.status, 401, `${path} with a wrong token`);
    t.equal(wrong.body.error.code, 'UNAUTHORIZED');
    t.equal((await api.get(path)).status, 200, `${path} with the token`);
  }
  const post = await api.call('POST', '/api/vms', { name: 'x' }, 'nope');
  t.equal(post.status, 401, 'no VM created without the token');
  t.same((await api.get('/api/vms')).body, []);
});

t.test('default cluster exists', async (t) => {
  const { api } = await startFixture(t, { options: { clusterName: 'lab' } });
  const r = await api.get('/api/clusters');
  t.equal(r.body.length, 1);
  t.match(r.body[0], { name: 'lab', hostCount: 0, vmCount: 0 });
});

t.test('create a VM: defaults, uuid id, IP from the VM network, seed', async (t) => {
  const { api } = await startFixture(t, { options: { vmNetwork: '10.9.0.0/24' } });
  const r = await api.post<VmInfo>('/api/vms', { name: 'web01' });
  t.equal(r.status, 201);
  t.match(r.body, { name: 'web01', host: null, powerState: 'poweredOff', memoryMiB: 256, vcpus: 1, workload: { kind: 'idle' }, ip: '10.9.0.2', stats: null });
  t.match(r.body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  t.ok(Number.isInteger(r.body.seed) && r.body.seed >= 0 && r.body.seed <= 0xffffffff, 'random seed in range');

  const second = await api.post<VmInfo>('/api/vms', { name: 'web02', memoryMiB: 512, vcpus: 2, seed: 42, workload: { kind: 'webserver', port: 8080 } });
  t.equal(second.status, 201);
  t.match(second.body, { ip: '10.9.0.3', seed: 42, memoryMiB: 512, vcpus: 2, workload: { kind: 'webserver', port: 8080 } });

  const explicit = await api.post<VmInfo>('/api/vms', { name: 'db01', ip: '10.9.0.200' });
  t.equal(explicit.status, 201);
  t.equal(explicit.body.ip, '10.9.0.200');

  const byName = await api.get<VmInfo>('/api/vms/web01');
  t.equal(byName.body.id, r.body.id);
  const byId = await api.get<VmInfo>(`/api/vms/${r.body.id}`);
  t.equal(byId.body.name, 'web01');
  t.equal((await api.get<VmInfo[]>('/api/vms')).body.length, 3);
});

t.test('create VM validation: INVALID_ARGUMENT with the reason, NAME_IN_USE, nothing created', async (t) => {
  const { api } = await startFixture(t, { options: { vmNetwork: '10.9.0.0/24' } });
  t.equal((await api.post('/api/vms', { name: 'vm1' })).status, 201);
  const bad: [string, unknown, RegExp][] = [
    ['bad name', { name: '-bad name!' }, /name/],
    ['empty name', { name: '' }, /name/],
    ['missing name', {}, /name/],
    ['zero memory', { name: 'a1', memoryMiB: 0 }, /memoryMiB/],
    ['huge memory', { name: 'a1', memoryMiB: 10_000_000 }, /memoryMiB/],
    ['fractional vcpus', { name: 'a1', vcpus: 1.5 }, /vcpus/],
    ['unknown workload', { name: 'a1', workload: { kind: 'bitcoin' } }, /workload/],
    ['workload missing params', { name: 'a1', workload: { kind: 'cpuburn' } }, /workload/],
    ['working set larger than the VM', { name: 'a1', memoryMiB: 64, workload: { kind: 'memstress', workingSetMiB: 128, dirtyPagesPerS: 10 } }, /working set/],
    ['ip not an address', { name: 'a1', ip: 'ten' }, /ip/],
    ['ip outside the network', { name: 'a1', ip: '10.10.0.5' }, /outside/],
    ['network address', { name: 'a1', ip: '10.9.0.0' }, /network address/],
    ['unknown host', { name: 'a1', host: 'nohost' }, /nohost/],
    ['not JSON', '{"name":', /JSON|Unexpected|json/i],
  ];
  for (const [what, body, reason] of bad) {
    const r = await api.post('/api/vms', body);
    const expected = what === 'unknown host' ? 404 : 400;
    t.equal(r.status, expected, `${what}: status`);
    t.equal(r.body.error.code, what === 'unknown host' ? 'HOST_NOT_FOUND' : 'INVALID_ARGUMENT', `${what}: code`);
    t.match(r.body.error.message, reason, `${what}: the message gives the reason`);
  }
  const dup = await api.post('/api/vms', { name: 'vm1' });
  t.equal(dup.status, 409);
  t.equal(dup.body.error.code, 'NAME_IN_USE');
  const vm1 = (await api.get<VmInfo>('/api/vms/vm1')).body;
  const ipTaken = await api.post('/api/vms', { name: 'vm2', ip: vm1.ip });
  t.equal(ipTaken.status, 409, 'an IP in use is refused');
  t.equal(ipTaken.body.error.code, 'NAME_IN_USE');
  t.match(ipTaken.body.error.message, /vm1/);
  const vms = (await api.get<VmInfo[]>('/api/vms')).body;
  t.same(vms.map((v) => v.name), ['vm1'], 'nothing else was created');
  const created = (await api.get<EventInfo[]>('/api/events')).body.filter((e) => e.type === 'VmCreated');
  t.equal(created.length, 1, 'one VmCreated event');
});

t.test('unknown VM, host, task and route', async (t) => {
  const { api } = await startFixture(t);
  const cases: [string, string, number, string][] = [
    ['GET', '/api/vms/ghost', 404, 'VM_NOT_FOUND'],
    ['DELETE', '/api/vms/ghost', 404, 'VM_NOT_FOUND'],
    ['POST', '/api/vms/ghost/power-on', 404, 'VM_NOT_FOUND'],
    ['POST', '/api/vms/ghost/power-off', 404, 'VM_NOT_FOUND'],
    ['POST', '/api/vms/ghost/reset', 404, 'VM_NOT_FOUND'],
    ['GET', '/api/hosts/ghost', 404, 'HOST_NOT_FOUND'],
    ['GET', '/api/tasks/ghost', 404, 'TASK_NOT_FOUND'],
    ['GET', '/api/nothing-here', 404, 'NOT_FOUND'],
    ['GET', '/api/tasks?limit=0', 400, 'INVALID_ARGUMENT'],
    ['GET', '/api/events?after=-1', 400, 'INVALID_ARGUMENT'],
  ];
  for (const [method, path, status, code] of cases) {
    const r = await api.call(method, path);
    t.equal(r.status, status, `${method} ${path}`);
    t.equal(r.body.error.code, code, `${method} ${path} code`);
  }
});

t.test('delete a powered-off VM; power ops check the state at once', async (t) => {
  const { api } = await startFixture(t);
  await api.post('/api/vms', { name: 'tmp' });
  const off = await api.post('/api/vms/tmp/power-off');
  t.equal(off.status, 409, 'power-off of a powered-off VM');
  t.equal(off.body.error.code, 'INVALID_STATE');
  const reset = await api.post('/api/vms/tmp/reset');
  t.equal(reset.body.error.code, 'INVALID_STATE');
  const badBody = await api.post('/api/vms/tmp/power-on', { host: 'not a name!' });
  t.equal(badBody.body.error.code, 'INVALID_ARGUMENT');
  const del = await api.call('DELETE', '/api/vms/tmp');
  t.equal(del.status, 200);
  t.same(del.body, { deleted: true });
  t.equal((await api.get('/api/vms/tmp')).status, 404);
  const types = (await api.get<EventInfo[]>('/api/events')).body.map((e) => e.type);
  t.same(types, ['VcenterStarted', 'VmCreated', 'VmDeleted']);
});

t.test('power-on with no host ends as a task error with TaskFailed', async (t) => {
  const { api } = await startFixture(t);
  await api.post('/api/vms', { name: 'lonely' });
  const r = await api.post<TaskInfo>('/api/vms/lonely/power-on');
  t.equal(r.status, 202);
  t.match(r.body, { op: 'vm.powerOn', targetType: 'vm', targetName: 'lonely', state: 'queued' });
  const done = await api.finishedTask(r.body.id);
  t.equal(done.state, 'error');
  t.equal(done.error?.code, 'HOST_DISCONNECTED');
  t.match(done.error?.message, /no connected host/);
  const failed = (await api.get<EventInfo[]>('/api/events')).body.find((e) => e.type === 'TaskFailed');
  t.match(failed, { severity: 'error', vm: 'lonely', taskId: r.body.id });
  const tasks = (await api.get<TaskInfo[]>('/api/tasks?limit=5')).body;
  t.equal(tasks[0]?.id, r.body.id);
});

t.test('a port in use is PORT_IN_USE; a bad vmNetwork is INVALID_ARGUMENT', async (t) => {
  const { vc } = await startFixture(t);
  await t.rejects(startVcenter({ dataDir: tempDir(t), listenHost: '127.0.0.1', port: vc.port, logger: silentLogger() }), { code: 'PORT_IN_USE' });
  await t.rejects(startVcenter({ dataDir: tempDir(t), listenHost: '127.0.0.1', port: 0, vmNetwork: '10.0.0.1/16', logger: silentLogger() }), {
    code: 'INVALID_ARGUMENT',
    message: /host bits/,
  });
  t.equal((await new Api(vc.url, vc.token).get('/api/health')).status, 200, 'the first one still serves');
});
