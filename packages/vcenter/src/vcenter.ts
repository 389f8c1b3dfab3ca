/**
 * The vcenter process: opens the data directory (database, token, cluster secret), recovers
 * from the previous run (hosts are disconnected until they say hello again, unfinished tasks
 * become TASK_INTERRUPTED), wires the registry, the host server, the tasks and the API, and
 * listens.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { HOSTLINK_PATH, toEsxError } from '@esxemu/shared';
import { buildHttpServer } from './api/http-server.js';
import { StreamHub } from './api/stream.js';
import { describeConfig, resolveConfig, type VcenterOptions, type VcenterTuning } from './config.js';
import { Store } from './db/store.js';
import { HostServer } from './hostlink/host-server.js';
import { LiveStats } from './inventory/live-stats.js';
import type { ClusterRecord } from './inventory/records.js';
import { Registry } from './inventory/registry.js';
import { InventoryView } from './inventory/views.js';
import { IpPool } from './network/ip-pool.js';
import { CLUSTER_SECRET_FILE, TOKEN_FILE, loadOrCreateSecret } from './secret-file.js';
import { TaskManager } from './tasks/task-manager.js';
import { VmPowerTasks } from './tasks/vm-power-tasks.js';
import { VmService } from './vms/vm-service.js';

export interface VcenterServer {
  /** http://host:port */
  url: string;
  port: number;
  token: string;
  clusterSecret: string;
  close(): Promise<void>;
}

export async function startVcenter(opts: VcenterOptions, tuning: Partial<VcenterTuning> = {}): Promise<VcenterServer> {
  const logger = opts.logger;
  const cfg = resolveConfig(opts, tuning);
  logger.debug({ config: describeConfig(cfg) }, 'effective configuration');
  const pool = new IpPool(cfg.vmNetwork);
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const token = loadOrCreateSecret(cfg.dataDir, TOKEN_FILE, logger);
  const clusterSecret = cfg.clusterSecret ?? loadOrCreateSecret(cfg.dataDir, CLUSTER_SECRET_FILE, logger);

  let store: Store;
  try {
    store = new Store(cfg.dataDir);
  } catch (err) {
    throw toEsxError(err);
  }
  const registry = new Registry(store, logger, { tasks: cfg.tuning.taskRetention, events: cfg.tuning.eventRetention });
  const stats = new LiveStats();
  registry.observe(stats.observer);
  const tasks = new TaskManager(registry, logger.child({ component: 'tasks' }), { maxRunning: cfg.tuning.maxRunningTasks, maxActive: cfg.tuning.maxActiveTasks });

  let hostServer: HostServer | null = null;
  let stream: StreamHub | null = null;
  let app: FastifyInstance | null = null;
  try {
    // Recovery: nothing is connected to a process that just started.
    const stale = store.hosts().filter((h) => h.connectionState === 'connected');
    registry.commit(stale.map((h) => ({ kind: 'hostConnection' as const, hostId: h.id, state: 'disconnected' as const, lastSeenAt: h.lastSeenAt })));
    const interrupted = tasks.recoverInterrupted();
    const cluster = ensureCluster(registry, cfg.clusterName);

    const view = new InventoryView(store, stats);
    hostServer = new HostServer(registry, stats, {
      clusterSecret,
      defaultClusterId: cluster.id,
      heartbeatIntervalMs: cfg.heartbeatIntervalMs,
      hostTimeoutMs: cfg.hostTimeoutMs,
      statsIntervalMs: cfg.statsIntervalMs,
      helloTimeoutMs: cfg.tuning.helloTimeoutMs,
      requestTimeoutMs: cfg.tuning.hostRequestTimeoutMs,
      maxPendingRequests: cfg.tuning.maxPendingRequestsPerHost,
      logger,
    });
    stream = new StreamHub(registry, logger.child({ component: 'stream' }), {
      maxClients: cfg.tuning.maxStreamClients,
      maxBufferedBytes: cfg.tuning.streamMaxBufferedBytes,
    });
    app = await buildHttpServer({
      token,
      logger,
      store,
      view,
      vms: new VmService(registry, view, pool, tasks, hostServer, stats),
      power: new VmPowerTasks(registry, view, hostServer, tasks, logger.child({ component: 'power' })),
      hostServer,
      stream,
    });
    await app.listen({ host: cfg.listenHost, port: cfg.port });

    const port = (app.server.address() as AddressInfo).port;
    const url = `http://${urlHost(cfg.listenHost)}:${port}`;
    logger.info({ url, hostlink: `${url.replace(/^http/, 'ws')}${HOSTLINK_PATH}`, dataDir: cfg.dataDir }, `vcenter listening on ${url}`);
    const hostCount = store.hosts().length;
    const vmCount = store.vms().length;
    registry.event({
      type: 'VcenterStarted',
      message: `vcenter started at ${url} with ${hostCount} host(s) and ${vmCount} VM(s) in the inventory` + (interrupted ? `; ${interrupted} unfinished task(s) marked TASK_INTERRUPTED` : ''),
    });

    const running = { hostServer, stream, app };
    let closing: Promise<void> | null = null;
    return {
      url,
      port,
      token,
      clusterSecret,
      close: () => {
        closing ??= (async () => {
          logger.info('vcenter stopping');
          tasks.shutdown();
          running.hostServer.close();
          running.stream.close();
          try {
            await running.app.close();
          } finally {
            registry.close();
            store.close();
          }
          logger.info('vcenter stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    tasks.shutdown();
    hostServer?.close();
    stream?.close();
    await app?.close().catch(() => undefined);
    registry.close();
    store.close();
    throw toEsxError(err);
  }
}

/** The cluster new hosts join: opts.clusterName, created at first use. */
function ensureCluster(registry: Registry, name: string): ClusterRecord {
  const existing = registry.store.clusterByName(name);
  if (existing) return existing;
  const cluster: ClusterRecord = { id: randomUUID(), name, createdAt: Date.now() };
  registry.commit([{ kind: 'clusterCreated', cluster }]);
  return cluster;
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
