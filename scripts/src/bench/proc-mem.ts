/** Memory of a process from /proc (Linux): resident set, and its private part. */
import { readFileSync } from 'node:fs';

export interface ProcMem {
  rssMiB: number;
  /** RSS minus file-backed shared pages: what this process alone costs. */
  privateMiB: number;
}

export function procMem(pid: number): ProcMem | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    const rss = kb('VmRSS');
    const file = kb('RssFile');
    return { rssMiB: rss / 1024, privateMiB: (rss - (Number.isFinite(file) ? file : 0)) / 1024 };
  } catch {
    return null;
  }
}
