/**
 * The bounds every backstore call obeys: whole blocks, inside the LUN, and at most
 * MAX_IO_BYTES per read or write (the SCSI layer advertises a smaller maximum transfer length,
 * so a larger request is a bug, not an initiator's mistake).
 */
import { EsxError } from '@esxemu/shared';

export const MAX_IO_BYTES = 32 * 1024 * 1024;

export function checkIo(store: { sizeBytes: number; blockSize: number }, offset: number, length: number, max = MAX_IO_BYTES): void {
  const bs = store.blockSize;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new EsxError('INVALID_ARGUMENT', `bad I/O range ${offset}+${length}`);
  }
  if (offset % bs !== 0 || length % bs !== 0) throw new EsxError('INVALID_ARGUMENT', `I/O ${offset}+${length} is not block aligned (${bs})`);
  if (offset + length > store.sizeBytes) throw new EsxError('INVALID_ARGUMENT', `I/O ${offset}+${length} beyond the end (${store.sizeBytes})`);
  if (length > max) throw new EsxError('PAYLOAD_TOO_LARGE', `I/O of ${length} bytes exceeds ${max}`);
}
