/**
 * The host side of vcenter: accepts host links at HOSTLINK_PATH, registers hosts (secret,
 * unique name, reconciliation of their VMs), watches their heartbeats, turns their stats and
 * VM events into inventory changes, and sends them requests.
 *
 * One live link per host name. A hello for a name whose current link still heartbeats is
 * rejected NAME_IN_USE (two processes claiming one host would flap). If the current link has
 * missed two heartbeats it is considered stale (e.g. the host restarted before its old TCP
 * connection was torn down) and the new link replaces it without a disconnect in between.
 */
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { HostOp, HostOpArgs, HostOpResult, Logger } from '@esxemu/shared';
import { EsxError, HOSTLINK_VERSION } from '@esxemu/shared';
import type { LiveStats } from '../inventory/live-stats.js';
import type { HostRecord } from '../inventory/records.js';
import type { Registry } from '../inventory/registry.js';
import { HostSession, type HelloMessage, type HelloOutcome, type SessionHandlers, type SessionMessage } from './host-session.js';
import { reconcileHostVms } from './reconcile.js';
import { secretsEqual } from './secret.js';
import { applyVmEvent } from './vm-events.js';

export interface HostServerOptions {
  clusterSecret: string;
  /** Cluster new hosts join. */
  defaultClusterId: string;
  heartbeatIntervalMs: number;
  hostTimeoutMs: number;
  statsIntervalMs: number;
  helloTimeoutMs: number;
  requestTimeoutMs: number;
  maxPendingRequests: number;
  logger: Logger;
}

/** Host links open at once (registered or still saying hello). */
const MAX_LINKS = 1024;
/** lastSeenAt is written to the database at most this often per host. */
const SEEN_PERSIST_MS = 1000;
/** A link silent for this many heartbeat intervals may be replaced by a new hello. */
const STALE_HEARTBEATS = 2;

export class HostServer implements SessionHandlers {
  /** Active sessions by host name. */
  private readonly byName = new Map<string, HostSession>();
  private readonly all = new Set<HostSession>();
  private readonly seenPersistedAt = new Map<string, number>();
  private readonly watchdog: NodeJS.Timeout;
  private closing = false;
  private readonly logger: Logger;

  constructor(
    private readonly registry: Registry,
    private readonly stats: LiveStats,
    private readonly opts: HostServerOptions,
  ) {
    this.logger = opts.logger.child({ component: 'hostlink' });
    const everyMs = Math.max(20, Math.min(1000, Math.floor(opts.hostTimeoutMs / 4)));
    this.watchdog = setInterval(() => this.checkHeartbeats(), everyMs);
    this.watchdog.unref();
  }

  /** A new WebSocket at HOSTLINK_PATH. */
  accept(socket: WebSocket, remoteAddress: string): void {
    if (this.closing || this.all.size >= MAX_LINKS) {
      this.logger.warn({ remoteAddress, links: this.all.size }, 'host link refused (shutting down or too many links)');
      socket.close(1013, 'try again later');
      return;
    }
    const session = new HostSession(socket, this, {
      helloTimeoutMs: this.opts.helloTimeoutMs,
      requestTimeoutMs: this.opts.requestTimeoutMs,
      maxPendingRequests: this.opts.maxPendingRequests,
      logger: this.logger,
      remoteAddress,
    });
    this.all.add(session);
    socket.once('close', () => this.all.delete(session));
  }

  isConnected(hostId: string): boolean {
    return this.sessionOf(hostId) !== null;
  }

  /** Send a request to a connected host (bounded by the request timeout). */
  request<O extends HostOp>(hostId: string, op: O, args: HostOpArgs<O>): Promise<HostOpResult<O>> {
    const s = this.sessionOf(hostId);
    if (!s) {
      const name = this.registry.store.host(hostId)?.name ?? hostId;
      return Promise.reject(new EsxError('HOST_DISCONNECTED', `host ${name} is not connected`));
    }
    return s.request(op, args);
  }

  /** Close every link (hosts will reconnect to the next vcenter with backoff). */
  close(): void {
    this.closing = true;
    clearInterval(this.watchdog);
    for (const s of [...this.all]) s.close('vcenter is shutting down');
    this.byName.clear();
  }

  // SessionHandlers

  onHello(session: HostSession, hello: HelloMessage): HelloOutcome {
    const name = hello.host.name;
    const reject = (code: 'BAD_SECRET' | 'NAME_IN_USE' | 'PROTOCOL_ERROR', message: string): HelloOutcome => {
      this.registry.event({ type: 'HostRejected', message: `host ${name} from ${session.remoteAddress} rejected: ${message}`, host: name });
      return { ok: false, error: new EsxError(code, message) };
    };
    if (this.closing) return { ok: false, error: new EsxError('HOST_DISCONNECTED', 'vcenter is shutting down') };
    if (hello.protocol !== HOSTLINK_VERSION) {
      return reject('PROTOCOL_ERROR', `host link protocol ${hello.protocol} is not supported; this vcenter speaks ${HOSTLINK_VERSION}`);
    }
    if (!secretsEqual(hello.secret, this.opts.clusterSecret)) {
      return reject('BAD_SECRET', 'wrong cluster secret; use the one in the vcenter data directory (cluster-secret)');
    }
    const now = Date.now();
    const existing = this.byName.get(name);
    let replaced = false;
    if (existing && existing !== session) {
      const silentMs = now - existing.lastSeenAt;
      if (silentMs <= STALE_HEARTBEATS * this.opts.heartbeatIntervalMs) {
        return reject('NAME_IN_USE', `a host named ${name} is already connected from ${existing.remoteAddress}`);
      }
      this.logger.warn({ host: name, silentMs, old: existing.remoteAddress }, 'replacing a stale link of the same host');
      this.byName.delete(name);
      existing.terminate(`replaced by a new link from ${session.remoteAddress}`);
      replaced = true;
    }

    const known = this.registry.store.hostByName(name);
    const host: HostRecord = {
      id: known?.id ?? randomUUID(),
      name,
      clusterId: known?.clusterId ?? this.opts.defaultClusterId,
      cpuCores: hello.host.cpuCores,
      cpuMhz: hello.host.cpuMhz,
      memoryMiB: hello.host.memoryMiB,
      migrationAddress: hello.host.migrationAddress,
      version: hello.host.version,
      connectionState: 'connected',
      registeredAt: known?.registeredAt ?? now,
      lastSeenAt: now,
    };
    const rec = reconcileHostVms(this.registry.store, host, hello.vms, now);
    for (const w of rec.warnings) this.logger.warn({ host: name }, w);
    const how = known ? (replaced ? 'reconnected (replacing a stale link)' : 'reconnected') : 'registered';
    this.registry.commit(
      [{ kind: 'hostRegistered', host }, ...rec.changes],
      [{ type: 'HostConnected', message: `host ${name} ${how} from ${session.remoteAddress}, ${hello.vms.length} VM(s) reported`, host: name }, ...rec.events],
    );
    this.byName.set(name, session);
    this.seenPersistedAt.set(host.id, now);
    return {
      ok: true,
      hostId: host.id,
      welcome: { type: 'welcome', hostId: host.id, heartbeatIntervalMs: this.opts.heartbeatIntervalMs, statsIntervalMs: this.opts.statsIntervalMs },
    };
  }

  onMessage(session: HostSession, msg: SessionMessage): void {
    const hostId = session.hostId!;
    switch (msg.type) {
      case 'heartbeat': {
        const now = Date.now();
        if (now - (this.seenPersistedAt.get(hostId) ?? 0) >= SEEN_PERSIST_MS) {
          this.seenPersistedAt.set(hostId, now);
          this.registry.commit([{ kind: 'hostSeen', hostId, at: now }]);
        }
        return;
      }
      case 'stats': {
        const runningHere = new Set(
          this.registry.store
            .vmsOnHost(hostId)
            .filter((v) => v.powerState === 'poweredOn')
            .map((v) => v.config.id),
        );
        this.stats.report(hostId, msg.host, msg.vms, (id) => runningHere.has(id));
        return;
      }
      case 'vmEvent': {
        const host = this.registry.store.host(hostId);
        if (!host) return;
        const out = applyVmEvent(this.registry.store, host, msg);
        if (out.ignored !== null) {
          this.logger.debug({ host: host.name, vmId: msg.vmId, event: msg.event, why: out.ignored }, 'vm event changes nothing');
          return;
        }
        this.registry.commit(out.changes, out.events);
        return;
      }
    }
  }

  onClose(session: HostSession, reason: string): void {
    const name = session.hostName;
    if (this.closing || name === null || this.byName.get(name) !== session) return;
    this.byName.delete(name);
    const hostId = session.hostId!;
    this.seenPersistedAt.delete(hostId);
    this.registry.commit(
      [{ kind: 'hostConnection', hostId, state: 'disconnected', lastSeenAt: session.lastSeenAt }],
      [{ type: 'HostDisconnected', message: `host ${name} disconnected: ${reason}; its VMs keep their last known state`, host: name }],
    );
  }

  private sessionOf(hostId: string): HostSession | null {
    for (const s of this.byName.values()) if (s.hostId === hostId) return s;
    return null;
  }

  private checkHeartbeats(): void {
    const now = Date.now();
    for (const s of [...this.byName.values()]) {
      const silentMs = now - s.lastSeenAt;
      if (silentMs > this.opts.hostTimeoutMs) {
        s.terminate(`no heartbeat for ${silentMs} ms (timeout ${this.opts.hostTimeoutMs} ms)`);
      }
    }
  }
}
