/**
 * Linux tgt as the peer target of the conformance comparison and the iSCSI benchmark: one
 * target with one file-backed LUN (tgt keeps its controller at LUN 0, so the disk is LUN 1),
 * started through the one tgtd harness of the project (`@esxemu/iscsi/tgtd`), stopped by pid.
 */
import { Tgtd, tgtAvailable } from '@esxemu/iscsi/tgtd';
import { EsxError } from '@esxemu/shared';

export { tgtAvailable };

export interface TgtPeer {
  pid: number;
  portal: string;
  targetName: string;
  lun: number;
  url: string;
  stop(): Promise<void>;
}

export async function startTgt(opts: { dir: string; port: number; sizeMiB: number; targetName?: string }): Promise<TgtPeer> {
  if (!tgtAvailable()) throw new EsxError('NOT_FOUND', 'tgt is not installed (/usr/sbin/tgtd) or we are not root; apt-get install tgt');
  const targetName = opts.targetName ?? 'iqn.2026-11.io.esxemu:tgt-peer';
  const tgt = await Tgtd.start({ dir: opts.dir, port: opts.port, targets: [{ tid: 1, iqn: targetName, luns: [{ lun: 1, sizeBytes: opts.sizeMiB * 1024 * 1024 }] }] });
  return { pid: tgt.pid!, portal: tgt.portal, targetName, lun: 1, url: `iscsi://${tgt.portal}/${targetName}/1`, stop: () => tgt.stop() };
}
