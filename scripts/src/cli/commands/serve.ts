/**
 * The processes themselves: `esxemu vcenter serve`, `esxemu host run`, `esxemu iscsi serve`.
 * Each runs in the foreground until SIGINT/SIGTERM, logs to stdout (pretty on a terminal) and
 * to --log-file, and writes --ready-file once it listens. The listen and advertised addresses
 * are flags, so one cluster can span several machines of a LAN.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { startHost } from '@esxemu/host';
import { configFromFlags, DEFAULT_LUN_SIZE_MIB, FILE_IO_MODES, DEFAULT_TARGET_NAME, ISCSI_DEFAULT_PORT, loadTargetConfig, startIscsiTarget } from '@esxemu/iscsi';
import { createLogger, EsxError, toEsxError, writeReadyFile, type Logger } from '@esxemu/shared';
import { startVcenter } from '@esxemu/vcenter';
import { defaultHome } from '../../cluster/layout.js';
import { envOr, intArg, logLevelArg, portArg, sizeMiBArg } from '../options.js';

export const VCENTER_DEFAULT_PORT = 7080;
export const MIGRATION_DEFAULT_PORT = 8000;

interface CommonServeOpts {
  logFile?: string;
  logLevel?: string;
  readyFile?: string;
  logStdout: boolean;
}

function addCommon(cmd: Command): Command {
  return cmd
    .option('--log-file <path>', 'JSON log file of this process')
    .option('--log-level <level>', 'trace, debug, info, warn, error (env ESXEMU_LOG_LEVEL)', logLevelArg)
    .option('--ready-file <path>', 'write {pid, urls} as JSON here once listening')
    .option('--no-log-stdout', 'log only to --log-file');
}

/** Run until a signal, then close; exit non-zero on a startup error with its code. */
async function runServer(log: Logger, what: string, start: () => Promise<{ close(): Promise<void>; fatal?: Promise<EsxError> }>): Promise<void> {
  let server: { close(): Promise<void>; fatal?: Promise<EsxError> };
  try {
    server = await start();
  } catch (err) {
    const e = toEsxError(err);
    log.fatal({ code: e.code }, `${what} failed to start: ${e.message}`);
    process.stderr.write(`esxemu: ${what}: ${e.code}: ${e.message}\n`);
    process.exit(1);
  }
  let closing = false;
  const stop = async (code: number, why: string) => {
    if (closing) return;
    closing = true;
    log.info(`${what} stopping (${why})`);
    const force = setTimeout(() => process.exit(code || 1), 15_000);
    force.unref();
    try {
      await server.close();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'error while closing');
    }
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0, 'SIGINT'));
  process.on('SIGTERM', () => void stop(0, 'SIGTERM'));
  server.fatal?.then((e) => {
    log.fatal({ code: e.code }, `${what} must stop: ${e.message}`);
    process.stderr.write(`esxemu: ${what}: ${e.code}: ${e.message}\n`);
    void stop(2, e.code);
  });
}

export function registerServeCommands(program: Command): void {
  const vcenter = program.command('vcenter').description('the vcenter management server process');
  addCommon(
    vcenter
      .command('serve')
      .description('run vcenter in the foreground: inventory, tasks, host link, client API')
      .option('--data-dir <dir>', 'vcenter.db, token and cluster-secret live here', join(defaultHome(), 'vcenter'))
      .option('--listen <addr>', 'address to listen on (env ESXEMU_VCENTER_LISTEN)', envOr('ESXEMU_VCENTER_LISTEN', '127.0.0.1'))
      .option('--advertise <addr>', 'address hosts and clients use to reach vcenter (default: --listen)')
      .option('--port <port>', 'HTTP/WebSocket port, 0 for any free one', portArg(), VCENTER_DEFAULT_PORT)
      .option('--cluster-name <name>', 'name of the default cluster', 'cluster01')
      .option('--vm-network <cidr>', 'the VM IP addresses come from here', '127.77.0.0/16')
      .option('--heartbeat-interval <ms>', 'host heartbeat interval told to hosts', intArg('heartbeat interval', 50, 60_000), 1000)
      .option('--host-timeout <ms>', 'a host silent this long is disconnected', intArg('host timeout', 200, 600_000), 5000)
      .option('--stats-interval <ms>', 'host stats interval told to hosts', intArg('stats interval', 100, 600_000), 2000),
  ).action(async (o: CommonServeOpts & { dataDir: string; listen: string; advertise?: string; port: number; clusterName: string; vmNetwork: string; heartbeatInterval: number; hostTimeout: number; statsInterval: number }) => {
    const log = createLogger({ name: 'vcenter', level: o.logLevel, file: o.logFile, stdout: o.logStdout });
    log.debug({ config: o }, 'effective configuration');
    await runServer(log, 'vcenter', async () => {
      const s = await startVcenter({
        dataDir: o.dataDir,
        listenHost: o.listen,
        port: o.port,
        clusterName: o.clusterName,
        vmNetwork: o.vmNetwork,
        heartbeatIntervalMs: o.heartbeatInterval,
        hostTimeoutMs: o.hostTimeout,
        statsIntervalMs: o.statsInterval,
        ...(process.env['ESXEMU_CLUSTER_SECRET'] ? { clusterSecret: process.env['ESXEMU_CLUSTER_SECRET'] } : {}),
        logger: log,
      });
      const url = o.advertise ? `http://${o.advertise}:${s.port}` : s.url;
      if (o.advertise) log.info({ url }, 'advertised URL');
      if (o.readyFile) writeReadyFile(o.readyFile, { pid: process.pid, role: 'vcenter', name: 'vcenter', urls: { api: url } });
      return s;
    });
  });

  const host = program.command('host').description('ESX hosts: run one, or list them');
  addCommon(
    host
      .command('run')
      .description('run an ESX host in the foreground: VMkernel + one worker per VM; registers with the vcenter given by the global --vcenter <url> (or ESXEMU_VCENTER)')
      .option('--name <name>', 'host name', hostname().split('.')[0] || 'esx01')
      .option('--secret-file <path>', 'file holding the cluster secret (else env ESXEMU_CLUSTER_SECRET)')
      .option('--cpu-cores <n>', 'virtual CPU cores', intArg('cpu cores', 1, 1024), 4)
      .option('--cpu-mhz <mhz>', 'MHz per core', intArg('cpu MHz', 1, 100_000), 2000)
      .option('--memory <size>', 'machine memory, e.g. 2048 or 2GiB', sizeMiBArg('memory'), 2048)
      .option('--migration-listen <addr>', 'address the vMotion listener binds', '127.0.0.1')
      .option('--migration-port <port>', 'vMotion port, 0 for any free one', portArg('migration port'), MIGRATION_DEFAULT_PORT)
      .option('--advertise <addr>', 'address other hosts use to reach this one (default: --migration-listen)')
      .option('--data-dir <dir>', 'vmkernel.log lives here')
      .option('--datastore <iscsi-url>', 'mount the shared VMFS datastore on this LUN, e.g. iscsi://127.0.0.1:3260/iqn.2026-11.io.esxemu:datastore1/0')
      .option('--no-ats', 'VMFS locks with SCSI RESERVE/RELEASE instead of COMPARE AND WRITE'),
  ).action(async (o: CommonServeOpts & { name: string; secretFile?: string; cpuCores: number; cpuMhz: number; memory: number; migrationListen: string; migrationPort: number; advertise?: string; dataDir?: string; datastore?: string; ats: boolean }, cmd: Command) => {
    const vcenterUrl = (cmd.optsWithGlobals() as { vcenter?: string }).vcenter ?? process.env['ESXEMU_VCENTER'];
    if (!vcenterUrl) throw new EsxError('INVALID_ARGUMENT', 'host run needs --vcenter <url> (or ESXEMU_VCENTER), e.g. --vcenter http://127.0.0.1:7080');
    const log = createLogger({ name: `host ${o.name}`, level: o.logLevel, file: o.logFile, stdout: o.logStdout });
    log.debug({ config: { ...o, vcenterUrl } }, 'effective configuration');
    await runServer(log, `host ${o.name}`, async () => {
      const secret = readSecret(o.secretFile);
      const h = await startHost({
        name: o.name,
        vcenterUrl,
        clusterSecret: secret,
        cpuCores: o.cpuCores,
        cpuMhz: o.cpuMhz,
        memoryMiB: o.memory,
        migrationListenHost: o.migrationListen,
        migrationPort: o.migrationPort,
        ...(o.advertise ? { advertiseHost: o.advertise } : {}),
        dataDir: o.dataDir ?? join(defaultHome(), 'hosts', o.name),
        ...(o.datastore ? { datastoreUrl: o.datastore, datastoreAts: o.ats } : {}),
        logger: log,
      });
      if (o.readyFile) writeReadyFile(o.readyFile, { pid: process.pid, role: 'host', name: o.name, urls: { migration: h.migrationAddress } });
      return h;
    });
  });

  const iscsi = program.command('iscsi').description('the iSCSI target process (the shared SAN)');
  addCommon(
    iscsi
      .command('serve')
      .description('run the iSCSI target in the foreground (default: one target with LUN 0, a sparse file in --data-dir)')
      .option('--listen <addr>', 'address to listen on', '127.0.0.1')
      .option('--advertise <addr>', 'address initiators use to reach the target (default: --listen)')
      .option('--port <port>', 'iSCSI port, 0 for any free one', portArg(), ISCSI_DEFAULT_PORT)
      .option('--data-dir <dir>', 'LUN backing files live here (without it the LUN is in memory)')
      .option('--config <file>', 'JSON file with targets, LUNs, ACLs and CHAP (overrides the flags below)')
      .option('--target-name <iqn>', `name of the default target (default ${DEFAULT_TARGET_NAME})`)
      .option('--lun-size <size>', `size of LUN 0, e.g. 1024 or 1GiB (default ${DEFAULT_LUN_SIZE_MIB} MiB)`)
      .addOption(new Option('--lun-io <mode>', 'how LUN 0\'s file is read and written: sync on the event loop while it answers from the page cache, else the thread pool (auto), always sync, or always the thread pool').choices(FILE_IO_MODES).default('auto'))
      .option('--memory-lun', 'keep LUN 0 in memory even with --data-dir')
      .option('--no-ats', 'LUN 0 does not offer COMPARE AND WRITE: hosts lock the datastore with SCSI reservations')
      .option('--acl <initiators...>', 'initiator names allowed to log in (default: all)')
      .option('--chap-user <name>', 'require CHAP with this user name (secret in env ESXEMU_ISCSI_CHAP_SECRET)')
      .option('--mutual-user <name>', 'mutual CHAP: the target answers as this user (secret in env ESXEMU_ISCSI_MUTUAL_SECRET)'),
  ).action(async (o: CommonServeOpts & { listen: string; advertise?: string; port: number; dataDir?: string; config?: string; targetName?: string; lunSize?: string; lunIo?: string; ats: boolean; memoryLun?: boolean; acl?: string[]; chapUser?: string; mutualUser?: string }) => {
    const log = createLogger({ name: 'iscsi', level: o.logLevel, file: o.logFile, stdout: o.logStdout });
    log.debug({ config: o }, 'effective configuration');
    await runServer(log, 'iscsi target', async () => {
      const config = o.config
        ? loadTargetConfig(o.config, o.dataDir ? { dataDir: o.dataDir } : {})
        : configFromFlags({
            ...(o.dataDir ? { dataDir: o.dataDir } : {}),
            ...(o.targetName ? { targetName: o.targetName } : {}),
            ...(o.lunSize ? { lunSize: o.lunSize } : {}),
            ...(o.lunIo ? { lunIo: o.lunIo } : {}),
            ...(o.ats === false ? { ats: false } : {}),
            ...(o.memoryLun ? { memory: true } : {}),
            ...(o.acl ? { acl: o.acl } : {}),
            ...(o.chapUser ? { chapUser: o.chapUser, chapSecret: requiredEnv('ESXEMU_ISCSI_CHAP_SECRET', '--chap-user') } : {}),
            ...(o.mutualUser ? { mutualUser: o.mutualUser, mutualSecret: requiredEnv('ESXEMU_ISCSI_MUTUAL_SECRET', '--mutual-user') } : {}),
          });
      const t = await startIscsiTarget({ listenHost: o.listen, port: o.port, logger: log, config, ...(o.dataDir ? { dataDir: o.dataDir } : {}), ...(o.advertise ? { advertiseHost: o.advertise } : {}) });
      if (o.readyFile) writeReadyFile(o.readyFile, { pid: process.pid, role: 'iscsi', name: 'iscsi', urls: { iscsi: o.advertise ? `${o.advertise}:${t.port}` : t.address } });
      return t;
    });
  });
}

function requiredEnv(name: string, flag: string): string {
  const v = process.env[name];
  if (!v) throw new EsxError('INVALID_ARGUMENT', `${flag} needs the secret in the environment variable ${name} (secrets are not taken as flags: they would show in ps)`);
  return v;
}

function readSecret(file: string | undefined): string {
  if (file) {
    try {
      const s = readFileSync(file, 'utf8').trim();
      if (s) return s;
    } catch (err) {
      throw new EsxError('INVALID_ARGUMENT', `cannot read the cluster secret file ${file}: ${(err as Error).message}`);
    }
    throw new EsxError('INVALID_ARGUMENT', `cluster secret file ${file} is empty`);
  }
  const env = process.env['ESXEMU_CLUSTER_SECRET'];
  if (env) return env;
  throw new EsxError('INVALID_ARGUMENT', 'no cluster secret: pass --secret-file (vcenter writes <data-dir>/cluster-secret) or set ESXEMU_CLUSTER_SECRET');
}
