/**
 * The local cluster launcher behind `esxemu cluster up|down|status`: it starts the iSCSI target,
 * vcenter and N hosts as separate OS processes (execa, detached, logs to files), waits for each
 * ready file with a bound, records their pids in cluster.json, and stops them by pid.
 */
import { mkdirSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { EsxError, readReadyFile, sleep } from '@esxemu/shared';
import { formatDatastore } from '@esxemu/host';
import { DEFAULT_TARGET_NAME } from '@esxemu/iscsi';
import { clusterLayout, type ClusterLayout } from './layout.js';
import { isAlive, readClusterState, removeClusterState, writeClusterState, type ClusterState, type ProcessRecord } from './state.js';

/** The compiled CLI entry: every cluster process is `node main.js <role command> ...`. */
export const CLI_MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface ClusterUpOptions {
  home: string;
  hosts: number;
  /** 0 everywhere means ephemeral ports (tests, benchmarks). */
  vcenterPort: number;
  iscsiPort: number;
  /** First host's migration port; host i gets base + i (0 = ephemeral). */
  migrationPortBase: number;
  listenHost: string;
  hostMemoryMiB: number;
  hostCpuCores: number;
  hostCpuMhz: number;
  vmNetwork: string;
  heartbeatIntervalMs?: number;
  hostTimeoutMs?: number;
  statsIntervalMs?: number;
  logLevel: string;
  readyTimeoutMs: number;
  onProgress?: (msg: string) => void;
}


function hostName(i: number): string {
  return `esx${String(i + 1).padStart(2, '0')}`;
}

/** Start one cluster process detached, wait for its ready file, return its record. */
export async function launchProcess(args: {
  role: ProcessRecord['role'];
  name: string;
  argv: string[];
  dir: string;
  runDir: string;
  logLevel: string;
  env?: Record<string, string>;
  readyTimeoutMs: number;
}): Promise<ProcessRecord> {
  mkdirSync(args.dir, { recursive: true });
  mkdirSync(args.runDir, { recursive: true });
  const readyFile = join(args.runDir, `${args.role}-${args.name}.ready`);
  rmSync(readyFile, { force: true });
  const logFile = join(args.dir, `${args.role}.log`);
  const stderrFile = join(args.dir, `${args.role}.stderr`);
  const errFd = openSync(stderrFile, 'w');
  // node:child_process directly (not execa): a daemon must get its log file descriptors
  // straight from the kernel, with no pipe through this process, so it outlives the launcher.
  const child = spawn(process.execPath, [CLI_MAIN, ...args.argv, '--ready-file', readyFile, '--log-file', logFile, '--no-log-stdout', '--log-level', args.logLevel], {
    detached: true,
    stdio: ['ignore', 'ignore', errFd],
    env: { ...process.env, ...args.env },
  });
  closeSync(errFd);
  child.unref();
  let exited: string | null = null;
  child.on('exit', (code, signal) => {
    exited = `exit code ${code ?? signal}`;
  });
  child.on('error', (err) => {
    exited = err.message;
  });
  const deadline = Date.now() + args.readyTimeoutMs;
  for (;;) {
    const ready = readReadyFile(readyFile);
    if (ready) return { role: args.role, name: args.name, pid: ready.pid, urls: ready.urls, logFile };
    if (exited !== null) {
      const why = lastLines(stderrFile) || lastLines(logFile);
      throw new EsxError('INTERNAL', `${args.role} ${args.name} exited before it was ready (${exited})${why ? `:\n${why}` : ''}`);
    }
    if (Date.now() > deadline) {
      if (child.pid) killTree(child.pid, 'SIGKILL');
      throw new EsxError('TIMEOUT', `${args.role} ${args.name} was not ready within ${args.readyTimeoutMs} ms; see ${logFile}`);
    }
    await sleep(50);
  }
}

function lastLines(file: string, n = 5): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

function killTree(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

/** Does this pid still run one of our cluster processes (and not a reused pid)? */
export function isOurProcess(pid: number): boolean {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(CLI_MAIN);
  } catch {
    return true; // no /proc (not Linux): trust the pid
  }
}

export async function clusterUp(opts: ClusterUpOptions): Promise<ClusterState> {
  const layout = clusterLayout(opts.home);
  const existing = readClusterState(layout.stateFile);
  if (existing && existing.processes.some((p) => isOurProcess(p.pid))) {
    throw new EsxError('INVALID_STATE', `a cluster is already running from ${layout.home} (vcenter ${existing.vcenterUrl}); run 'esxemu cluster down' first`);
  }
  mkdirSync(layout.home, { recursive: true });
  const started: ProcessRecord[] = [];
  const say = opts.onProgress ?? (() => undefined);
  const common = { runDir: layout.runDir, logLevel: opts.logLevel, readyTimeoutMs: opts.readyTimeoutMs };
  const baseEnv: Record<string, string> = {};
  try {
    say('starting iscsi target');
    const iscsi = await launchProcess({ ...common, role: 'iscsi', name: 'iscsi', dir: layout.iscsiDir, argv: ['iscsi', 'serve', '--listen', opts.listenHost, '--port', String(opts.iscsiPort), '--data-dir', layout.iscsiDir], env: baseEnv });
    started.push(iscsi);
    const datastoreUrl = `iscsi://${iscsi.urls['iscsi']}/${DEFAULT_TARGET_NAME}/0`;
    say(`${(await formatDatastore(datastoreUrl)) === 'formatted' ? 'formatted' : 'found'} VMFS datastore1 on ${datastoreUrl}`);
    say('starting vcenter');
    const vcArgs = ['vcenter', 'serve', '--data-dir', layout.vcenterDir, '--listen', opts.listenHost, '--port', String(opts.vcenterPort), '--vm-network', opts.vmNetwork];
    if (opts.heartbeatIntervalMs) vcArgs.push('--heartbeat-interval', String(opts.heartbeatIntervalMs));
    if (opts.hostTimeoutMs) vcArgs.push('--host-timeout', String(opts.hostTimeoutMs));
    if (opts.statsIntervalMs) vcArgs.push('--stats-interval', String(opts.statsIntervalMs));
    const vc = await launchProcess({ ...common, role: 'vcenter', name: 'vcenter', dir: layout.vcenterDir, argv: vcArgs, env: baseEnv });
    started.push(vc);
    const vcenterUrl = vc.urls['api']!;
    say(`starting ${opts.hosts} hosts`);
    const hosts = await Promise.all(
      Array.from({ length: opts.hosts }, (_, i) =>
        launchProcess({
          ...common,
          role: 'host',
          name: hostName(i),
          dir: layout.hostDir(hostName(i)),
          argv: [...hostArgv(layout, opts, vcenterUrl, hostName(i), opts.migrationPortBase === 0 ? 0 : opts.migrationPortBase + i), '--datastore', datastoreUrl],
          env: baseEnv,
        }).then((r) => {
          started.push(r);
          return r;
        }),
      ),
    );
    const state: ClusterState = { version: 1, startedAt: Date.now(), vcenterUrl, processes: [...started.filter((p) => p.role !== 'host'), ...hosts] };
    writeClusterState(layout.stateFile, state);
    return state;
  } catch (err) {
    await stopProcesses(started);
    throw err;
  }
}

export function hostArgv(layout: ClusterLayout, opts: ClusterUpOptions, vcenterUrl: string, name: string, migrationPort: number): string[] {
  return [
    'host', 'run',
    '--name', name,
    '--vcenter', vcenterUrl,
    '--secret-file', layout.secretFile,
    '--cpu-cores', String(opts.hostCpuCores),
    '--cpu-mhz', String(opts.hostCpuMhz),
    '--memory', String(opts.hostMemoryMiB),
    '--migration-listen', opts.listenHost,
    '--migration-port', String(migrationPort),
    '--data-dir', layout.hostDir(name),
  ];
}

/** SIGTERM, wait (bounded), then SIGKILL whatever is left. Hosts first, then vcenter, then iscsi. */
export async function stopProcesses(procs: ProcessRecord[], graceMs = 10_000): Promise<ProcessRecord[]> {
  const order: ProcessRecord['role'][] = ['host', 'vcenter', 'iscsi'];
  const stopped: ProcessRecord[] = [];
  for (const role of order) {
    const group = procs.filter((p) => p.role === role && isOurProcess(p.pid));
    for (const p of group) killTree(p.pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (group.some((p) => isAlive(p.pid)) && Date.now() < deadline) await sleep(50);
    for (const p of group) {
      if (isAlive(p.pid)) killTree(p.pid, 'SIGKILL');
      stopped.push(p);
    }
  }
  return stopped;
}

export async function clusterDown(home: string): Promise<ProcessRecord[]> {
  const layout = clusterLayout(home);
  const state = readClusterState(layout.stateFile);
  if (!state) return [];
  const stopped = await stopProcesses(state.processes);
  removeClusterState(layout.stateFile);
  return stopped;
}
