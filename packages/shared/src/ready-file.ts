/**
 * Ready files: a process started with `--ready-file PATH` writes there, once it listens, one
 * JSON object with its pid and addresses. The cluster launcher and the tests wait for it
 * (bounded) instead of parsing logs. Written atomically (temp file + rename).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { waitFor } from './time.js';

export interface ReadyInfo {
  pid: number;
  role: 'vcenter' | 'host' | 'iscsi';
  name: string;
  /** Addresses this process serves, e.g. { api: 'http://127.0.0.1:7080' }. */
  urls: Record<string, string>;
}

export function writeReadyFile(path: string, info: ReadyInfo): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(info) + '\n');
  renameSync(tmp, path);
}

export function readReadyFile(path: string): ReadyInfo | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ReadyInfo;
  } catch {
    return null;
  }
}

export function waitForReadyFile(path: string, timeoutMs: number, alive?: () => boolean): Promise<ReadyInfo> {
  return waitFor(`ready file ${path}`, () => {
    if (alive && !alive()) throw new Error('process exited before it was ready');
    return readReadyFile(path);
  }, timeoutMs, 50);
}
