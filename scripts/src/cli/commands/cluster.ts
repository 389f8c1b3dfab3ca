/** `esxemu cluster up|down|status`: a local cluster of real processes. */
import { Command } from 'commander';
import { EsxError } from '@esxemu/shared';
import { ApiClient } from '../../client/api-client.js';
import { clusterLayout } from '../../cluster/layout.js';
import { clusterDown, clusterUp, isOurProcess } from '../../cluster/launcher.js';
import { readClusterState } from '../../cluster/state.js';
import { globals, homeOf } from '../context.js';
import { intArg, logLevelArg, portArg, sizeMiBArg } from '../options.js';
import { printJson, printTable } from '../output.js';
import { MIGRATION_DEFAULT_PORT, VCENTER_DEFAULT_PORT } from './serve.js';
import { readFileSync } from 'node:fs';

interface UpOpts {
  hosts: number;
  hostMemory: number;
  hostCpuCores: number;
  hostCpuMhz: number;
  vcenterPort: number;
  iscsiPort: number;
  migrationPort: number;
  ephemeralPorts?: boolean;
  listen: string;
  vmNetwork: string;
  logLevel: string;
  heartbeatInterval: number;
  hostTimeout: number;
  statsInterval: number;
  foreground?: boolean;
}

export function registerClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('a local cluster: iscsi target + vcenter + N hosts, each its own process');

  cluster
    .command('up')
    .description('start a local cluster in the background (or --foreground: until Ctrl-C)')
    .option('--hosts <n>', 'number of ESX hosts', intArg('hosts', 1, 64), 3)
    .option('--host-memory <size>', 'machine memory per host', sizeMiBArg('host memory'), 2048)
    .option('--host-cpu-cores <n>', 'virtual cores per host', intArg('cpu cores', 1, 1024), 4)
    .option('--host-cpu-mhz <mhz>', 'MHz per core', intArg('cpu MHz', 1, 100_000), 2000)
    .option('--vcenter-port <port>', 'vcenter HTTP/WebSocket port', portArg(), VCENTER_DEFAULT_PORT)
    .option('--iscsi-port <port>', 'iSCSI target port', portArg(), 3260)
    .option('--migration-port <port>', 'first host vMotion port (host i gets port+i)', portArg(), MIGRATION_DEFAULT_PORT)
    .option('--ephemeral-ports', 'let every process pick a free port (for tests and benchmarks)')
    .option('--listen <addr>', 'address every process binds', '127.0.0.1')
    .option('--vm-network <cidr>', 'VM IP addresses come from here', '127.77.0.0/16')
    .option('--log-level <level>', 'log level of the processes', logLevelArg, 'info')
    .option('--heartbeat-interval <ms>', 'host heartbeat interval', intArg('heartbeat interval', 50, 60_000), 1000)
    .option('--host-timeout <ms>', 'a host silent this long is disconnected', intArg('host timeout', 200, 600_000), 5000)
    .option('--stats-interval <ms>', 'host stats interval', intArg('stats interval', 100, 600_000), 2000)
    .option('--foreground', 'stay attached, print events, stop the cluster on Ctrl-C')
    .action(async (o: UpOpts, cmd: Command) => {
      const g = globals(cmd);
      const home = homeOf(g);
      const t0 = performance.now();
      const state = await clusterUp({
        home,
        hosts: o.hosts,
        vcenterPort: o.ephemeralPorts ? 0 : o.vcenterPort,
        iscsiPort: o.ephemeralPorts ? 0 : o.iscsiPort,
        migrationPortBase: o.ephemeralPorts ? 0 : o.migrationPort,
        listenHost: o.listen,
        hostMemoryMiB: o.hostMemory,
        hostCpuCores: o.hostCpuCores,
        hostCpuMhz: o.hostCpuMhz,
        vmNetwork: o.vmNetwork,
        logLevel: o.logLevel,
        heartbeatIntervalMs: o.heartbeatInterval,
        hostTimeoutMs: o.hostTimeout,
        statsIntervalMs: o.statsInterval,
        readyTimeoutMs: 30_000,
        onProgress: (m) => !g.json && process.stderr.write(`${m}...\n`),
      });
      const layout = clusterLayout(home);
      const token = readFileSync(layout.tokenFile, 'utf8').trim();
      const client = new ApiClient({ url: state.vcenterUrl, token });
      // The hosts are up; wait (bounded) until vcenter has seen them all register.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const hosts = await client.hosts();
        if (hosts.filter((h) => h.connectionState === 'connected').length >= o.hosts) break;
        if (Date.now() > deadline) throw new EsxError('TIMEOUT', `only ${hosts.length} of ${o.hosts} hosts registered within 20 s; see the logs in ${layout.home}/hosts`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const ms = Math.round(performance.now() - t0);
      if (g.json) printJson({ ...state, token, coldStartMs: ms });
      else {
        printTable(['ROLE', 'NAME', 'PID', 'ADDRESS', 'LOG'], state.processes.map((p) => [p.role, p.name, p.pid, Object.values(p.urls).join(' '), p.logFile]));
        process.stdout.write(`cluster up in ${ms} ms: vcenter ${state.vcenterUrl}, token in ${layout.tokenFile}\n`);
      }
      if (!o.foreground) {
        if (!g.json) process.stdout.write(`next: 'npx esxemu host ls', 'npx esxemu vm create web1 --workload webserver', 'npx esxemu cluster down'\n`);
        return;
      }
      process.stdout.write('following events; Ctrl-C stops the cluster\n');
      const close = client.stream((m) => {
        if (m.kind === 'event') process.stdout.write(`${new Date(m.event.time).toISOString().slice(11, 23)} ${m.event.severity.padEnd(7)} ${m.event.type.padEnd(18)} ${m.event.message}\n`);
      });
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      close();
      process.stdout.write('\nstopping the cluster...\n');
      const stopped = await clusterDown(home);
      process.stdout.write(`stopped ${stopped.length} processes\n`);
    });

  cluster
    .command('down')
    .description('stop the local cluster: hosts, then vcenter, then the iscsi target (SIGTERM, then SIGKILL after 10 s)')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const stopped = await clusterDown(homeOf(g));
      if (g.json) return printJson({ stopped });
      process.stdout.write(stopped.length ? `stopped ${stopped.map((p) => `${p.role} ${p.name} (${p.pid})`).join(', ')}\n` : 'no local cluster was running\n');
    });

  cluster
    .command('status')
    .description('the local cluster processes and whether they run')
    .action(async (_o, cmd: Command) => {
      const g = globals(cmd);
      const layout = clusterLayout(homeOf(g));
      const state = readClusterState(layout.stateFile);
      if (!state) {
        if (g.json) return printJson({ running: false });
        process.stdout.write(`no local cluster in ${layout.home}\n`);
        return;
      }
      const procs = state.processes.map((p) => ({ ...p, alive: isOurProcess(p.pid) }));
      if (g.json) return printJson({ running: procs.some((p) => p.alive), vcenterUrl: state.vcenterUrl, processes: procs });
      printTable(['ROLE', 'NAME', 'PID', 'STATE', 'ADDRESS'], procs.map((p) => [p.role, p.name, p.pid, p.alive ? 'running' : 'dead', Object.values(p.urls).join(' ')]));
    });
}
