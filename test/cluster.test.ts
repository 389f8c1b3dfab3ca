/**
 * The walking skeleton end to end, with real processes over real sockets: `esxemu cluster up`
 * starts the iSCSI target, vcenter and 3 hosts; a memstress VM and a webserver VM power on; the
 * webserver answers curl at its own IP with a counter that increases; vcenter is killed with
 * SIGKILL and restarted, keeps its inventory, the hosts reconnect by themselves and the VMs
 * kept running meanwhile.
 */
import { execa } from 'execa';
import t from 'tap';
import type { HostInfo, TaskInfo, VmInfo } from '@esxemu/shared';
import { pidAlive, Sandbox, uniqueVmNetwork, until } from './helpers/cli.js';

t.setTimeout(240_000);

async function curlCounter(url: string): Promise<number> {
  const r = await execa('curl', ['-sS', '--max-time', '5', url], { reject: false });
  if (r.exitCode !== 0) throw new Error(`curl ${url} failed: ${r.stderr}`);
  const m = /request (\d+)/.exec(String(r.stdout));
  if (!m) throw new Error(`unexpected answer from ${url}: ${r.stdout}`);
  return Number(m[1]);
}

t.test('a local cluster of real processes', async (t) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const vmNetwork = uniqueVmNetwork();

  const up = await sb.json<{ vcenterUrl: string; processes: { role: string; pid: number }[]; coldStartMs: number }>(
    ['cluster', 'up', '--hosts', '3', '--ephemeral-ports', '--host-memory', '512', '--vm-network', vmNetwork, '--heartbeat-interval', '250', '--host-timeout', '2000', '--stats-interval', '500'],
    { timeoutMs: 90_000 },
  );
  t.equal(up.processes.filter((p) => p.role === 'host').length, 3, 'three host processes');
  t.equal(up.processes.filter((p) => p.role === 'vcenter').length, 1, 'one vcenter process');
  t.equal(up.processes.filter((p) => p.role === 'iscsi').length, 1, 'one iscsi process');
  t.equal(new Set(up.processes.map((p) => p.pid)).size, 5, 'five distinct OS processes');
  for (const p of up.processes) t.ok(pidAlive(p.pid), `${p.role} pid ${p.pid} is alive`);

  const hosts = await sb.json<HostInfo[]>(['host', 'ls']);
  t.same(hosts.map((h) => h.name).sort(), ['esx01', 'esx02', 'esx03'], 'the three hosts registered');
  t.ok(hosts.every((h) => h.connectionState === 'connected'), 'all connected');

  const status = await sb.cli(['cluster', 'status']);
  t.equal(status.exitCode, 0, 'cluster status works');
  t.match(status.stdout, /running/, 'status shows running processes');

  // A memstress VM and a webserver VM.
  const port = 20000 + (process.pid % 20000);
  const mem1 = await sb.json<VmInfo>(['vm', 'create', 'mem1', '--memory', '64', '--workload', 'memstress', '--working-set', '8', '--dirty-rate', '500', '--seed', '7']);
  t.equal(mem1.powerState, 'poweredOff', 'created powered off');
  const web1 = await sb.json<VmInfo>(['vm', 'create', 'web1', '--memory', '32', '--workload', 'webserver', '--port', String(port)]);
  t.not(web1.ip, mem1.ip, 'each VM has its own IP');
  t.match(web1.ip, /^127\./, 'a loopback VM IP');

  const on1 = await sb.json<TaskInfo>(['vm', 'power', 'on', 'mem1'], { timeoutMs: 60_000 });
  t.equal(on1.state, 'success', 'memstress power-on task succeeded');
  const on2 = await sb.json<TaskInfo>(['vm', 'power', 'on', 'web1', '--host', 'esx02'], { timeoutMs: 60_000 });
  t.equal(on2.state, 'success', 'webserver power-on task succeeded');

  const vms = await sb.json<VmInfo[]>(['vm', 'ls']);
  const byName = new Map(vms.map((v) => [v.name, v]));
  t.equal(byName.get('mem1')?.powerState, 'poweredOn', 'mem1 on');
  t.equal(byName.get('web1')?.powerState, 'poweredOn', 'web1 on');
  t.equal(byName.get('web1')?.host, 'esx02', 'web1 on the host asked for');

  const url = `http://${web1.ip}:${port}/`;
  const c1 = await until('the webserver to answer', () => curlCounter(url), 15_000);
  const c2 = await curlCounter(url);
  const c3 = await curlCounter(url);
  t.ok(c2 > c1 && c3 > c2, `the counter kept in guest RAM increases (${c1}, ${c2}, ${c3})`);

  // Stats reach vcenter: the memstress VM consumes memory.
  const withStats = await until('memstress stats', async () => {
    const v = await sb.json<VmInfo>(['vm', 'info', 'mem1']);
    return v.stats && v.stats.memConsumedMiB > 0 ? v : null;
  }, 15_000);
  t.ok(withStats.stats!.memConsumedMiB > 0, `memstress consumes ${withStats.stats!.memConsumedMiB} MiB`);
  t.ok(withStats.stats!.cpuDemandMhz > 0, `memstress demands ${withStats.stats!.cpuDemandMhz} MHz`);

  // kill -9 vcenter, restart it on the same data and port.
  const state = sb.clusterState();
  const vc = state.processes.find((p) => p.role === 'vcenter')!;
  process.kill(vc.pid, 'SIGKILL');
  await until('vcenter to die', async () => !pidAlive(vc.pid), 5_000, 50);
  const down = await sb.cli(['host', 'ls']);
  t.equal(down.exitCode, 1, 'the API is down while vcenter is dead');
  t.match(down.stderr, /VCENTER_UNREACHABLE/, 'with a stable error code');
  const during = await curlCounter(url);
  t.ok(during > c3, 'the webserver VM keeps running while vcenter is down');

  const vcPort = new URL(state.vcenterUrl).port;
  const restarted = sb.spawn(['vcenter', 'serve', '--data-dir', `${sb.home}/vcenter`, '--port', vcPort, '--vm-network', vmNetwork, '--heartbeat-interval', '250', '--host-timeout', '2000', '--stats-interval', '500', '--no-log-stdout']);
  t.teardown(() => void restarted.kill('SIGKILL'));

  const reconnected = await until('the 3 hosts to reconnect', async () => {
    const hs = await sb.json<HostInfo[]>(['host', 'ls']);
    return hs.filter((h) => h.connectionState === 'connected').length === 3 ? hs : null;
  }, 30_000);
  t.equal(reconnected.length, 3, 'the hosts reconnected by themselves');
  const after = await sb.json<VmInfo[]>(['vm', 'ls']);
  t.same(after.map((v) => v.name).sort(), ['mem1', 'web1'], 'the inventory survived kill -9');
  t.ok(after.every((v) => v.powerState === 'poweredOn'), 'both VMs still powered on');
  t.equal(after.find((v) => v.name === 'web1')?.host, 'esx02', 'web1 still on esx02');
  const c4 = await curlCounter(url);
  t.ok(c4 > during, `the counter continued, not reset (${during} -> ${c4})`);
  const tasks = await sb.json<TaskInfo[]>(['task', 'ls']);
  t.ok(tasks.filter((x) => x.op === 'vm.powerOn' && x.state === 'success').length >= 2, 'the power-on tasks are still listed');

  // Power off frees the VM; the webserver stops answering.
  const off = await sb.json<TaskInfo>(['vm', 'power', 'off', 'web1'], { timeoutMs: 60_000 });
  t.equal(off.state, 'success', 'power off succeeded');
  const gone = await execa('curl', ['-sS', '--max-time', '2', url], { reject: false });
  t.not(gone.exitCode, 0, 'nothing answers at the VM IP once it is off');

  const stopped = await sb.json<{ stopped: { pid: number }[] }>(['cluster', 'down'], { timeoutMs: 60_000 });
  t.ok(stopped.stopped.length >= 4, 'cluster down stopped the processes it started');
  for (const p of state.processes.filter((p) => p.role !== 'vcenter')) t.notOk(pidAlive(p.pid), `${p.role} ${p.name} is gone`);
});
