/**
 * The iSCSI target process: a TCP listener (the portal), the targets of the configuration with
 * their SCSI devices, and one Connection per initiator connection (session/connection.ts).
 *
 *   startIscsiTarget(opts) -> { address, port, close() }
 *
 * close(): stop accepting, ask every logged-in initiator to log out (Async Message, event 1),
 * wait a bounded time, drop whatever connection is left (their sessions end, their tasks are
 * aborted), then close the backstores (flushing them).
 */
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import { EsxError, toEsxError, type Logger } from '@esxemu/shared';
import { ASYNC, F } from '../transport/fields.js';
import { OP } from '../transport/opcodes.js';
import { Pdu, RESERVED_TAG } from '../transport/pdu.js';
import { Connection } from '../session/connection.js';
import { formatPortal } from '../session/discovery.js';
import { withStatus } from '../session/outbound.js';
import { SessionRegistry } from '../session/session-registry.js';
import { staticDirectory, type TargetNode } from '../session/target-node.js';
import { buildTargetDevice, type BuiltDevice, type DeviceFactory } from './build-device.js';
import { defaultTargetConfig, type TargetConfig } from './config.js';

export const ISCSI_DEFAULT_PORT = 3260;

export interface IscsiTargetOptions {
  listenHost: string;
  /** 0 = an ephemeral port. */
  port: number;
  logger: Logger;
  /** The targets to serve; default: `defaultTargetConfig(dataDir)`. */
  config?: TargetConfig;
  /** Where default LUN files live; without it the default LUN is in memory. */
  dataDir?: string;
  /**
   * The address initiators use to reach this target (`--advertise`): SendTargets announces
   * `<advertiseHost>:<port>` for targets without configured portals. Default: the address each
   * initiator connected to.
   */
  advertiseHost?: string;
  /** How long close() waits for initiators to log out (default 1000 ms). */
  closeGraceMs?: number;
  /** Builds each target's SCSI device (tests inject their own). */
  deviceFactory?: DeviceFactory;
}

export interface IscsiSessionInfo {
  tsih: number;
  initiatorName: string;
  isid: string;
  target: string | null;
  tasks: number;
}

export interface IscsiTarget {
  address: string;
  port: number;
  /** Names of the targets served. */
  targets: string[];
  sessions(): IscsiSessionInfo[];
  close(): Promise<void>;
}

export async function startIscsiTarget(opts: IscsiTargetOptions): Promise<IscsiTarget> {
  const log = opts.logger;
  if (opts.dataDir) await mkdir(opts.dataDir, { recursive: true });
  const config = opts.config ?? defaultTargetConfig(opts.dataDir);
  log.debug({ config: redact(config) }, 'effective target configuration');
  const factory = opts.deviceFactory ?? buildTargetDevice;

  const built: BuiltDevice[] = [];
  const nodes: TargetNode[] = [];
  /** Filled once the port is known (it may be ephemeral). */
  const advertised: string[] = [];
  try {
    for (const def of config.targets) {
      const b = await factory(def, log);
      built.push(b);
      const acl = def.acl === 'all' ? null : new Set(def.acl.map((n) => n.toLowerCase()));
      nodes.push({
        name: def.name,
        ...(def.alias !== undefined ? { alias: def.alias } : {}),
        tpgt: def.tpgt,
        portals: def.portals.length ? def.portals : advertised,
        device: b.device,
        allows: (initiator) => acl === null || acl.has(initiator.toLowerCase()),
        ...(def.chap ? { chap: def.chap } : {}),
      });
    }
  } catch (err) {
    await Promise.allSettled(built.map((b) => b.close()));
    throw toEsxError(err);
  }

  const directory = staticDirectory(nodes, config.discoveryChap);
  const registry = new SessionRegistry(config.limits.maxSessions);
  const connections = new Set<Connection>();
  const maxConnections = config.limits.maxSessions + 16;
  let closing = false;

  const server = net.createServer((socket) => {
    if (closing || connections.size >= maxConnections) {
      log.warn({ peer: `${socket.remoteAddress}:${socket.remotePort}`, connections: connections.size }, closing ? 'connection refused: target closing' : 'connection refused: too many connections');
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, {
      directory,
      registry,
      settings: config.keys,
      limits: config.limits,
      log,
      onClosed: (c) => connections.delete(c),
    });
    connections.add(conn);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.listenHost, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await Promise.allSettled(built.map((b) => b.close()));
    throw toEsxError(err);
  }
  server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new EsxError('INTERNAL', 'listener has no TCP address');
  const address = addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
  if (opts.advertiseHost) advertised.push(formatPortal(opts.advertiseHost, addr.port));
  log.info({ address, targets: nodes.map((n) => n.name) }, 'iSCSI target listening');

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      const serverClosed = new Promise<void>((r) => server.close(() => r()));
      const loggedIn = [...connections].filter((c) => c.state === 'fullFeature');
      for (const c of loggedIn) void c.send([asyncLogoutRequest()]);
      const graceMs = opts.closeGraceMs ?? 1000;
      const deadline = Date.now() + graceMs;
      while (connections.size > 0 && [...connections].some((c) => c.state === 'fullFeature' || c.state === 'loggingOut') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const c of [...connections]) c.close('target shutting down');
      for (const s of registry.all()) s.close('target shutting down');
      await serverClosed;
      const results = await Promise.allSettled(built.map((b) => b.close()));
      for (const r of results) if (r.status === 'rejected') log.error({ err: toEsxError(r.reason).message }, 'closing a backstore failed');
      log.info('iSCSI target closed');
    })();
    return closed;
  };

  return {
    address,
    port: addr.port,
    targets: nodes.map((n) => n.name),
    sessions: () => registry.all().map((s) => ({ tsih: s.tsih, initiatorName: s.initiatorName, isid: s.isidHex, target: s.target?.name ?? null, tasks: s.tasks.size })),
    close,
  };
}

/** Async Message, event 1: the target asks the initiator to log out now (Parameter3 = 0 s). */
function asyncLogoutRequest() {
  const pdu = Pdu.create(OP.ASYNC_MESSAGE);
  pdu.flags = 0x80;
  pdu.itt = RESERVED_TAG;
  pdu.setU32(F.TTT, RESERVED_TAG);
  pdu.setU8(ASYNC.EVENT, ASYNC.LOGOUT_REQUEST);
  pdu.setU16(ASYNC.PARAM3, 0);
  return withStatus(pdu);
}

function redact(c: TargetConfig): unknown {
  const hide = <T extends { secret: string; mutualSecret?: string }>(x: T | undefined) => (x ? { ...x, secret: '***', ...(x.mutualSecret !== undefined ? { mutualSecret: '***' } : {}) } : undefined);
  return { ...c, discoveryChap: hide(c.discoveryChap), targets: c.targets.map((t) => ({ ...t, chap: hide(t.chap) })) };
}
