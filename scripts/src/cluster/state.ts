/** cluster.json: what `cluster up` started, so that `status` and `down` find it again. */
import { readFileSync, renameSync, writeFileSync, rmSync } from 'node:fs';

export interface ProcessRecord {
  role: 'vcenter' | 'iscsi' | 'host';
  name: string;
  pid: number;
  /** e.g. { api: 'http://127.0.0.1:7080' } or { migration: '127.0.0.1:8000' } */
  urls: Record<string, string>;
  logFile: string;
}

export interface ClusterState {
  version: 1;
  startedAt: number;
  vcenterUrl: string;
  processes: ProcessRecord[];
}

export function readClusterState(file: string): ClusterState | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const s = JSON.parse(text) as ClusterState;
    if (s.version !== 1 || !Array.isArray(s.processes)) return null;
    return s;
  } catch {
    return null;
  }
}

export function writeClusterState(file: string, state: ClusterState): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, file);
}

export function removeClusterState(file: string): void {
  rmSync(file, { force: true });
}

/** Is a process with this pid alive (and ours to signal)? */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
