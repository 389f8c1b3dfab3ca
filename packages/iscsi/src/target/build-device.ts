/**
 * From a target's configuration to its SCSI device: one backstore per LUN (a sparse file, or
 * memory), the logical units over them, LUN masking. The one place where the target process
 * meets the SCSI layer's and the backstores' constructors.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '@esxemu/shared';
import type { Backstore } from '../backstore/backstore.js';
import { FileBackstore } from '../backstore/file.js';
import { MemoryBackstore } from '../backstore/memory.js';
import { ScsiTarget } from '../scsi/target-device.js';
import type { ScsiTargetDevice } from '../scsi/types.js';
import type { LunConfig, TargetDefinition } from './config.js';

export interface BuiltDevice {
  device: ScsiTargetDevice;
  /** Flush and close the backstores. */
  close(): Promise<void>;
}

export type DeviceFactory = (def: TargetDefinition, log: Logger) => Promise<BuiltDevice>;

async function openBackstore(l: LunConfig): Promise<Backstore> {
  if (l.backing.kind === 'memory') return new MemoryBackstore(l.sizeBytes, l.blockSize);
  await mkdir(dirname(l.backing.path), { recursive: true });
  return FileBackstore.open({ path: l.backing.path, sizeBytes: l.sizeBytes, blockSize: l.blockSize, io: { mode: l.io } });
}

export const buildTargetDevice: DeviceFactory = async (def, log) => {
  const stores: Backstore[] = [];
  try {
    for (const l of def.luns) {
      const store = await openBackstore(l);
      stores.push(store);
      log.info({ target: def.name, lun: l.lun, backing: l.backing.kind === 'file' ? l.backing.path : 'memory', sizeBytes: store.sizeBytes, blockSize: store.blockSize }, 'LUN ready');
    }
    const device = new ScsiTarget({
      targetName: def.name,
      luns: def.luns.map((l, i) => ({
        lun: l.lun,
        backstore: stores[i]!,
        readOnly: l.readOnly,
        ats: l.ats,
        onIoError: (err: unknown, lun: number, op: string) => log.error({ target: def.name, lun, op, err: (err as Error)?.message }, 'backstore I/O error'),
      })),
      ...(def.lunMasking ? { lunMasking: def.lunMasking } : {}),
    });
    return { device, close: () => device.close() };
  } catch (err) {
    await Promise.allSettled(stores.map((s) => s.close()));
    throw err;
  }
};
