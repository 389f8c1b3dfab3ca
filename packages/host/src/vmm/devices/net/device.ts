/**
 * The VM's virtual NIC, VMM side: an HTTP server bound at the VM's own IP and its service port,
 * whose requests become frames in a bounded receive queue the guest reads with receive() at its
 * step boundaries; the guest's transmit() answers them. The device itself answers only what a
 * real NIC and its link would make happen:
 *   503 when the receive queue is full (the guest is overloaded) or the device is reset/closed,
 *   504 when the guest did not answer within requestTimeoutMs,
 *   413 when a request body is over maxBodyBytes.
 * Opening fails with PORT_IN_USE or ADDRESS_UNAVAILABLE, leaving nothing bound.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { toEsxError } from '@esxemu/shared/core';
import type { NicReply, NicRequest, VirtualNic } from '@esxemu/guest';
import { NetMetrics } from './metrics.js';
import { RequestQueue } from './queue.js';

export interface NetDeviceOptions {
  ip: string;
  port: number;
  /** Requests waiting for the guest at most. */
  queueCapacity: number;
  /** A request the guest has not answered after this long gets 504 from the device. */
  requestTimeoutMs: number;
  /** Largest request body accepted. */
  maxBodyBytes: number;
  /** Concurrent client connections at most. */
  maxConnections: number;
}

export const DEFAULT_NET_DEVICE_OPTIONS: Omit<NetDeviceOptions, 'ip' | 'port'> = {
  queueCapacity: 256,
  requestTimeoutMs: 5000,
  maxBodyBytes: 64 * 1024,
  maxConnections: 512,
};

/** Bound on closing the server. */
const CLOSE_TIMEOUT_MS = 2000;

interface Pending {
  res: ServerResponse;
  timer: NodeJS.Timeout;
}

export class NetDevice implements VirtualNic {
  readonly ip: string;
  readonly metrics = new NetMetrics();
  private readonly queue: RequestQueue;
  /** Requests accepted and not yet answered (queued or taken by the guest). */
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly server: Server,
    private readonly opts: NetDeviceOptions,
  ) {
    this.ip = opts.ip;
    this.queue = new RequestQueue(opts.queueCapacity);
  }

  /** Bind the device at ip:port. */
  static async open(opts: NetDeviceOptions): Promise<NetDevice> {
    const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 });
    server.maxConnections = opts.maxConnections;
    const dev = new NetDevice(server, opts);
    server.on('request', (req, res) => dev.onRequest(req, res));
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(toEsxError(err));
      server.once('error', onError);
      server.listen({ host: opts.ip, port: opts.port, exclusive: true }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    return dev;
  }

  /** ip:port actually bound. */
  get address(): string {
    const a = this.server.address() as AddressInfo | null;
    return a ? `${a.address}:${a.port}` : `${this.opts.ip}:${this.opts.port}`;
  }

  get queued(): number {
    return this.queue.length;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed) return reply(res, 503, 'the VM is powering off\n');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.opts.maxBodyBytes) {
      this.metrics.tooLarge++;
      return reply(res, 413, `request body over ${this.opts.maxBodyBytes} bytes\n`, true);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > this.opts.maxBodyBytes) {
        refused = true;
        this.metrics.tooLarge++;
        reply(res, 413, `request body over ${this.opts.maxBodyBytes} bytes\n`, true);
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      if (refused) return;
      this.accept(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
  }

  private accept(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    if (this.closed) return reply(res, 503, 'the VM is powering off\n');
    const id = this.nextId++;
    const frame: NicRequest = { id, method: req.method ?? 'GET', path: req.url ?? '/', body: new Uint8Array(body.buffer, body.byteOffset, body.length) };
    if (!this.queue.push(frame)) {
      this.metrics.rejectedQueueFull++;
      return reply(res, 503, `the VM's network queue is full (${this.opts.queueCapacity} requests waiting)\n`);
    }
    this.metrics.received++;
    const timer = setTimeout(() => {
      if (!this.pending.delete(id)) return;
      this.queue.remove(id);
      this.metrics.timedOut++;
      reply(res, 504, `the VM did not answer within ${this.opts.requestTimeoutMs} ms\n`);
    }, this.opts.requestTimeoutMs);
    this.pending.set(id, { res, timer });
    res.on('close', () => {
      // The client went away before an answer: forget the request.
      const p = this.pending.get(id);
      if (p && p.res === res && !res.writableEnded) {
        clearTimeout(p.timer);
        this.pending.delete(id);
        this.queue.remove(id);
      }
    });
  }

  receive(): NicRequest | null {
    return this.queue.shift();
  }

  transmit(r: NicReply): void {
    const p = this.pending.get(r.id);
    if (!p) {
      this.metrics.orphanReplies++;
      return;
    }
    this.pending.delete(r.id);
    clearTimeout(p.timer);
    const status = Number.isInteger(r.status) && r.status >= 100 && r.status <= 599 ? r.status : 500;
    const body = Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength);
    p.res.writeHead(status, { 'content-type': sanitizeHeader(r.contentType), 'content-length': body.length });
    p.res.end(body);
    this.metrics.replied++;
  }

  /** Answer every request not yet answered with 503 (device reset or close). */
  drain(why: string): number {
    this.queue.clear();
    let n = 0;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      reply(p.res, 503, `${why}\n`);
      n++;
    }
    this.metrics.drained += n;
    return n;
  }

  /** Stop listening, answer what is pending with 503, close connections. Bounded. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.drain('the VM is powering off');
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      this.server.close(() => {
        clearTimeout(t);
        resolve();
      });
      this.server.closeIdleConnections();
      setImmediate(() => this.server.closeAllConnections());
    });
  }
}

function reply(res: ServerResponse, status: number, text: string, close = false): void {
  if (res.headersSent || res.writableEnded) return;
  const body = Buffer.from(text);
  const headers: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length };
  if (close) headers['connection'] = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

function sanitizeHeader(v: string): string {
  const s = typeof v === 'string' ? v.replace(/[^\x20-\x7e]/g, '').slice(0, 200) : '';
  return s || 'application/octet-stream';
}
