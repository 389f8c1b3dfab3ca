/** Pure pieces: IP pool, placement, pending requests, stream back-pressure, schema versioning. */
import t from 'tap';
import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { WebSocket } from 'ws';
import { silentLogger } from '@esxemu/shared';
import { StreamHub } from '../src/api/stream.js';
import { SCHEMA_VERSION } from '../src/db/schema.js';
import { Store } from '../src/db/store.js';
import { PendingRequests } from '../src/hostlink/pending-requests.js';
import { secretsEqual } from '../src/hostlink/secret.js';
import { Registry } from '../src/inventory/registry.js';
import { IpPool } from '../src/network/ip-pool.js';
import { placePowerOn, type PlacementHost } from '../src/placement/power-on-placement.js';
import { tempDir } from './helpers/vcenter-fixture.js';

t.setTimeout(30_000);

t.test('IpPool', async (t) => {
  const pool = new IpPool('10.1.0.0/23');
  t.equal(pool.allocate(new Set()), '10.1.0.2', 'skips network and .1');
  t.equal(pool.allocate(new Set(['10.1.0.2', '10.1.0.3'])), '10.1.0.4');
  const upTo254 = new Set(Array.from({ length: 253 }, (_, i) => `10.1.0.${i + 2}`));
  t.equal(pool.allocate(upTo254), '10.1.1.2', 'skips .255, .0 and .1 of the next /24');
  const tiny = new IpPool('10.2.0.0/30');
  t.equal(tiny.allocate(new Set()), '10.2.0.2');
  t.throws(() => tiny.allocate(new Set(['10.2.0.2'])), { code: 'INSUFFICIENT_RESOURCES' });
  for (const bad of ['10.0.0.0', '10.0.0.0/7', '10.0.0.0/31', '300.0.0.0/16', 'x/16', '10.0.0.1/16']) {
    t.throws(() => new IpPool(bad), { code: 'INVALID_ARGUMENT' }, bad);
  }
  const none = () => null;
  t.doesNotThrow(() => pool.checkExplicit('10.1.1.1', none), 'explicit .1 is allowed');
  t.throws(() => pool.checkExplicit('10.1.2.0', none), { code: 'INVALID_ARGUMENT', message: /outside/ });
  t.throws(() => pool.checkExplicit('10.1.1.255', none), { code: 'INVALID_ARGUMENT', message: /broadcast/ });
  t.throws(() => pool.checkExplicit('10.1.0.9', () => 'web'), { code: 'NAME_IN_USE', message: /web/ });
});

t.test('placePowerOn', async (t) => {
  const hosts: PlacementHost[] = [
    { id: 'a', name: 'a', connected: true, memoryMiB: 1000, usedMiB: 800 },
    { id: 'b', name: 'b', connected: true, memoryMiB: 1000, usedMiB: 100 },
    { id: 'c', name: 'c', connected: false, memoryMiB: 9000, usedMiB: 0 },
  ];
  const req = { vmName: 'v', vmMemoryMiB: 100, requestedHost: null, currentHostId: null };
  t.match(placePowerOn(req, hosts), { host: { name: 'b' }, reason: 'most-free-memory' });
  t.match(placePowerOn({ ...req, requestedHost: 'a' }, hosts), { host: { name: 'a' }, reason: 'requested' });
  t.match(placePowerOn({ ...req, currentHostId: 'a' }, hosts), { host: { name: 'a' }, reason: 'registered' });
  t.match(placePowerOn({ ...req, currentHostId: 'c' }, hosts), { host: { name: 'b' } }, 'registered host disconnected: elsewhere');
  t.throws(() => placePowerOn({ ...req, requestedHost: 'c' }, hosts), { code: 'HOST_DISCONNECTED' });
  t.throws(() => placePowerOn({ ...req, requestedHost: 'z' }, hosts), { code: 'HOST_NOT_FOUND' });
  t.throws(() => placePowerOn({ ...req, vmMemoryMiB: 901 }, hosts), { code: 'INSUFFICIENT_RESOURCES', message: /900 MiB on b/ });
  t.throws(() => placePowerOn(req, [hosts[2]!]), { code: 'HOST_DISCONNECTED', message: /no connected host/ });
});

t.test('PendingRequests: bounded, timed out, failed together', async (t) => {
  const p = new PendingRequests(2, 50, 'esx01');
  const a = p.add('vm.powerOn');
  const b = p.add('vm.powerOff', 10_000);
  t.throws(() => p.add('vm.reset'), { code: 'INSUFFICIENT_RESOURCES' }, 'bounded');
  await t.rejects(a.promise, { code: 'TIMEOUT' });
  t.equal(p.resolve(a.id, 1), false, 'a late answer is unknown');
  p.failAll(new Error('x') as never);
  await t.rejects(b.promise);
  t.equal(p.size, 0);
  const c = p.add('vm.list');
  t.equal(p.op(c.id), 'vm.list');
  t.ok(p.resolve(c.id, 'ok'));
  t.equal(await c.promise, 'ok');
});

t.test('secretsEqual', async (t) => {
  t.ok(secretsEqual('abc', 'abc'));
  t.notOk(secretsEqual('abc', 'abd'));
  t.notOk(secretsEqual('abc', 'abcd'), 'different lengths do not throw');
  t.notOk(secretsEqual('', 'abc'));
});

/** Enough of a ws WebSocket for StreamHub. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  sent: string[] = [];
  terminated = false;
  send(data: string): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = 3;
  }
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
    this.emit('close');
  }
}

t.test('stream: hello first, every event, slow clients dropped', async (t) => {
  const store = new Store(tempDir(t));
  t.teardown(() => store.close());
  const registry = new Registry(store, silentLogger(), { tasks: 100, events: 100 });
  const hub = new StreamHub(registry, silentLogger(), { maxClients: 2, maxBufferedBytes: 1000 });
  const fast = new FakeSocket();
  const slow = new FakeSocket();
  hub.accept(fast as unknown as WebSocket, 'fast');
  hub.accept(slow as unknown as WebSocket, 'slow');
  const third = new FakeSocket();
  hub.accept(third as unknown as WebSocket, 'third');
  t.equal(third.readyState, 3, 'beyond maxClients: refused');
  t.match(JSON.parse(fast.sent[0]!), { kind: 'hello' });
  registry.event({ type: 'VcenterStarted', message: 'one' });
  t.match(JSON.parse(fast.sent[1]!), { kind: 'event', event: { type: 'VcenterStarted', message: 'one', id: 1 } });
  slow.bufferedAmount = 999;
  registry.event({ type: 'VcenterStarted', message: 'two' });
  t.ok(slow.terminated, 'slow client dropped');
  t.equal(slow.sent.length, 2, 'nothing queued for it beyond the bound');
  t.equal(fast.sent.length, 3, 'the fast client got everything');
  t.equal(hub.size, 1);
  hub.close();
});

t.test('schema: versioned with user_version; a newer database is refused', async (t) => {
  const dir = tempDir(t);
  new Store(dir).close();
  const db = new Database(join(dir, 'vcenter.db'));
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  t.throws(() => new Store(dir), { code: 'INVALID_STATE', message: /newer/ });
});
