/**
 * The client event stream (/api/stream): a WebSocket of JSON StreamMessage, hello first, then
 * every event and every task update as the registry commits them. Each client has a bounded
 * send buffer: one that reads too slowly is dropped (it can catch up with /api/events?after=)
 * rather than let vcenter's memory grow.
 */
import type { WebSocket } from 'ws';
import type { Logger, StreamMessage } from '@esxemu/shared';
import { ESXEMU_VERSION } from '@esxemu/shared';
import type { InventoryNotification, Registry } from '../inventory/registry.js';

export interface StreamOptions {
  maxClients: number;
  maxBufferedBytes: number;
}

const CLOSE_TRY_AGAIN = 1013;

export class StreamHub {
  private readonly clients = new Set<WebSocket>();
  private readonly unsubscribe: () => void;

  constructor(
    registry: Registry,
    private readonly logger: Logger,
    private readonly opts: StreamOptions,
  ) {
    this.unsubscribe = registry.observe((n) => this.onNotification(n));
  }

  get size(): number {
    return this.clients.size;
  }

  accept(socket: WebSocket, remoteAddress: string): void {
    if (this.clients.size >= this.opts.maxClients) {
      this.logger.warn({ remoteAddress, clients: this.clients.size }, 'stream client refused: too many clients');
      socket.close(CLOSE_TRY_AGAIN, 'too many stream clients');
      return;
    }
    this.clients.add(socket);
    this.logger.debug({ remoteAddress }, 'stream client connected');
    socket.on('close', () => this.clients.delete(socket));
    socket.on('error', (err) => this.logger.debug({ err: err.message, remoteAddress }, 'stream client error'));
    // Clients have nothing to say; whatever they send is ignored (ws caps its size).
    socket.on('message', () => undefined);
    this.send(socket, JSON.stringify({ kind: 'hello', version: ESXEMU_VERSION } satisfies StreamMessage));
  }

  close(): void {
    this.unsubscribe();
    for (const c of this.clients) c.close(1001, 'vcenter is shutting down');
    this.clients.clear();
  }

  private onNotification(n: InventoryNotification): void {
    let msg: StreamMessage;
    if (n.kind === 'event') msg = { kind: 'event', event: n.event };
    else if (n.change.kind === 'task') msg = { kind: 'task', task: n.change.task };
    else return;
    if (this.clients.size === 0) return;
    const data = JSON.stringify(msg);
    for (const c of this.clients) this.send(c, data);
  }

  private send(socket: WebSocket, data: string): void {
    if (socket.readyState !== socket.OPEN) return;
    if (socket.bufferedAmount + Buffer.byteLength(data) > this.opts.maxBufferedBytes) {
      this.logger.warn({ bufferedBytes: socket.bufferedAmount }, 'stream client too slow, dropping it');
      this.clients.delete(socket);
      socket.terminate();
      return;
    }
    socket.send(data);
  }
}
