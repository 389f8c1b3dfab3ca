/**
 * The host's vcenter link against a tiny in-test vcenter: a real WebSocket server speaking the
 * real protocol (msgpackr frames, validated with the shared schemas).
 */
import t from 'tap';
import { createServer } from 'node:net';
import { Packr } from 'msgpackr';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  HOSTLINK_PATH,
  createLogger,
  decodeFrame,
  encodeFrame,
  hostToVcenterSchema,
  silentLogger,
  waitFor,
  type HostToVcenter,
  type VcenterToHost,
  type VmConfig,
} from '@esxemu/shared';
import { startHostInternals, type HostInternals, type HostOptions } from '../src/host.js';

t.setTimeout(90_000);

const SECRET = 's3cret';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * Decode and validate a frame from the host with the shared schema. Note: zod 4 refuses to build
 * hostToVcenterSchema (a discriminated union with two 'response' variants: "Duplicate
 * discriminator value"), so until @esxemu/shared fixes it, fall back to trying its variants.
 */
function decodeHostFrame(data: Buffer): HostToVcenter {
  try {
    return decodeFrame(data, hostToVcenterSchema);
  } catch (err) {
    if (!/Duplicate discriminator/.test((err as Error).message)) throw err;
  }
  const raw: unknown = packr.unpack(data);
  for (const variant of hostToVcenterSchema.options) {
    const r = variant.safeParse(raw);
    if (r.success) return r.data as HostToVcenter;
  }
  throw new Error(`invalid frame from the host: ${JSON.stringify(raw).slice(0, 300)}`);
}

interface Frame {
  conn: number;
  msg: HostToVcenter;
}

/** A minimal vcenter: welcomes hellos with the right secret, acks heartbeats, records frames. */
class TinyVcenter {
  readonly frames: Frame[] = [];
  readonly errors: string[] = [];
  readonly sockets: WebSocket[] = [];
  closedConns = 0;

  private constructor(
    private readonly wss: WebSocketServer,
    readonly port: number,
    private readonly rejectCode: 'BAD_SECRET' | null,
  ) {
    wss.on('connection', (ws) => this.onConnection(ws));
  }

  static async start(port = 0, rejectCode: 'BAD_SECRET' | null = null): Promise<TinyVcenter> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port, path: HOSTLINK_PATH });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    return new TinyVcenter(wss, (wss.address() as { port: number }).port, rejectCode);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private onConnection(ws: WebSocket): void {
    const conn = this.sockets.push(ws) - 1;
    ws.on('close', () => this.closedConns++);
    ws.on('message', (data, isBinary) => {
      let msg: HostToVcenter;
      try {
        if (!isBinary) throw new Error('text frame');
        msg = decodeHostFrame(data as Buffer);
      } catch (err) {
        this.errors.push((err as Error).message);
        return;
      }
      this.frames.push({ conn, msg });
      if (msg.type === 'hello') {
        if (this.rejectCode || msg.secret !== SECRET) {
          this.send(conn, { type: 'reject', error: { code: this.rejectCode ?? 'BAD_SECRET', message: 'wrong cluster secret' } });
          ws.close(4001, 'rejected');
        } else {
          this.send(conn, { type: 'welcome', hostId: 'host-7', heartbeatIntervalMs: 100, statsIntervalMs: 200 });
        }
      } else if (msg.type === 'heartbeat') {
        this.send(conn, { type: 'heartbeatAck', seq: msg.seq });
      }
    });
  }

  send(conn: number, msg: VcenterToHost): void {
    this.sockets[conn]!.send(encodeFrame(msg));
  }

  sendRaw(conn: number, data: Buffer): void {
    this.sockets[conn]!.send(data);
  }

  async frame<T extends HostToVcenter['type']>(type: T, pred: (m: Extract<HostToVcenter, { type: T }>, f: Frame) => boolean = () => true, timeoutMs = 10_000): Promise<Extract<HostToVcenter, { type: T }>> {
    const f = await waitFor(
      `a ${type} frame`,
      () => this.frames.find((f) => f.msg.type === type && pred(f.msg as Extract<HostToVcenter, { type: T }>, f)),
      timeoutMs,
      10,
    );
    return f.msg as Extract<HostToVcenter, { type: T }>;
  }

  count(type: HostToVcenter['type'], conn?: number): number {
    return this.frames.filter((f) => f.msg.type === type && (conn === undefined || f.conn === conn)).length;
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise((r) => this.wss.close(r));
  }
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen({ host: '127.0.0.1', port: 0 }, r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function hostOpts(dataDir: string, vcenterUrl: string, clusterSecret = SECRET): HostOptions {
  return {
    name: 'esx-test',
    vcenterUrl,
    clusterSecret,
    cpuCores: 2,
    cpuMhz: 2000,
    memoryMiB: 32,
    migrationListenHost: '127.0.0.1',
    migrationPort: 0,
    dataDir,
    logger: process.env['TEST_LOG'] ? createLogger({ name: 'host', level: 'debug' }) : silentLogger(),
  };
}

const idleVm: VmConfig = { id: 'vm-1', name: 'idle01', memoryMiB: 4, vcpus: 1, workload: { kind: 'idle' }, seed: 1, ip: '127.77.251.1' };

t.test('vcenter down at start: startHost resolves, keeps retrying, connects when vcenter comes up', async (t) => {
  const port = await freePort();
  const host = await startHostInternals(hostOpts(t.testdir(), `http://127.0.0.1:${port}`));
  let closed = false;
  t.teardown(() => (closed ? undefined : host.close()));
  await waitFor('a second connection attempt', () => host.link.connectAttempts >= 2, 10_000);
  t.not(host.link.state, 'connected');
  const vc = await TinyVcenter.start(port);
  t.teardown(() => vc.close());
  const hello = await vc.frame('hello', () => true, 15_000);
  t.equal(hello.host.name, 'esx-test', 'the host retried and registered once vcenter was up');
  await waitFor('registered', () => host.link.state === 'connected', 5000);
  await host.close();
  closed = true;
  t.equal(host.link.state, 'closed');
  await waitFor('vcenter to see the link close', () => vc.closedConns === 1, 5000);
  t.pass('close() is clean');
});

t.test('hello, heartbeats, stats, requests, malformed frame, reconnect', async (t) => {
  const vc = await TinyVcenter.start();
  t.teardown(() => vc.close());
  const host: HostInternals = await startHostInternals(hostOpts(t.testdir(), vc.url));
  t.teardown(() => host.close());

  const hello = await vc.frame('hello');
  t.equal(hello.protocol, 1);
  t.equal(hello.secret, SECRET);
  t.same(hello.host, { name: 'esx-test', cpuCores: 2, cpuMhz: 2000, memoryMiB: 32, migrationAddress: host.migrationAddress, version: hello.host.version });
  t.same(hello.vms, [], 'no VM running yet');
  await waitFor('registered', () => host.link.state === 'connected', 5000);
  t.equal(host.link.hostId, 'host-7');

  await waitFor('two heartbeats', () => vc.count('heartbeat') >= 2, 5000);
  const stats = await vc.frame('stats');
  t.equal(stats.host.cpuCapacityMhz, 4000);
  t.equal(stats.host.memCapacityMiB, 32);

  vc.send(0, { type: 'request', id: 1, op: 'vm.powerOn', args: { config: idleVm } });
  const r1 = await vc.frame('response', (m) => m.id === 1);
  t.ok(r1.ok, 'vm.powerOn answered ok');
  if (r1.ok) t.match(r1.result, { config: { id: 'vm-1' }, powerState: 'poweredOn' });

  vc.send(0, { type: 'request', id: 2, op: 'vm.powerOff', args: { vmId: 5 } });
  const r2 = await vc.frame('response', (m) => m.id === 2);
  t.notOk(r2.ok);
  if (!r2.ok) t.equal(r2.error.code, 'INVALID_ARGUMENT', 'bad arguments: INVALID_ARGUMENT');

  vc.send(0, { type: 'request', id: 3, op: 'vm.powerOn', args: { config: idleVm } });
  const r3 = await vc.frame('response', (m) => m.id === 3);
  if (!r3.ok) t.equal(r3.error.code, 'INVALID_STATE', 'powering on a running VM: INVALID_STATE');
  else t.fail('a duplicate power on must fail');

  vc.send(0, { type: 'request', id: 4, op: 'vm.list', args: {} });
  const r4 = await vc.frame('response', (m) => m.id === 4);
  t.match(r4, { ok: true, result: { vms: [{ config: { id: 'vm-1' } }] } });
  await vc.frame('stats', (m) => m.vms.some((v) => v.vmId === 'vm-1'));
  t.pass('stats carry the VM');

  // Garbage from vcenter: the host drops the connection and comes back.
  vc.sendRaw(0, Buffer.from([0xc1, 0xff, 0x00, 0x13]));
  await waitFor('the host to drop the connection', () => vc.closedConns >= 1, 5000);
  const hello2 = await vc.frame('hello', (_m, f) => f.conn === 1);
  t.same(
    hello2.vms.map((v) => v.config.id),
    ['vm-1'],
    'the new hello lists the VM, which kept running',
  );
  await waitFor('registered again', () => host.link.state === 'connected', 5000);
  t.equal(host.vmkernel.list().length, 1);
  t.same(vc.errors, [], 'every frame the host sent was valid');

  // A VM that crashes is reported to vcenter unsolicited.
  vc.send(1, { type: 'request', id: 5, op: 'vm.powerOn', args: { config: { ...idleVm, id: 'vm-2', name: 'idle02' } } });
  t.match(await vc.frame('response', (m) => m.id === 5), { ok: true });
  await host.vmkernel.get('vm-2').injectVmmCrash();
  const ev = await vc.frame('vmEvent');
  t.match(ev, { vmId: 'vm-2', event: 'crashed' }, 'vmEvent crashed sent to vcenter');

  await host.close();
  t.equal(host.vmkernel.machine.usedPages, 0, 'close powered the VM off and freed its pages');
});

t.test('wrong secret: rejected with BAD_SECRET, fatal resolves, no retry', async (t) => {
  const vc = await TinyVcenter.start(0, 'BAD_SECRET');
  t.teardown(() => vc.close());
  const host = await startHostInternals(hostOpts(t.testdir(), vc.url, 'wrong'));
  t.teardown(() => host.close());
  let timer: NodeJS.Timeout | undefined;
  const err = await Promise.race([host.fatal, new Promise<null>((r) => (timer = setTimeout(() => r(null), 10_000)))]);
  clearTimeout(timer);
  t.ok(err, 'fatal resolved');
  t.equal(err?.code, 'BAD_SECRET');
  t.equal(host.link.state, 'fatal');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(vc.sockets.length, 1, 'no further connection attempt');
  await host.close();
});
