/** Output: human tables by default, JSON with --json. */
import Table from 'cli-table3';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printTable(head: string[], rows: (string | number)[][]): void {
  const table = new Table({ head, style: { head: process.stdout.isTTY ? ['cyan'] : [], border: [] }, chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' } });
  for (const r of rows) table.push(r.map((c) => String(c)));
  process.stdout.write(table.toString() + '\n');
}

export function printKeyValues(rows: [string, string | number][]): void {
  const table = new Table({ style: { head: [], border: [] } });
  for (const [k, v] of rows) table.push({ [k]: String(v) });
  process.stdout.write(table.toString() + '\n');
}

export function ago(ms: number | null): string {
  if (ms === null) return '-';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

export function time(ms: number | null): string {
  if (ms === null) return '-';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

export function fixed(n: number | undefined | null, digits = 0): string {
  return n === undefined || n === null || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}
