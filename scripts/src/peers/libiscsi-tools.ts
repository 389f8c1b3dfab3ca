/**
 * Third-party initiators as load generators: libiscsi's iscsi-perf (reads) and QEMU's
 * `qemu-img bench` through its libiscsi block driver (writes). Each run is bounded in time.
 */
import { existsSync } from 'node:fs';
import { execa } from 'execa';
import { EsxError } from '@esxemu/shared';

export const ISCSI_PERF = '/usr/bin/iscsi-perf';
export const QEMU_IMG = '/usr/bin/qemu-img';

export interface IoResult {
  iops: number;
  mbPerS: number;
  seconds: number;
}

/** iscsi-perf: reads of `blocks` 512-byte blocks at queue depth `depth` for `seconds`. */
export async function iscsiPerf(url: string, o: { blocks: number; depth: number; seconds: number; random: boolean }): Promise<IoResult> {
  if (!existsSync(ISCSI_PERF)) throw new EsxError('NOT_FOUND', 'iscsi-perf is not installed (apt-get install libiscsi-bin)');
  const args = ['-m', String(o.depth), '-b', String(o.blocks), '-t', String(o.seconds)];
  if (o.random) args.push('-r');
  args.push(url);
  const r = await execa(ISCSI_PERF, args, { reject: false, timeout: (o.seconds + 30) * 1000, stdin: 'ignore', all: true });
  const out = String(r.all ?? '');
  const matches = [...out.matchAll(/iops average (\d+) \((\d+) MB\/s\)/g)];
  const last = matches[matches.length - 1];
  if (!last) throw new EsxError('INTERNAL', `iscsi-perf gave no result (exit ${r.exitCode}): ${out.slice(-300)}`);
  const iops = Number(last[1]);
  return { iops, mbPerS: (iops * o.blocks * 512) / 1e6, seconds: o.seconds };
}

export function qemuImgAvailable(): boolean {
  return existsSync(QEMU_IMG);
}

/** qemu-img bench -w: `count` sequential writes of `bytes` at queue depth `depth`, O_DIRECT-like (cache none). */
export async function qemuImgWrite(url: string, o: { bytes: number; depth: number; count: number; pattern?: number; offset?: number }): Promise<IoResult> {
  if (!qemuImgAvailable()) throw new EsxError('NOT_FOUND', 'qemu-img is not installed (apt-get install qemu-utils qemu-block-extra)');
  const args = ['bench', '-w', '-f', 'raw', '-t', 'none', '-c', String(o.count), '-d', String(o.depth), '-s', String(o.bytes), `--pattern=${o.pattern ?? 0x5a}`];
  if (o.offset) args.push('-o', String(o.offset));
  args.push(url);
  const r = await execa(QEMU_IMG, args, { reject: false, timeout: 300_000, stdin: 'ignore', all: true });
  const out = String(r.all ?? '');
  const m = /Run completed in ([\d.]+) seconds/.exec(out);
  if (!m || r.exitCode !== 0) throw new EsxError('INTERNAL', `qemu-img bench failed (exit ${r.exitCode}): ${out.slice(-300)}`);
  const seconds = Number(m[1]);
  return { iops: o.count / seconds, mbPerS: (o.count * o.bytes) / seconds / 1e6, seconds };
}
