/**
 * Linux tgt (Debian's `tgt` package) as a peer target: started in the foreground on a private
 * portal and control port, one target with one file-backed LUN, stopped by pid. Used by the
 * conformance comparison and the iSCSI benchmark so that esxemu's target is always measured
 * against tgt in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { EsxError, sleep } from '@esxemu/shared';

export const TGTD = '/usr/sbin/tgtd';
export const TGTADM = '/usr/sbin/tgtadm';

export function tgtAvailable(): boolean {
  return existsSync(TGTD) && existsSync(TGTADM);
}

export interface TgtPeer {
  pid: number;
  portal: string;
  targetName: string;
  /** tgt puts its controller at LUN 0; the disk is here. */
  lun: number;
  url: string;
  stop(): Promise<void>;
}

/**
 * tgtd's "control port" is the suffix of its management socket (/var/run/tgtd/socket.N), not a
 * TCP port, and tgtd refuses values above 32767: pick one per process to keep instances apart.
 */
export function tgtControlPort(): number {
  return 20000 + ((process.pid * 7 + Math.floor(Math.random() * 1000)) % 12000);
}

export async function startTgt(opts: { dir: string; port: number; controlPort: number; sizeMiB: number; targetName?: string }): Promise<TgtPeer> {
  if (!tgtAvailable()) throw new EsxError('NOT_FOUND', `tgt is not installed (${TGTD}); apt-get install tgt`);
  const targetName = opts.targetName ?? 'iqn.2026-11.io.esxemu:tgt-peer';
  const image = join(opts.dir, 'tgt-lun.img');
  closeSync(openSync(image, 'a'));
  truncateSync(image, opts.sizeMiB * 1024 * 1024);
  const portal = `127.0.0.1:${opts.port}`;
  const log = openSync(join(opts.dir, 'tgtd.log'), 'a');
  const child: ChildProcess = spawn(TGTD, ['-f', '-C', String(opts.controlPort), '--iscsi', `portal=${portal}`], { stdio: ['ignore', log, log] });
  closeSync(log);
  let exited = false;
  child.on('exit', () => (exited = true));
  const adm = (args: string[]) => execa(TGTADM, ['-C', String(opts.controlPort), '--lld', 'iscsi', ...args], { timeout: 10_000 });
  const stop = async () => {
    if (!exited && child.pid) {
      child.kill('SIGKILL');
      for (let i = 0; i < 100 && !exited; i++) await sleep(20);
    }
  };
  try {
    // tgtd takes a moment to open its control socket: retry the first command, bounded.
    for (let attempt = 0; ; attempt++) {
      if (exited) throw new EsxError('INTERNAL', `tgtd exited at start; see ${join(opts.dir, 'tgtd.log')}`);
      try {
        await adm(['--op', 'new', '--mode', 'target', '--tid', '1', '-T', targetName]);
        break;
      } catch (err) {
        if (attempt > 50) throw err;
        await sleep(100);
      }
    }
    await adm(['--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', image]);
    await adm(['--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL']);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid!, portal, targetName, lun: 1, url: `iscsi://${portal}/${targetName}/1`, stop };
}
