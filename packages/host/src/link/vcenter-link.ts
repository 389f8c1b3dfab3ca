/**
 * The host's link to vcenter: a WebSocket client to <vcenterUrl>/hostlink speaking the
 * protocol of @esxemu/shared's hostlink.ts (binary msgpackr frames, validated both ways).
 *
 *   idle -> connecting -> registering -> connected -> (link drops) -> waiting -> connecting ...
 *                            |                                              ^
 *                            +-- reject BAD_SECRET -> fatal   (no retry)    | backoff
 *   any -> closed (close())                                                 |
 *   malformed frame, no welcome in time, silent vcenter, send buffer full --+
 *
 * VMs keep running whatever the link does; the next hello lists them. Requests are answered on
 * the connection they came on, at most maxInFlight at a time.
 */
import WebSocket from 'ws';
import {
  Backoff,
  EsxError,
  HOSTLINK_MAX_FRAME_BYTES,
  HOSTLINK_PATH,
  HOSTLINK_VERSION,
  decodeFrame,
  encodeFrame,
  hostOpSchemas,
  summarizeZodError,
  toEsxError,
  vcenterToHostSchema,
  type HostIdentity,
  type HostOp,
  type HostOpArgs,
  type HostToVcenter,
  type Logger,
  type VcenterToHost,
} from '@esxemu/shared';
import type { Datastore } from '../datastore/datastore.js';
import type { DatastoreMount } from '../datastore/mount.js';
import type { VmkernelLog } from '../vmkernel/vmkernel-log.js';
import type { Vmkernel } from '../vmkernel/vmkernel.js';

export type LinkState = 'idle' | 'connecting' | 'registering' | 'connected' | 'waiting' | 'fatal' | 'closed';

/** Reject codes after which retrying cannot help. */
const FATAL_REJECTS: ReadonlySet<string> = new Set(['BAD_SECRET', 'UNAUTHORIZED', 'FORBIDDEN']);

export interface VcenterLinkOptions {
  vcenterUrl: string;
  clusterSecret: string;
  identity: HostIdentity;
  vmkernel: Vmkernel;
  logger: Logger;
  vmkLog?: VmkernelLog | null;
  /** The host's datastore mount (VM files, stats), when it has one configured. */
  datastore?: DatastoreMount | null;
  /** Called once if vcenter refuses this host for good (e.g. BAD_SECRET). */
  onFatal(err: EsxError): void;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** WebSocket handshake bound. */
  handshakeTimeoutMs?: number;
  /** Bound on waiting for welcome after hello. */
  helloTimeoutMs?: number;
  /** vcenter silent (no heartbeatAck) this long: drop and reconnect. Default max(10 x heartbeat, 10 s). */
  deadPeerMs?: number;
  /** Requests being handled at once at most; more are refused. */
  maxInFlight?: number;
  /** Bytes queued for sending at most; above, vcenter is not reading: drop. */
  maxBufferedBytes?: number;
}

export class VcenterLink {
  private st: LinkState = 'idle';
  private ws: WebSocket | null = null;
  private readonly url: string;
  private readonly backoff: Backoff;
  private readonly timers = new Set<NodeJS.Timeout>();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private statsTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private seq = 0;
  private lastAckAt = 0;
  private inFlight = 0;
  private failuresInARow = 0;
  private hostIdValue: string | null = null;
  private attempts = 0;
  private readonly unsubscribe: () => void;

  constructor(private readonly o: VcenterLinkOptions) {
    this.url = hostlinkUrl(o.vcenterUrl);
    this.backoff = new Backoff(o.backoffMinMs ?? 200, o.backoffMaxMs ?? 5000);
    this.unsubscribe = o.vmkernel.onVmEvent((e) => {
      if (this.st === 'connected') this.send({ type: 'vmEvent', vmId: e.vmId, event: e.event, message: e.message });
    });
  }

  get state(): LinkState {
    return this.st;
  }

  /** The id vcenter gave this host in its last welcome. */
  get hostId(): string | null {
    return this.hostIdValue;
  }

  /** Connection attempts so far. */
  get connectAttempts(): number {
    return this.attempts;
  }

  private transition(to: LinkState, why: string, level: 'debug' | 'info' | 'warn' | 'error' = 'info'): void {
    const from = this.st;
    this.st = to;
    this.o.logger[level]({ link: this.url, from, to }, `vcenter link: ${why}`);
  }

  start(): void {
    if (this.st !== 'idle') return;
    this.connect();
  }

  private connect(): void {
    this.reconnectTimer = null;
    if (this.st === 'closed' || this.st === 'fatal') return;
    this.attempts++;
    this.transition('connecting', `connecting to ${this.url}`, 'debug');
    const ws = new WebSocket(this.url, {
      maxPayload: HOSTLINK_MAX_FRAME_BYTES,
      handshakeTimeout: this.o.handshakeTimeoutMs ?? 5000,
      perMessageDeflate: false,
    });
    ws.binaryType = 'nodebuffer';
    this.ws = ws;
    ws.on('open', () => this.onOpen(ws));
    ws.on('message', (data, isBinary) => this.onFrame(ws, data as Buffer | Buffer[], isBinary));
    ws.on('error', (err) => this.onSocketError(ws, err));
    ws.on('close', (code, reason) => this.onClose(ws, code, reason.toString()));
  }

  private onOpen(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.transition('registering', 'connected, sending hello', 'debug');
    this.send({ type: 'hello', protocol: HOSTLINK_VERSION, secret: this.o.clusterSecret, host: this.o.identity, vms: this.o.vmkernel.list() });
    const helloTimeoutMs = this.o.helloTimeoutMs ?? 5000;
    this.after(helloTimeoutMs, () => {
      if (ws === this.ws && this.st === 'registering') this.drop(ws, 'TIMEOUT', `no welcome from vcenter within ${helloTimeoutMs} ms`);
    });
  }

  private onSocketError(ws: WebSocket, err: Error): void {
    if (ws !== this.ws) return;
    const e = toEsxError(err);
    // 'close' follows; the error is only worth a line.
    this.o.logger[this.failuresInARow === 0 ? 'warn' : 'debug']({ link: this.url, code: e.code }, `vcenter link error: ${e.message}`);
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopTimers();
    if (this.st === 'closed' || this.st === 'fatal') return;
    const wasConnected = this.st === 'connected';
    if (wasConnected) this.o.vmkLog?.log('Net', `lost connection to vcenter (${code}${reason ? ` ${reason}` : ''})`);
    const delayMs = this.backoff.next();
    this.failuresInARow++;
    this.transition(
      'waiting',
      `${wasConnected ? 'connection lost' : 'could not register'} (close ${code}${reason ? `: ${reason}` : ''}); retrying in ${delayMs} ms`,
      wasConnected || this.failuresInARow === 1 ? 'warn' : 'debug',
    );
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  private onFrame(ws: WebSocket, data: Buffer | Buffer[], isBinary: boolean): void {
    if (ws !== this.ws) return;
    let msg: VcenterToHost;
    try {
      if (!isBinary) throw new EsxError('PROTOCOL_ERROR', 'text frame on the host link (frames are binary msgpack)');
      msg = decodeFrame(data, vcenterToHostSchema);
    } catch (err) {
      const e = toEsxError(err);
      this.drop(ws, e.code, `malformed frame from vcenter: ${e.message}`);
      return;
    }
    switch (msg.type) {
      case 'welcome':
        if (this.st !== 'registering') return this.drop(ws, 'PROTOCOL_ERROR', `unexpected welcome while ${this.st}`);
        return this.onWelcome(msg);
      case 'reject':
        return this.onReject(ws, EsxError.fromBody(msg.error));
      case 'heartbeatAck':
        this.lastAckAt = Date.now();
        return;
      case 'request':
        if (this.st !== 'connected') return this.drop(ws, 'PROTOCOL_ERROR', `request before welcome`);
        void this.onRequest(ws, msg.id, msg.op, msg.args);
        return;
    }
  }

  private onWelcome(w: Extract<VcenterToHost, { type: 'welcome' }>): void {
    this.hostIdValue = w.hostId;
    this.backoff.reset();
    this.failuresInARow = 0;
    this.lastAckAt = Date.now();
    this.transition('connected', `registered with vcenter as ${w.hostId} (heartbeat ${w.heartbeatIntervalMs} ms, stats ${w.statsIntervalMs} ms)`);
    this.o.vmkLog?.log('Net', `connected to vcenter ${this.url} as ${w.hostId}`);
    const deadPeerMs = this.o.deadPeerMs ?? Math.max(10 * w.heartbeatIntervalMs, 10_000);
    this.heartbeatTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws) return;
      if (Date.now() - this.lastAckAt > deadPeerMs) return this.drop(ws, 'TIMEOUT', `vcenter silent for ${deadPeerMs} ms`);
      this.send({ type: 'heartbeat', seq: this.seq++, sentAt: Date.now() });
    }, w.heartbeatIntervalMs);
    this.o.vmkernel.setSampleInterval(w.statsIntervalMs);
    this.statsTimer = setInterval(() => this.sendStats(), w.statsIntervalMs);
    this.sendStats();
  }

  private sendStats(): void {
    if (this.st !== 'connected') return;
    const s = this.o.vmkernel.stats();
    const ds = this.o.datastore;
    this.send({ type: 'stats', host: { ...s.host, datastore: ds ? ds.status() : null }, vms: s.vms });
    // Capacity and live hosts for the next report (reads the LUN: not on this tick's path).
    void ds?.refresh();
  }

  private onReject(ws: WebSocket, err: EsxError): void {
    if (FATAL_REJECTS.has(err.code)) {
      this.stopTimers();
      this.transition('fatal', `vcenter rejected this host: ${err.code}: ${err.message}; not retrying`, 'error');
      this.ws = null;
      ws.close(1000, 'rejected');
      this.after(1000, () => ws.terminate());
      this.o.onFatal(err);
      return;
    }
    this.drop(ws, err.code, `vcenter rejected this host: ${err.message}`);
  }

  private async onRequest(ws: WebSocket, id: number, op: HostOp, rawArgs: unknown): Promise<void> {
    const maxInFlight = this.o.maxInFlight ?? 32;
    if (this.inFlight >= maxInFlight) {
      return this.respondError(ws, id, new EsxError('INSUFFICIENT_RESOURCES', `the host is already handling ${maxInFlight} requests`));
    }
    const parsed = hostOpSchemas[op].args.safeParse(rawArgs);
    if (!parsed.success) {
      return this.respondError(ws, id, new EsxError('INVALID_ARGUMENT', `invalid arguments for ${op}: ${summarizeZodError(parsed.error)}`));
    }
    this.inFlight++;
    try {
      const result = await this.dispatch(op, parsed.data);
      if (ws === this.ws) this.send({ type: 'response', id, ok: true, result });
    } catch (err) {
      this.respondError(ws, id, toEsxError(err));
    } finally {
      this.inFlight--;
    }
  }

  private async dispatch(op: HostOp, args: unknown): Promise<unknown> {
    const k = this.o.vmkernel;
    switch (op) {
      case 'vm.powerOn':
        return k.powerOn((args as HostOpArgs<'vm.powerOn'>).config);
      case 'vm.powerOff':
        return k.powerOff((args as HostOpArgs<'vm.powerOff'>).vmId);
      case 'vm.reset':
        return k.reset((args as HostOpArgs<'vm.reset'>).vmId);
      case 'vm.list':
        return Promise.resolve({ vms: k.list() });
      case 'vm.createFiles':
        return this.datastore().createVm((args as HostOpArgs<'vm.createFiles'>).config).then((vmxPath) => ({ vmxPath }));
      case 'vm.deleteFiles':
        return this.datastore().deleteVm((args as HostOpArgs<'vm.deleteFiles'>).name).then(() => ({}));
      case 'vm.readVmx':
        return this.datastore().readVmx((args as HostOpArgs<'vm.readVmx'>).path).then((config) => ({ config }));
    }
  }

  private datastore(): Datastore {
    if (!this.o.datastore) throw new EsxError('INVALID_STATE', 'this host has no datastore configured');
    return this.o.datastore.require();
  }

  private respondError(ws: WebSocket, id: number, e: EsxError): void {
    if (ws !== this.ws) return;
    this.send({ type: 'response', id, ok: false, error: { code: e.code, message: e.message } });
  }

  private send(msg: HostToVcenter): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const maxBuffered = this.o.maxBufferedBytes ?? 4 * 1024 * 1024;
    if (ws.bufferedAmount > maxBuffered) {
      this.drop(ws, 'TIMEOUT', `vcenter is not reading (${ws.bufferedAmount} bytes queued)`);
      return false;
    }
    ws.send(encodeFrame(msg));
    return true;
  }

  /** Give up on this connection (close handshake, bounded) and let onClose reconnect. */
  private drop(ws: WebSocket, code: string, why: string): void {
    this.o.logger.warn({ link: this.url, code }, `vcenter link: ${code}: ${why}; dropping the connection`);
    this.stopTimers();
    try {
      ws.close(code === 'PROTOCOL_ERROR' || code === 'PAYLOAD_TOO_LARGE' ? 1002 : 1011, code);
    } catch {
      // not open yet
    }
    this.after(1000, () => ws.terminate());
  }

  private after(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private stopTimers(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.heartbeatTimer = null;
    this.statsTimer = null;
  }

  /** Stop for good: close the connection (bounded) and never reconnect. */
  async close(): Promise<void> {
    if (this.st === 'closed') return;
    const prev = this.st;
    this.transition('closed', 'closing', 'debug');
    this.unsubscribe();
    this.stopTimers();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && prev !== 'fatal') {
      await new Promise<void>((resolve) => {
        if (ws.readyState === WebSocket.CLOSED) return resolve();
        const t = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 1000);
        ws.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        try {
          ws.close(1001, 'host shutting down');
        } catch {
          ws.terminate();
        }
      });
    }
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/** <vcenterUrl>/hostlink as a ws: or wss: URL. */
export function hostlinkUrl(vcenterUrl: string): string {
  let u: URL;
  try {
    u = new URL(vcenterUrl);
  } catch {
    throw new EsxError('INVALID_ARGUMENT', `vcenter URL '${vcenterUrl}' is not a URL (expected e.g. http://127.0.0.1:7080)`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new EsxError('INVALID_ARGUMENT', `vcenter URL '${vcenterUrl}' must be http(s):// or ws(s)://`);
  }
  if (!u.pathname.endsWith(HOSTLINK_PATH)) u.pathname = u.pathname.replace(/\/+$/, '') + HOSTLINK_PATH;
  return u.toString();
}
