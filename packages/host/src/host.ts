/**
 * One ESX host process: machine memory, the VMkernel and its VMs, the vmkernel log, the vMotion
 * listener and the link to vcenter. startHost resolves once the host listens, whether or not
 * vcenter is up (the link keeps retrying); close() powers off the VMs and closes everything.
 */
import { parseIscsiUrl } from '@esxemu/iscsi';
import { EsxError, ESXEMU_VERSION, NAME_RE, toEsxError, type Logger } from '@esxemu/shared';
import { DatastoreMount } from './datastore/mount.js';
import { VcenterLink } from './link/vcenter-link.js';
import { MigrationListener, formatHostPort } from './migration/listener.js';
import { MachineMemory, MAX_MACHINE_MEMORY_MIB } from './vmkernel/memory/machine-memory.js';
import { VmkernelLog } from './vmkernel/vmkernel-log.js';
import { Vmkernel } from './vmkernel/vmkernel.js';

export interface HostOptions {
  name: string;
  /** http://127.0.0.1:7080 or ws://...; the host connects to <url>/hostlink. */
  vcenterUrl: string;
  clusterSecret: string;
  /** Virtual cores. */
  cpuCores: number;
  /** MHz per core. */
  cpuMhz: number;
  /** Machine memory of the host. */
  memoryMiB: number;
  /** Where the vMotion listener binds. */
  migrationListenHost: string;
  /** 0 = ephemeral. */
  migrationPort: number;
  /** What others use to reach this host (default migrationListenHost). */
  advertiseHost?: string;
  /** host.log is written by the CLI; the host writes vmkernel.log here. */
  dataDir: string;
  logger: Logger;
  /** The shared datastore: iscsi://host:port/iqn/lun of its LUN (mounted in the background). */
  datastoreUrl?: string;
  /** VMFS locks and heartbeats with COMPARE AND WRITE (default) or SCSI reservations. */
  datastoreAts?: boolean;
}

export interface HostProcess {
  name: string;
  /** host:port of the vMotion listener (advertiseHost if given, else the address bound). */
  migrationAddress: string;
  /** Resolves if the host must stop for good (e.g. its cluster secret was rejected: BAD_SECRET). */
  fatal: Promise<EsxError>;
  /** Powers off its VMs, closes sockets. */
  close(): Promise<void>;
}

/** A started host, with its parts exposed for tests and benchmarks. */
export interface HostInternals extends HostProcess {
  vmkernel: Vmkernel;
  datastore: DatastoreMount | null;
  link: VcenterLink;
  vmkLog: VmkernelLog;
}

function checkOptions(o: HostOptions): void {
  const bad = (msg: string): never => {
    throw new EsxError('INVALID_ARGUMENT', msg);
  };
  if (!NAME_RE.test(o.name)) bad(`host name '${o.name}' is not valid: 1-63 letters, digits, dot, dash, underscore`);
  if (!(Number.isInteger(o.cpuCores) && o.cpuCores >= 1 && o.cpuCores <= 1024)) bad(`cpuCores must be an integer from 1 to 1024, got ${o.cpuCores}`);
  if (!(Number.isInteger(o.cpuMhz) && o.cpuMhz >= 1 && o.cpuMhz <= 100_000)) bad(`cpuMhz must be an integer from 1 to 100000, got ${o.cpuMhz}`);
  if (!(Number.isInteger(o.memoryMiB) && o.memoryMiB >= 1 && o.memoryMiB <= MAX_MACHINE_MEMORY_MIB)) {
    bad(`memoryMiB must be an integer from 1 to ${MAX_MACHINE_MEMORY_MIB}, got ${o.memoryMiB}`);
  }
  if (!(Number.isInteger(o.migrationPort) && o.migrationPort >= 0 && o.migrationPort <= 65535)) bad(`migrationPort must be from 0 to 65535, got ${o.migrationPort}`);
  if (!o.migrationListenHost) bad('migrationListenHost is required');
  if (typeof o.clusterSecret !== 'string' || o.clusterSecret.length === 0 || o.clusterSecret.length > 1024) bad('clusterSecret must be 1 to 1024 characters');
  if (!o.dataDir) bad('dataDir is required');
  if (o.datastoreUrl !== undefined) parseIscsiUrl(o.datastoreUrl);
}

export async function startHost(opts: HostOptions): Promise<HostProcess> {
  return startHostInternals(opts);
}

/** startHost, returning the host's parts too (tests, benchmarks). */
export async function startHostInternals(opts: HostOptions): Promise<HostInternals> {
  checkOptions(opts);
  const logger = opts.logger;
  const { logger: _l, clusterSecret: _s, ...shown } = opts;
  logger.debug({ config: { ...shown, clusterSecret: '<redacted>' } }, 'host configuration');

  const machine = MachineMemory.create(opts.memoryMiB);
  let vmkLog: VmkernelLog;
  try {
    vmkLog = new VmkernelLog(opts.dataDir, logger);
  } catch (err) {
    throw new EsxError('INVALID_ARGUMENT', `cannot write the vmkernel log in dataDir '${opts.dataDir}': ${(err as Error).message}`);
  }
  let listener: MigrationListener;
  try {
    listener = await MigrationListener.listen(opts.migrationListenHost, opts.migrationPort, logger);
  } catch (err) {
    vmkLog.log('Migrate', `cannot listen on ${formatHostPort(opts.migrationListenHost, opts.migrationPort)}: ${toEsxError(err).message}`);
    vmkLog.close();
    throw toEsxError(err);
  }
  const bound = listener.address;
  const migrationAddress = formatHostPort(opts.advertiseHost ?? bound.address, bound.port);

  const datastore = opts.datastoreUrl
    ? new DatastoreMount({ url: opts.datastoreUrl, hostName: opts.name, ats: opts.datastoreAts ?? true, logger: logger.child({ component: 'datastore' }) })
    : null;
  const vmkernel = new Vmkernel({ cpuCores: opts.cpuCores, cpuMhz: opts.cpuMhz, machine, logger, vmkLog, ...(datastore ? { attachStorage: (c) => datastore.attach(c) } : {}) });
  let resolveFatal!: (e: EsxError) => void;
  const fatal = new Promise<EsxError>((r) => (resolveFatal = r));
  let link: VcenterLink;
  try {
    link = new VcenterLink({
      vcenterUrl: opts.vcenterUrl,
      clusterSecret: opts.clusterSecret,
      identity: { name: opts.name, cpuCores: opts.cpuCores, cpuMhz: opts.cpuMhz, memoryMiB: opts.memoryMiB, migrationAddress, version: ESXEMU_VERSION },
      vmkernel,
      logger,
      vmkLog,
      datastore,
      onFatal: (e) => resolveFatal(e),
    });
  } catch (err) {
    await vmkernel.close();
    await listener.close();
    vmkLog.close();
    throw toEsxError(err);
  }
  link.start();
  datastore?.start();

  vmkLog.log('Init', `host ${opts.name}: ${opts.cpuCores} x ${opts.cpuMhz} MHz, ${opts.memoryMiB} MiB machine memory, vMotion listener on ${migrationAddress}`);
  logger.info({ migrationAddress, vcenter: opts.vcenterUrl }, `host ${opts.name} listening for migrations on ${migrationAddress}`);

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info(`host ${opts.name} shutting down`);
      await link.close();
      await vmkernel.close();
      await datastore?.close();
      await listener.close();
      vmkLog.log('Init', `host ${opts.name} stopped`);
      vmkLog.close();
    })();
    return closing;
  };
  return { name: opts.name, migrationAddress, fatal, close, vmkernel, datastore, link, vmkLog };
}
