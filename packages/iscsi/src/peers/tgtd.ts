/**
 * A real Linux tgt (`tgtd`, Debian's `tgt` package) that no one here wrote, as a peer: of the
 * initiator in its tests, and of esxemu's target in the conformance comparison and the
 * benchmark (`@esxemu/iscsi/tgtd`). Each instance runs in the foreground as our child, with its
 * own iSCSI port on 127.0.0.1 and its own management socket (`-C <control port>`: the suffix of
 * /run/tgtd/socket.N, not a TCP port, at most 32767), backed by sparse files in its directory;
 * `kill()` is SIGKILL (the target crashes), `restart()` starts it again on the same ports and
 * files and replays the configuration (tgtd keeps none).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, ftruncateSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const TGTD = '/usr/sbin/tgtd';
export const TGTADM = '/usr/sbin/tgtadm';

export function tgtAvailable(): boolean {
  return existsSync(TGTD) && existsSync(TGTADM) && process.getuid?.() === 0;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface TgtLun {
  lun: number;
  sizeBytes: number;
  /** `--op update --mode logicalunit --params`, e.g. `thin_provisioning=1`. */
  params?: string;
  /** Set by the harness. */
  file?: string;
}

export interface TgtTarget {
  tid: number;
  iqn: string;
  luns: TgtLun[];
  /** Incoming CHAP account (the initiator proves itself). */
  chap?: { user: string; password: string };
  /** Outgoing CHAP account (the target proves itself: mutual CHAP). */
  mutual?: { user: string; password: string };
  /** Target parameters set with `--op update -n <key> -v <value>`. */
  params?: Record<string, string>;
  /** Initiator addresses allowed (default ALL). */
  allow?: string;
}

export interface TgtOptions {
  targets: TgtTarget[];
  /** Where the LUN files and tgtd.log go (default: a new temp dir, removed by stop()). */
  dir?: string;
  /** iSCSI port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** Extra `--iscsi` options, e.g. `nop_interval=1,nop_count=3`. */
  iscsiOptions?: string;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

export class Tgtd {
  readonly dir: string;
  readonly port: number;
  readonly controlPort: number;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private readonly opts: TgtOptions;
  private readonly ownsDir: boolean;

  private constructor(dir: string, port: number, controlPort: number, opts: TgtOptions) {
    this.dir = dir;
    this.ownsDir = opts.dir === undefined;
    this.port = port;
    this.controlPort = controlPort;
    this.opts = opts;
  }

  get portal(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  static async start(opts: TgtOptions): Promise<Tgtd> {
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'esxemu-tgt-'));
    mkdirSync(dir, { recursive: true });
    const port = opts.port ?? (await freePort());
    // A management socket of our own: /run/tgtd/socket.<controlPort>; pick one no tgtd holds.
    let controlPort = 0;
    for (let i = 0; i < 50 && !controlPort; i++) {
      const c = 10000 + Math.floor(Math.random() * 22000); // tgtadm accepts up to 32767
      if (!existsSync(`/run/tgtd/socket.${c}.lock`)) controlPort = c;
    }
    const t = new Tgtd(dir, port, controlPort, opts);
    for (const target of opts.targets) {
      for (const l of target.luns) {
        l.file = join(dir, `t${target.tid}-lun${l.lun}.img`);
        const fd = openSync(l.file, 'w');
        ftruncateSync(fd, l.sizeBytes);
        closeSync(fd);
      }
    }
    await t.launch();
    return t;
  }

  async adm(args: string[]): Promise<string> {
    const { stdout } = await run(TGTADM, ['-C', String(this.controlPort), ...args], { timeout: 5000 });
    return stdout;
  }

  private async launch(): Promise<void> {
    const portal = `portal=127.0.0.1:${this.port}${this.opts.iscsiOptions ? `,${this.opts.iscsiOptions}` : ''}`;
    const logFd = openSync(join(this.dir, 'tgtd.log'), 'a');
    const child = spawn(TGTD, ['-f', '-C', String(this.controlPort), '--iscsi', portal], { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    // Ready when the management socket answers (bounded).
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await this.adm(['--op', 'show', '--mode', 'sys']);
        break;
      } catch (err) {
        if (Date.now() > deadline || child.exitCode !== null) {
          child.kill('SIGKILL');
          throw new Error(`tgtd did not start: ${(err as Error).message}`);
        }
        await sleep(50);
      }
    }
    await this.configure();
  }

  private async configure(): Promise<void> {
    for (const t of this.opts.targets) {
      const tid = String(t.tid);
      await this.adm(['--lld', 'iscsi', '--op', 'new', '--mode', 'target', '--tid', tid, '-T', t.iqn]);
      for (const l of t.luns) {
        await this.adm(['--lld', 'iscsi', '--op', 'new', '--mode', 'logicalunit', '--tid', tid, '--lun', String(l.lun), '-b', l.file!]);
        if (l.params) await this.adm(['--lld', 'iscsi', '--op', 'update', '--mode', 'logicalunit', '--tid', tid, '--lun', String(l.lun), '--params', l.params]);
      }
      for (const [k, v] of Object.entries(t.params ?? {})) await this.adm(['--lld', 'iscsi', '--op', 'update', '--mode', 'target', '--tid', tid, '-n', k, '-v', v]);
      if (t.chap) {
        await this.adm(['--lld', 'iscsi', '--op', 'new', '--mode', 'account', '--user', t.chap.user, '--password', t.chap.password]);
        await this.adm(['--lld', 'iscsi', '--op', 'bind', '--mode', 'account', '--tid', tid, '--user', t.chap.user]);
      }
      if (t.mutual) {
        await this.adm(['--lld', 'iscsi', '--op', 'new', '--mode', 'account', '--user', t.mutual.user, '--password', t.mutual.password]);
        await this.adm(['--lld', 'iscsi', '--op', 'bind', '--mode', 'account', '--tid', tid, '--user', t.mutual.user, '--outgoing']);
      }
      await this.adm(['--lld', 'iscsi', '--op', 'bind', '--mode', 'target', '--tid', tid, '-I', t.allow ?? 'ALL']);
    }
  }

  /** SIGKILL: the target crashes with whatever was in flight. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGKILL');
    await this.exited;
  }

  /** SIGSTOP / SIGCONT: the target hangs (TCP stays up, nothing is answered). */
  freeze(): void {
    this.child?.kill('SIGSTOP');
  }

  thaw(): void {
    this.child?.kill('SIGCONT');
  }

  /** Start again on the same ports and files, with the same configuration. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  /** Kill, and remove the directory if it was ours. */
  async stop(): Promise<void> {
    this.thaw();
    await this.kill();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
