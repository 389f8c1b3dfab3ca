/**
 * Formatting the datastore's LUN once, as `cluster up` does before the hosts start: log in,
 * read the superblock, mkfs only when the LUN holds nothing (NOT_FORMATTED with all-zero
 * sector 0). A LUN that already holds a VMFS is left as it is (its VMs survive a cluster
 * restart); a LUN with anything else on it is refused by mkfs, never overwritten.
 */
import { IscsiInitiator, parseIscsiUrl } from '@esxemu/iscsi';
import { EsxError, type Logger } from '@esxemu/shared';
import { IscsiBlockDevice, mkfs } from '../vmfs/index.js';

export async function formatDatastore(url: string, o: { label?: string; logger?: Logger } = {}): Promise<'formatted' | 'existing'> {
  const u = parseIscsiUrl(url);
  const init = await IscsiInitiator.connect({ portal: u.portal, targetName: u.targetName, initiatorName: 'iqn.2026-11.io.esxemu:cluster-setup', ...(o.logger ? { logger: o.logger } : {}) });
  try {
    const dev = await IscsiBlockDevice.open(init, { lun: u.lun, name: 'cluster-setup' });
    try {
      await mkfs(dev, { label: o.label ?? 'datastore1' });
      return 'formatted';
    } catch (err) {
      if (err instanceof EsxError && err.code === 'INVALID_STATE' && err.details?.['reason'] === 'ALREADY_FORMATTED') return 'existing';
      throw err;
    }
  } finally {
    await init.close().catch(() => undefined);
  }
}
