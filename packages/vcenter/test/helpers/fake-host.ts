/**
 * A test host: a real WebSocket peer speaking the real host-link protocol (msgpackr frames,
 * the shared schemas). It says hello, can heartbeat, records what vcenter sends and answers
 * requests the way the test tells it to.
 */
import WebSocket from 'ws';
import {
  HOSTLINK_PATH,
  HOSTLINK_VERSION,
  decodeFrame,
  encodeFrame,
  vcenterToHostSchema,
  waitFor,
  type ErrorCode,
  type HostToVcenter,
  type VcenterToHost,
  type VmRuntime,
} from '@esxemu/shared';

export type RequestMsg = Extract<VcenterToHost, { type: 'request' }>;

export interface FakeHostOptions {
  url: string;
  secret: string;
  name: string;
  memoryMiB?: number;
  vms?: VmRuntime[];
  /** Send heartbeats at this interval (ms) once welcomed; 0 = never. */
  heartbeatMs?: number;
}

export class FakeHost {
  readonly messages: VcenterToHost[] = [];
  readonly requests: RequestMsg[] = [];
  closeInfo: { code: number; reason: string } | null = null;
  readonly ws: WebSocket;
  private heartbeat: NodeJS.Timeout | null = null;
  private seq = 0;

  private constructor(url: string) {
    this.ws = new WebSocket(url.replace(/^http/, 'ws') + HOSTLINK_PATH);
    this.ws.on('message', (data: Buffer) => {
      const msg = decodeFrame(data, vcenterToHostSchema);
      this.messages.push(msg);
      if (msg.type === 'request') this.requests.push(msg);
    });
    this.ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.stopHeartbeats();
    });
    this.ws.on('error', () => undefined);
  }

  /** Open a link without saying anything. */
  static async open(url: string): Promise<FakeHost> {
    const h = new FakeHost(url);
    await new Promise<void>((resolve, reject) => {
      h.ws.once('open', () => resolve());
      h.ws.once('error', reject);
    });
    return h;
  }

  /** Open a link and say hello; resolves with the first answer (welcome or reject). */
  static async connect(opts: FakeHostOptions): Promise<{ host: FakeHost; answer: VcenterToHost }> {
    const h = await FakeHost.open(opts.url);
    h.send({
      type: 'hello',
      protocol: HOSTLINK_VERSION,
      secret: opts.secret,
      host: { name: opts.name, cpuCores: 4, cpuMhz: 2000, memoryMiB: opts.memoryMiB ?? 4096, migrationAddress: '127.0.0.1:9', version: 'test' },
      vms: opts.vms ?? [],
    });
    const answer = await h.waitMessage((m) => m.type === 'welcome' || m.type === 'reject');
    if (answer.type === 'welcome' && opts.heartbeatMs) h.startHeartbeats(opts.heartbeatMs);
    return { host: h, answer };
  }

  send(msg: HostToVcenter): void {
    this.sendRaw(encodeFrame(msg));
  }

  sendRaw(data: Buffer | string): void {
    this.ws.send(data);
  }

  startHeartbeats(ms: number): void {
    this.stopHeartbeats();
    this.heartbeat = setInterval(() => {
      if (this.ws.readyState === WebSocket.OPEN) this.send({ type: 'heartbeat', seq: this.seq++, sentAt: Date.now() });
    }, ms);
  }

  stopHeartbeats(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  waitMessage(pred: (m: VcenterToHost) => boolean, timeoutMs = 3000): Promise<VcenterToHost> {
    return waitFor('a message from vcenter', () => this.messages.find(pred) ?? null, timeoutMs, 10);
  }

  /** The next request of this op not yet taken. */
  async nextRequest(op: RequestMsg['op'], timeoutMs = 3000): Promise<RequestMsg> {
    const req = await waitFor(`a ${op} request`, () => this.requests.find((r) => r.op === op) ?? null, timeoutMs, 10);
    this.requests.splice(this.requests.indexOf(req), 1);
    return req;
  }

  respond(id: number, result: unknown): void {
    this.send({ type: 'response', id, ok: true, result });
  }

  respondError(id: number, code: ErrorCode, message: string): void {
    this.send({ type: 'response', id, ok: false, error: { code, message } });
  }

  waitClosed(timeoutMs = 3000): Promise<{ code: number; reason: string }> {
    return waitFor('the link to close', () => this.closeInfo, timeoutMs, 10);
  }

  close(): void {
    this.stopHeartbeats();
    this.ws.terminate();
  }
}
