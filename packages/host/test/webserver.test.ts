/**
 * A webserver VM answers HTTP at its own 127.x address through its virtual NIC; binding errors
 * fail the power-on and leave nothing behind.
 */
import t from 'tap';
import { createServer } from 'node:net';
import { silentLogger, type VmConfig } from '@esxemu/shared';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import { Vmkernel } from '../src/vmkernel/vmkernel.js';
import { RequestQueue } from '../src/vmm/devices/net/queue.js';

t.setTimeout(60_000);

/** An uncommon 127.x address and a port that was free there a moment ago. */
async function freeAddress(): Promise<{ ip: string; port: number }> {
  const ip = `127.77.${100 + Math.floor(Math.random() * 100)}.${2 + Math.floor(Math.random() * 250)}`;
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host: ip, port: 0 }, resolve);
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return { ip, port };
}

function webCfg(id: string, ip: string, port: number): VmConfig {
  return { id, name: id, memoryMiB: 4, vcpus: 1, workload: { kind: 'webserver', port }, seed: 7, ip };
}

t.test('a webserver VM answers at its own IP with an increasing counter', async (t) => {
  const k = new Vmkernel({ cpuCores: 2, cpuMhz: 2000, machine: MachineMemory.create(32), logger: silentLogger() });
  t.teardown(() => k.close());
  const { ip, port } = await freeAddress();
  await k.powerOn(webCfg('web1', ip, port));
  t.equal(k.get('web1').nicAddress, `${ip}:${port}`);

  const seen: number[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://${ip}:${port}/`, { signal: AbortSignal.timeout(5000) });
    t.equal(res.status, 200);
    const text = await res.text();
    const m = /request (\d+)/.exec(text);
    t.ok(m, `body carries a counter: ${text.trim()}`);
    seen.push(Number(m![1]));
  }
  t.same(seen, [1, 2, 3], 'the counter increases, request after request');
  const stats = await (await fetch(`http://${ip}:${port}/stats`, { signal: AbortSignal.timeout(5000) })).json();
  t.equal((stats as { requests: number }).requests, 4, 'counters live in guest RAM');

  // The same address for another VM: PORT_IN_USE, nothing left behind.
  const used = k.machine.usedPages;
  await t.rejects(k.powerOn(webCfg('web2', ip, port)), { code: 'PORT_IN_USE' });
  t.equal(k.machine.usedPages, used, 'no page left behind');
  t.same(
    k.list().map((r) => r.config.id),
    ['web1'],
  );
  t.throws(() => k.get('web2'), { code: 'VM_NOT_FOUND' });

  // An address that is not on this machine: ADDRESS_UNAVAILABLE.
  await t.rejects(k.powerOn(webCfg('web3', '192.0.2.1', port)), { code: 'ADDRESS_UNAVAILABLE' });
  t.equal(k.machine.usedPages, used);

  // Power off lets go of the address: it can be bound again.
  await k.powerOff('web1');
  await t.rejects(fetch(`http://${ip}:${port}/`, { signal: AbortSignal.timeout(5000) }), 'nobody answers after power off');
  await k.powerOn(webCfg('web4', ip, port));
  const again = await fetch(`http://${ip}:${port}/`, { signal: AbortSignal.timeout(5000) });
  t.match(await again.text(), /request 1\b/, 'a new VM at the same address starts from 1');
  await k.powerOff('web4');
  t.equal(k.machine.usedPages, 0);
});

t.test('the device answers 413 for a body over the cap, 503 when the queue is full', async (t) => {
  const k = new Vmkernel({
    cpuCores: 1,
    cpuMhz: 1000,
    machine: MachineMemory.create(16),
    logger: silentLogger(),
    nic: { maxBodyBytes: 1024, queueCapacity: 2, requestTimeoutMs: 1500 },
  });
  t.teardown(() => k.close());
  const { ip, port } = await freeAddress();
  // stopAtStep 0: the guest never runs, so nothing is taken off the queue.
  await k.powerOn(webCfg('web5', ip, port), { stopAtStep: 0 });
  const url = `http://${ip}:${port}/`;
  const big = await fetch(url, { method: 'POST', body: 'x'.repeat(4096), signal: AbortSignal.timeout(5000) });
  t.equal(big.status, 413);
  const waiting = [fetch(url, { signal: AbortSignal.timeout(10_000) }), fetch(url, { signal: AbortSignal.timeout(10_000) })];
  await new Promise((r) => setTimeout(r, 300));
  const third = await fetch(url, { signal: AbortSignal.timeout(5000) });
  t.equal(third.status, 503, 'queue full: 503 from the device');
  // The guest never answers them: the device gives up with 504.
  const late = await Promise.all(waiting);
  t.same(
    late.map((r) => r.status),
    [504, 504],
    'unanswered requests time out with 504',
  );
});

t.test('NIC queue save/restore round trip', async (t) => {
  const q = new RequestQueue(4);
  t.ok(q.push({ id: 1, method: 'GET', path: '/', body: new Uint8Array() }));
  t.ok(q.push({ id: 2, method: 'POST', path: '/x', body: new Uint8Array([1, 2, 3]) }));
  const saved = q.save();
  const r = RequestQueue.restore(structuredClone(saved));
  t.same(r.save(), saved, 'what was saved comes back');
  t.equal(r.shift()!.id, 1);
  t.same(r.shift()!.body, new Uint8Array([1, 2, 3]));
  t.equal(r.shift(), null);
  t.throws(() => RequestQueue.restore({ ...saved, version: 99 }), { code: 'INVALID_ARGUMENT' });
  t.throws(() => RequestQueue.restore({ ...saved, capacity: 1 }), { code: 'INVALID_ARGUMENT' });
  const full = new RequestQueue(1);
  t.ok(full.push({ id: 1, method: 'GET', path: '/', body: new Uint8Array() }));
  t.notOk(full.push({ id: 2, method: 'GET', path: '/', body: new Uint8Array() }), 'a full queue takes no more');
});
