/**
 * Helpers for the integration tests: run the real `esxemu` CLI (compiled) as a subprocess,
 * against a cluster home in a temporary directory, and clean up every process by pid.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

export const CLI = fileURLToPath(new URL('../../../scripts/dist/src/cli/main.js', import.meta.url));

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class Sandbox {
  readonly home: string;
  /** pids started outside `cluster up` (restarted vcenter, extra hosts) that teardown kills. */
  readonly extraPids = new Set<number>();

  constructor(prefix = 'esxemu-it-') {
    this.home = mkdtempSync(join(tmpdir(), prefix));
  }

  async cli(args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<CliResult> {
    const r = await execa(process.execPath, [CLI, '--home', this.home, ...args], {
      reject: false,
      timeout: opts.timeoutMs ?? 60_000,
      env: { ESXEMU_HOME: this.home, ...opts.env },
      stdin: 'ignore',
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** Run the CLI with --json and parse stdout; fail loudly on a non-zero exit. */
  async json<T>(args: string[], opts: { timeoutMs?: number } = {}): Promise<T> {
    const r = await this.cli(['--json', ...args], opts);
    if (r.exitCode !== 0) throw new Error(`esxemu ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Start a long-running esxemu process (not detached); teardown kills it by pid. */
  spawn(args: string[], env: Record<string, string> = {}): ResultPromise {
    const child = execa(process.execPath, [CLI, ...args], { reject: false, env, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', forceKillAfterDelay: 5000 });
    if (child.pid) this.extraPids.add(child.pid);
    return child;
  }

  clusterState(): { vcenterUrl: string; processes: { role: string; name: string; pid: number; urls: Record<string, string> }[] } {
    return JSON.parse(readFileSync(join(this.home, 'cluster.json'), 'utf8'));
  }

  token(): string {
    return readFileSync(join(this.home, 'vcenter', 'token'), 'utf8').trim();
  }

  /** Kill everything this sandbox started, by pid, then remove the home directory. */
  async cleanup(): Promise<void> {
    const pids = new Set(this.extraPids);
    try {
      for (const p of this.clusterState().processes) pids.add(p.pid);
    } catch {
      /* no cluster.json */
    }
    await this.cli(['cluster', 'down'], { timeoutMs: 30_000 }).catch(() => undefined);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(this.home, { recursive: true, force: true });
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs: number, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** A 127.x address unlikely to collide with anything else on the machine. */
export function uniqueVmNetwork(): string {
  const b = 100 + (process.pid % 100);
  return `127.${b}.0.0/16`;
}
