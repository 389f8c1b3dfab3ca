/**
 * The hosts' own initiator (esxemu's software iSCSI adapter) as a load generator, so the
 * benchmark can put it beside the third-party initiators on the same workloads: `depth`
 * commands kept in flight for `seconds` (reads) or for `count` commands (writes).
 */
import { IscsiInitiator } from '@esxemu/iscsi';
import { EsxError, silentLogger } from '@esxemu/shared';
import type { IoResult } from './libiscsi-tools.js';

export function parseIscsiUrl(url: string): { portal: string; targetName: string; lun: number } {
  const m = /^iscsi:\/\/([^/]+)\/([^/]+)\/(\d+)$/.exec(url);
  if (!m) throw new EsxError('INVALID_ARGUMENT', `not an iscsi://portal/target/lun URL: ${url}`);
  return { portal: m[1]!, targetName: m[2]!, lun: Number(m[3]) };
}

export async function initiatorLoad(
  url: string,
  o: { op: 'read' | 'write'; bytes: number; depth: number; random: boolean; seconds?: number; count?: number; sizeBytes: number },
): Promise<IoResult> {
  const { portal, targetName, lun } = parseIscsiUrl(url);
  const s = await IscsiInitiator.connect({ portal, targetName, initiatorName: 'iqn.2026-11.io.esxemu:bench', logger: silentLogger(), queueDepth: o.depth });
  try {
    const blockSize = 512;
    const blocks = o.bytes / blockSize;
    const slots = Math.floor(o.sizeBytes / o.bytes);
    const payload = Buffer.alloc(o.bytes, 0x5a);
    let next = 0;
    let done = 0;
    let issued = 0;
    let seed = 12345;
    const nextSlot = () => {
      if (!o.random) return next++ % slots;
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % slots;
    };
    const deadline = o.seconds ? performance.now() + o.seconds * 1000 : Infinity;
    const t0 = performance.now();
    const worker = async () => {
      for (;;) {
        if (o.count !== undefined ? issued >= o.count : performance.now() >= deadline) return;
        issued++;
        const lba = nextSlot() * blocks;
        const r = o.op === 'read' ? await s.read(lun, lba, blocks) : await s.write(lun, lba, payload);
        if (!r.ok) throw new EsxError('INTERNAL', `${o.op} at LBA ${lba} failed with status ${r.status}`);
        done++;
      }
    };
    await Promise.all(Array.from({ length: o.depth }, worker));
    const seconds = (performance.now() - t0) / 1000;
    return { iops: done / seconds, mbPerS: (done * o.bytes) / seconds / 1e6, seconds };
  } finally {
    await s.close();
  }
}
