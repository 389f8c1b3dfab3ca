/**
 * The options of the vcenter process (the exact shape the CLI passes) and the effective
 * configuration derived from them: defaults filled in, values checked once at start.
 */
import type { Logger } from '@esxemu/shared';
import { EsxError } from '@esxemu/shared';

export interface VcenterOptions {
  /** vcenter.db, token and cluster-secret live here (created if absent). */
  dataDir: string;
  /** e.g. 127.0.0.1 */
  listenHost: string;
  /** 0 = ephemeral */
  port: number;
  /** Else read <dataDir>/cluster-secret, created (0600) at first start. */
  clusterSecret?: string;
  /** Default 'cluster01'. */
  clusterName?: string;
  /** CIDR the VM IPs come from, default '127.77.0.0/16'. */
  vmNetwork?: string;
  /** Told to hosts in welcome, default 1000. */
  heartbeatIntervalMs?: number;
  /** A host silent this long is disconnected, default 5000. */
  hostTimeoutMs?: number;
  /** Told to hosts in welcome, default 2000. */
  statsIntervalMs?: number;
  logger: Logger;
}

/**
 * Internal knobs with safe defaults. Not part of the CLI contract; tests shorten them to stay
 * fast and bounded.
 */
export interface VcenterTuning {
  /** A host link must send hello within this bound or be closed. */
  helloTimeoutMs: number;
  /** Bound on each request sent to a host (power on/off, reset). */
  hostRequestTimeoutMs: number;
  /** Requests in flight per host link. */
  maxPendingRequestsPerHost: number;
  /** A stream client whose unsent data exceeds this is dropped. */
  streamMaxBufferedBytes: number;
  /** Stream clients connected at once. */
  maxStreamClients: number;
  /** Tasks running at once (others wait, queued). */
  maxRunningTasks: number;
  /** Tasks queued or running at once; beyond this, new tasks are refused. */
  maxActiveTasks: number;
  /** Finished tasks kept in the database. */
  taskRetention: number;
  /** Events kept in the database. */
  eventRetention: number;
}

export const DEFAULT_TUNING: VcenterTuning = {
  helloTimeoutMs: 5000,
  hostRequestTimeoutMs: 30_000,
  maxPendingRequestsPerHost: 256,
  streamMaxBufferedBytes: 1024 * 1024,
  maxStreamClients: 64,
  maxRunningTasks: 16,
  maxActiveTasks: 1024,
  taskRetention: 10_000,
  eventRetention: 100_000,
};

export interface VcenterConfig {
  dataDir: string;
  listenHost: string;
  port: number;
  /** Null when it comes from (or goes to) <dataDir>/cluster-secret. */
  clusterSecret: string | null;
  clusterName: string;
  vmNetwork: string;
  heartbeatIntervalMs: number;
  hostTimeoutMs: number;
  statsIntervalMs: number;
  tuning: VcenterTuning;
}

export function resolveConfig(opts: VcenterOptions, tuning: Partial<VcenterTuning> = {}): VcenterConfig {
  const cfg: VcenterConfig = {
    dataDir: opts.dataDir,
    listenHost: opts.listenHost,
    port: opts.port,
    clusterSecret: opts.clusterSecret ?? null,
    clusterName: opts.clusterName ?? 'cluster01',
    vmNetwork: opts.vmNetwork ?? '127.77.0.0/16',
    heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 1000,
    hostTimeoutMs: opts.hostTimeoutMs ?? 5000,
    statsIntervalMs: opts.statsIntervalMs ?? 2000,
    tuning: { ...DEFAULT_TUNING, ...tuning },
  };
  if (typeof cfg.dataDir !== 'string' || cfg.dataDir.length === 0) throw new EsxError('INVALID_ARGUMENT', 'dataDir is required');
  if (!Number.isInteger(cfg.port) || cfg.port < 0 || cfg.port > 65535) throw new EsxError('INVALID_ARGUMENT', `port must be 0-65535, got ${cfg.port}`);
  if (cfg.clusterSecret !== null && cfg.clusterSecret.length === 0) throw new EsxError('INVALID_ARGUMENT', 'clusterSecret must not be empty');
  positiveInt('heartbeatIntervalMs', cfg.heartbeatIntervalMs);
  positiveInt('hostTimeoutMs', cfg.hostTimeoutMs);
  positiveInt('statsIntervalMs', cfg.statsIntervalMs);
  if (cfg.hostTimeoutMs <= cfg.heartbeatIntervalMs) {
    throw new EsxError('INVALID_ARGUMENT', `hostTimeoutMs (${cfg.hostTimeoutMs}) must be longer than heartbeatIntervalMs (${cfg.heartbeatIntervalMs})`);
  }
  for (const [k, v] of Object.entries(cfg.tuning)) positiveInt(k, v);
  return cfg;
}

function positiveInt(what: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new EsxError('INVALID_ARGUMENT', `${what} must be a positive integer, got ${v}`);
}

/** The effective configuration as logged at start (no secrets). */
export function describeConfig(cfg: VcenterConfig): Record<string, unknown> {
  const { clusterSecret, ...rest } = cfg;
  return { ...rest, clusterSecret: clusterSecret === null ? '<dataDir>/cluster-secret' : '<given>' };
}
