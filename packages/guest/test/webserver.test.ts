import t from 'tap';
import {
  bootGuest,
  stepGuest,
  webserver,
  webserverLoad,
  WEBSERVER_IDLE_STEP_CYCLES,
  WEBSERVER_MAX_REQUESTS_PER_STEP,
  WEBSERVER_REQUEST_CYCLES,
  WS_OFF_BYTES_LO,
  WS_OFF_METHOD_NOT_ALLOWED,
  WS_OFF_NOT_FOUND,
  WS_OFF_OK,
  WS_OFF_REQUESTS,
  type NicReply,
  type NicRequest,
  type VirtualNic,
} from '../src/index.js';
import { copyPresentPages, makeGuest, type TestGuest } from './helpers/simple-test-backing.js';

/** The test's NIC: a queue of requests in, a list of replies out. */
class QueueNic implements VirtualNic {
  readonly inbox: NicRequest[] = [];
  readonly sent: NicReply[] = [];
  private nextId = 1;
  constructor(readonly ip: string) {}
  request(method: string, path: string): number {
    const id = this.nextId++;
    this.inbox.push({ id, method, path, body: new Uint8Array(0) });
    return id;
  }
  receive(): NicRequest | null {
    return this.inbox.shift() ?? null;
  }
  transmit(reply: NicReply): void {
    this.sent.push(reply);
  }
  take(): NicReply[] {
    return this.sent.splice(0);
  }
}

const text = (r: NicReply): string => new TextDecoder().decode(r.body);

function server(ip = '127.77.0.5'): { g: TestGuest; nic: QueueNic } {
  const nic = new QueueNic(ip);
  const g = makeGuest(16, { nic });
  bootGuest(g.ctx, webserver, { kind: 'webserver', port: 8080 }, 1);
  return { g, nic };
}

t.test('GET / answers with a counter that lives in guest memory', async (t) => {
  const { g, nic } = server();
  const ids = [nic.request('GET', '/'), nic.request('GET', '/'), nic.request('GET', '/?x=1')];
  t.equal(stepGuest(g.ctx, webserver), WEBSERVER_IDLE_STEP_CYCLES + 3 * WEBSERVER_REQUEST_CYCLES);
  const replies = nic.take();
  t.same(replies.map((r) => r.id), ids, 'each reply pairs with its request');
  t.same(replies.map(text), ['hello from 127.77.0.5: request 1\n', 'hello from 127.77.0.5: request 2\n', 'hello from 127.77.0.5: request 3\n']);
  t.ok(replies.every((r) => r.status === 200 && r.contentType.startsWith('text/plain')));
  t.equal(g.mem.readU32(WS_OFF_REQUESTS), 3, 'the counter read back from guest memory');
  t.equal(g.mem.readU32(WS_OFF_OK), 3);
  t.equal(g.mem.readU32(WS_OFF_BYTES_LO), replies.reduce((n, r) => n + r.body.length, 0), 'bytes served');
  nic.request('GET', '/');
  stepGuest(g.ctx, webserver);
  t.equal(text(nic.take()[0]!), 'hello from 127.77.0.5: request 4\n');
  t.equal(g.mem.readU32(WS_OFF_REQUESTS), 4);
});

t.test('/stats reports the counters from guest memory; 404 and 405', async (t) => {
  const { g, nic } = server();
  nic.request('GET', '/');
  nic.request('GET', '/nope');
  nic.request('POST', '/');
  nic.request('DELETE', '/stats');
  nic.request('GET', '/stats');
  stepGuest(g.ctx, webserver);
  const [hello, notFound, post, del, stats] = nic.take();
  t.equal(hello!.status, 200);
  t.equal(notFound!.status, 404);
  t.match(text(notFound!), /not found/);
  t.equal(post!.status, 405);
  t.equal(del!.status, 405);
  t.equal(stats!.status, 200);
  t.equal(stats!.contentType, 'application/json');
  const bytesBefore = [hello, notFound, post, del].reduce((n, r) => n + r!.body.length, 0);
  t.same(JSON.parse(text(stats!)), {
    requests: 5,
    ok: 2,
    notFound: 1,
    methodNotAllowed: 2,
    bytesServed: bytesBefore,
    port: 8080,
    ip: '127.77.0.5',
  });
  t.equal(g.mem.readU32(WS_OFF_NOT_FOUND), 1);
  t.equal(g.mem.readU32(WS_OFF_METHOD_NOT_ALLOWED), 2);
});

t.test('at most 16 requests per step; the rest wait in the NIC', async (t) => {
  const { g, nic } = server();
  for (let i = 0; i < 20; i++) nic.request('GET', '/');
  t.equal(stepGuest(g.ctx, webserver), WEBSERVER_IDLE_STEP_CYCLES + WEBSERVER_MAX_REQUESTS_PER_STEP * WEBSERVER_REQUEST_CYCLES);
  t.equal(nic.take().length, 16);
  t.equal(nic.inbox.length, 4);
  stepGuest(g.ctx, webserver);
  const rest = nic.take();
  t.equal(rest.length, 4);
  t.equal(text(rest[3]!), 'hello from 127.77.0.5: request 20\n');
  t.equal(stepGuest(g.ctx, webserver), WEBSERVER_IDLE_STEP_CYCLES, 'nothing pending: an idle tick');
});

t.test('without a NIC it idles', async (t) => {
  const g = makeGuest(4);
  bootGuest(g.ctx, webserver, { kind: 'webserver', port: 80 }, 1);
  t.equal(stepGuest(g.ctx, webserver), WEBSERVER_IDLE_STEP_CYCLES);
  t.equal(g.mem.readU32(WS_OFF_REQUESTS), 0);
  t.equal(webserver.demandMhz(g.ctx), 10);
  t.throws(() => bootGuest(g.ctx, webserver, { kind: 'webserver', port: 0 }, 1), { code: 'INVALID_ARGUMENT' });
});

t.test('demand follows the smoothed load kept in a register', async (t) => {
  const { g, nic } = server();
  t.equal(webserver.demandMhz(g.ctx), 10, 'idle base demand');
  for (let s = 0; s < 600; s++) {
    for (let i = 0; i < 4; i++) nic.request('GET', '/');
    stepGuest(g.ctx, webserver);
  }
  nic.take();
  t.ok(Math.abs(webserverLoad(g.regs) - 4) < 0.01, `load ~4 requests/step (${webserverLoad(g.regs)})`);
  const busy = webserver.demandMhz(g.ctx);
  t.ok(Math.abs(busy - 410) < 1, `4 requests per step at 1,000 steps/s ~ 410 MHz (${busy})`);
  for (let s = 0; s < 600; s++) stepGuest(g.ctx, webserver);
  t.ok(webserver.demandMhz(g.ctx) < 11, 'back near idle when requests stop');
});

t.test('a copy of memory and registers goes on counting where the original was', async (t) => {
  const { g, nic } = server();
  for (let i = 0; i < 5; i++) nic.request('GET', '/');
  stepGuest(g.ctx, webserver);
  const nic2 = new QueueNic('127.77.0.5');
  const moved = makeGuest(16, { nic: nic2 });
  copyPresentPages(g, moved);
  moved.regs.restore(g.regs.save());
  nic2.request('GET', '/');
  stepGuest(moved.ctx, webserver);
  t.equal(text(nic2.take()[0]!), 'hello from 127.77.0.5: request 6\n');
});
