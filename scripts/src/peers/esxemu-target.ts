/** esxemu's own iSCSI target as a separate process (`esxemu iscsi serve`), for tests and benchmarks. */
import { launchProcess } from '../cluster/launcher.js';
import { isAlive } from '../cluster/state.js';
import { sleep } from '@esxemu/shared';

export const DEFAULT_TARGET_NAME = 'iqn.2026-11.io.esxemu:datastore1';

export interface EsxemuTarget {
  pid: number;
  portal: string;
  targetName: string;
  lun: number;
  url: string;
  stop(): Promise<void>;
}

export async function startEsxemuTarget(opts: { dir: string; sizeMiB: number; extraArgs?: string[]; logLevel?: string }): Promise<EsxemuTarget> {
  const rec = await launchProcess({
    role: 'iscsi',
    name: 'iscsi',
    dir: opts.dir,
    runDir: opts.dir,
    logLevel: opts.logLevel ?? 'warn',
    readyTimeoutMs: 30_000,
    argv: ['iscsi', 'serve', '--listen', '127.0.0.1', '--port', '0', '--data-dir', opts.dir, '--lun-size', String(opts.sizeMiB), ...(opts.extraArgs ?? [])],
  });
  const portal = rec.urls['iscsi']!;
  return {
    pid: rec.pid,
    portal,
    targetName: DEFAULT_TARGET_NAME,
    lun: 0,
    url: `iscsi://${portal}/${DEFAULT_TARGET_NAME}/0`,
    stop: async () => {
      try {
        process.kill(rec.pid, 'SIGTERM');
      } catch {
        return;
      }
      for (let i = 0; i < 100 && isAlive(rec.pid); i++) await sleep(50);
      if (isAlive(rec.pid)) process.kill(rec.pid, 'SIGKILL');
    },
  };
}
