/**
 * Bad input against real processes: each gets a clear error with a stable code, nothing
 * crashes, nothing stored is lost.
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import type { HostInfo, VmInfo } from '@esxemu/shared';
import { pidAlive, Sandbox, uniqueVmNetwork, until } from './helpers/cli.js';

t.setTimeout(180_000);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

t.test('bad input gets stable error codes and changes nothing', async (t) => {
  const sb = new Sandbox();
  t.teardown(() => sb.cleanup());
  const net16 = uniqueVmNetwork().replace(/^127\.(\d+)/, (_m, b) => `127.${(Number(b) + 50) % 250}`);
  const up = await sb.cli(['cluster', 'up', '--hosts', '1', '--ephemeral-ports', '--host-memory', '256', '--vm-network', net16, '--heartbeat-interval', '250', '--host-timeout', '2000'], { timeoutMs: 90_000 });
  t.equal(up.exitCode, 0, `cluster up: ${up.stderr}`);
  const state = sb.clusterState();
  const vcenterUrl = state.vcenterUrl;

  const created = await sb.json<VmInfo>(['vm', 'create', 'keep1', '--memory', '16']);
  t.equal(created.name, 'keep1', 'a VM to keep');

  const unknownVm = await sb.cli(['vm', 'info', 'nosuchvm']);
  t.equal(unknownVm.exitCode, 1, 'unknown VM exits 1');
  t.match(unknownVm.stderr, /VM_NOT_FOUND/, 'unknown VM -> VM_NOT_FOUND');

  const unknownHost = await sb.cli(['vm', 'power', 'on', 'keep1', '--host', 'esx99']);
  t.match(unknownHost.stderr, /HOST_NOT_FOUND/, 'unknown host -> HOST_NOT_FOUND');

  const badSize = await sb.cli(['vm', 'create', 'bad1', '--memory', 'lots']);
  t.not(badSize.exitCode, 0, 'invalid size is refused');
  t.match(badSize.stderr, /INVALID_ARGUMENT/, 'invalid size -> INVALID_ARGUMENT');

  const tooBig = await sb.cli(['vm', 'create', 'bad2', '--memory', '1TiB']);
  t.match(tooBig.stderr, /INVALID_ARGUMENT/, 'absurd size -> INVALID_ARGUMENT');

  const badName = await sb.cli(['vm', 'create', '../etc']);
  t.match(badName.stderr, /INVALID_ARGUMENT/, 'bad name -> INVALID_ARGUMENT');

  const dup = await sb.cli(['vm', 'create', 'keep1']);
  t.match(dup.stderr, /NAME_IN_USE/, 'duplicate name -> NAME_IN_USE');

  const badToken = await sb.cli(['--token', 'not-the-token', 'vm', 'ls']);
  t.equal(badToken.exitCode, 1, 'wrong token exits 1');
  t.match(badToken.stderr, /UNAUTHORIZED/, 'wrong token -> UNAUTHORIZED');

  // Port in use: a second vcenter on the first one's port.
  const port = new URL(vcenterUrl).port;
  const clash = await sb.cli(['vcenter', 'serve', '--data-dir', join(sb.home, 'vc2'), '--port', port, '--no-log-stdout']);
  t.equal(clash.exitCode, 1, 'second vcenter on the same port exits 1');
  t.match(clash.stderr, /PORT_IN_USE/, 'port in use -> PORT_IN_USE');

  // A host with the wrong cluster secret is rejected and exits.
  const badHost = await sb.cli(['host', 'run', '--name', 'intruder', '--vcenter', vcenterUrl, '--migration-port', '0', '--memory', '64', '--data-dir', join(sb.home, 'intruder'), '--no-log-stdout'], {
    env: { ESXEMU_CLUSTER_SECRET: 'wrong-secret' },
    timeoutMs: 30_000,
  });
  t.not(badHost.exitCode, 0, 'a host with a wrong secret exits');
  t.match(badHost.stderr, /BAD_SECRET/, 'wrong secret -> BAD_SECRET');

  // A malformed frame on the host link: the connection is dropped, vcenter stays up.
  const ws = new WebSocket(vcenterUrl.replace(/^http/, 'ws') + '/hostlink');
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.send(Buffer.from([0xc1, 0xff, 0x00, 0x13, 0x37]));
  const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
  t.not(code, -1, `vcenter closed the link after garbage (close code ${code})`);

  // A host started while its vcenter is down keeps retrying and stays up.
  const deadPort = await freePort();
  const secretFile = join(sb.home, 'vcenter', 'cluster-secret');
  const orphan = sb.spawn(['host', 'run', '--name', 'orphan', '--vcenter', `http://127.0.0.1:${deadPort}`, '--secret-file', secretFile, '--migration-port', '0', '--memory', '64', '--data-dir', join(sb.home, 'orphan'), '--log-file', join(sb.home, 'orphan', 'host.log'), '--no-log-stdout']);
  // Bounded wait for the host to log its retries (a loaded machine starts processes slowly).
  const orphanLog = await until('the orphan host to log a retry', async () => {
    const text = readFileSync(join(sb.home, 'orphan', 'host.log'), 'utf8');
    return /VCENTER_UNREACHABLE|ECONNREFUSED|retry/i.test(text) ? text : null;
  }, 30_000).catch(() => '');
  t.match(orphanLog, /VCENTER_UNREACHABLE|ECONNREFUSED|retry/i, 'a host whose vcenter is down says it is retrying');
  await new Promise((r) => setTimeout(r, 1000));
  t.ok(orphan.pid && pidAlive(orphan.pid), 'and stays up');
  orphan.kill('SIGTERM');
  await orphan;

  // Nothing was lost; the one real host is still connected.
  const vms = await sb.json<VmInfo[]>(['vm', 'ls']);
  t.same(vms.map((v) => v.name), ['keep1'], 'the inventory is unchanged');
  const hosts = await until('host esx01 connected', async () => {
    const hs = await sb.json<HostInfo[]>(['host', 'ls']);
    return hs.find((h) => h.name === 'esx01' && h.connectionState === 'connected') ? hs : null;
  }, 10_000);
  t.notOk(hosts.some((h) => h.name === 'intruder' && h.connectionState === 'connected'), 'the intruder never joined');
  for (const p of state.processes) t.ok(pidAlive(p.pid), `${p.role} ${p.name} survived all of it`);
});
