/**
 * Where a local cluster keeps its files, under one home directory (ESXEMU_HOME, --home, or
 * ~/.esxemu):
 *
 *   cluster.json                 pids and addresses of the processes `cluster up` started
 *   vcenter/                     vcenter.db, token, cluster-secret, vcenter.log
 *   iscsi/                       iscsi.log
 *   hosts/<name>/                host.log, vmkernel.log
 *   run/<role>-<name>.ready      ready files
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export function defaultHome(): string {
  return resolve(process.env['ESXEMU_HOME'] ?? join(homedir(), '.esxemu'));
}

export interface ClusterLayout {
  home: string;
  stateFile: string;
  vcenterDir: string;
  iscsiDir: string;
  runDir: string;
  hostDir(name: string): string;
  tokenFile: string;
  secretFile: string;
}

export function clusterLayout(home: string): ClusterLayout {
  const h = resolve(home);
  return {
    home: h,
    stateFile: join(h, 'cluster.json'),
    vcenterDir: join(h, 'vcenter'),
    iscsiDir: join(h, 'iscsi'),
    runDir: join(h, 'run'),
    hostDir: (name) => join(h, 'hosts', name),
    tokenFile: join(h, 'vcenter', 'token'),
    secretFile: join(h, 'vcenter', 'cluster-secret'),
  };
}
