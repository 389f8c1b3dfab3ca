/**
 * Fixtures of the VMFS integration tests: an esxemu iSCSI target with a memory LUN on
 * loopback, initiators with their own sessions (one per host), and host child processes
 * (vmfs-host-child.ts) that report JSON lines on stdout. Every wait is bounded; every child is
 * killed by PID at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { configFromFlags, IscsiInitiator, startIscsiTarget, type IscsiTarget } from '@esxemu/iscsi';
import { silentLogger } from '@esxemu/shared';
import { IscsiBlockDevice } from '../src/vmfs/index.js';

export const TARGET_NAME = 'iqn.2026-11.io.esxemu:datastore1';

export async function startTarget(lunSizeMiB = 64): Promise<{ target: IscsiTarget; portal: string }> {
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config: configFromFlags({ memory: true, lunSize: lunSizeMiB }) });
  return { target, portal: `127.0.0.1:${target.port}` };
}

export async function connectHost(portal: string, hostId: number, ats = true): Promise<{ init: IscsiInitiator; dev: IscsiBlockDevice }> {
  const init = await IscsiInitiator.connect({ portal, targetName: TARGET_NAME, initiatorName: `iqn.2026-11.io.esxemu:esx${String(hostId).padStart(2, '0')}`, timeouts: { connectMs: 3000, loginMs: 3000, commandMs: 10_000 } });
  return { init, dev: await IscsiBlockDevice.open(init, { lun: 0, ats, name: `esx${hostId}` }) };
}

export interface ChildArgs {
  portal: string;
  hostId: number;
  mode: 'churn' | 'hold-and-churn';
  iterations?: number;
  heartbeatMs: number;
  leaseMs: number;
  ats?: boolean;
}

export interface ChildEvent {
  event: string;
  [k: string]: unknown;
}

export class HostChild {
  readonly proc: ChildProcess;
  readonly events: ChildEvent[] = [];
  stderr = '';
  exit: Promise<number | null>;
  private waiters = new Set<() => void>();

  constructor(args: ChildArgs) {
    const script = fileURLToPath(new URL('./vmfs-host-child.js', import.meta.url));
    this.proc = spawn(process.execPath, [script, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.events.push(JSON.parse(line) as ChildEvent);
        } catch {
          this.events.push({ event: 'garbage', line });
        }
        for (const w of this.waiters) w();
      }
    });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    this.exit = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  count(event: string): number {
    return this.events.filter((e) => e.event === event).length;
  }

  /** Wait until `pred` holds over the events seen (bounded). */
  async waitFor(what: string, pred: (events: ChildEvent[]) => boolean, timeoutMs: number): Promise<void> {
    if (pred(this.events)) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`host child ${this.pid}: timed out after ${timeoutMs} ms waiting for ${what}; events ${JSON.stringify(this.events.slice(-5))}; stderr ${this.stderr}`));
      }, timeoutMs);
      const check = (): void => {
        if (!pred(this.events)) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      this.waiters.add(check);
      void this.exit.then(() => {
        if (this.waiters.has(check)) {
          clearTimeout(timer);
          this.waiters.delete(check);
          reject(new Error(`host child ${this.pid} exited while waiting for ${what}; events ${JSON.stringify(this.events.slice(-5))}; stderr ${this.stderr}`));
        }
      });
    });
  }

  /** Kill by PID if still running, and wait (bounded) for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      return;
    }
    await Promise.race([this.exit, new Promise((r) => setTimeout(r, 10_000).unref())]);
  }
}
