/**
 * The shared LUN through the host's software iSCSI adapter (IscsiInitiator from @esxemu/iscsi).
 *
 * SCSI failures come back from the initiator as data (ScsiResult); this module turns them into
 * EsxErrors with stable codes:
 *   RESERVATION CONFLICT          -> retried (retryConflicts), then TIMEOUT
 *   DATA PROTECT / SPACE ALLOCATION FAILED (27h/07h), VOLUME OVERFLOW -> NO_SPACE
 *   any other CHECK CONDITION or status -> IO_ERROR (sense in details)
 * Transport failures (TARGET_UNREACHABLE, TIMEOUT...) pass through with their own codes.
 *
 * Large transfers are split into commands of at most `maxIoBytes` (default 1 MiB, below the
 * target's 8 MiB transfer limit). When `ats` is requested but the target answers COMPARE AND
 * WRITE with INVALID COMMAND OPERATION CODE, the device switches itself to the reservation
 * fallback (as ESX does when VAAI ATS is not supported) and reports `miscompare` never.
 */
import { EsxError } from '@esxemu/shared';
import type { IscsiInitiator, initiator as iscsi } from '@esxemu/iscsi';
import { checkData, checkRange, retryConflicts, ReservationConflict, type BlockDevice, type CompareAndWriteResult, type WriteOptions } from './block-device.js';

const RESERVATION_CONFLICT = 0x18;
const SENSE_ILLEGAL_REQUEST = 0x5;
const SENSE_DATA_PROTECT = 0x7;
const SENSE_VOLUME_OVERFLOW = 0xd;

export interface IscsiDeviceOptions {
  lun?: number;
  /** Use COMPARE AND WRITE (default true); false forces the reservation path. */
  ats?: boolean;
  /** Largest single command, bytes (default 1 MiB). */
  maxIoBytes?: number;
  conflictRetryMs?: number;
  name?: string;
}

type Failure = Extract<iscsi.ScsiResult<unknown>, { ok: false }>;

/** Map a failed SCSI result to an EsxError (or ReservationConflict for the retry loop). */
export function scsiFailure(what: string, r: Failure): Error {
  if (r.status === RESERVATION_CONFLICT) return new ReservationConflict();
  const s = r.sense;
  const details = { status: r.status, statusName: r.statusName, senseKey: s?.keyName ?? null, asc: s?.asc ?? null, ascq: s?.ascq ?? null, sense: s?.description ?? null };
  const text = `${what} failed: ${r.statusName}${s ? ` (${s.keyName}: ${s.description})` : ''}`;
  if (s && ((s.key === SENSE_DATA_PROTECT && s.asc === 0x27 && s.ascq === 0x07) || s.key === SENSE_VOLUME_OVERFLOW)) return new EsxError('NO_SPACE', text, details);
  return new EsxError('IO_ERROR', text, details);
}

export class IscsiBlockDevice implements BlockDevice {
  readonly blockSize: number;
  readonly blocks: number;
  readonly name: string;
  private atsOn: boolean;
  private readonly init: IscsiInitiator;
  private readonly lun: number;
  private readonly maxIoBlocks: number;
  private readonly conflictRetryMs: number | undefined;

  private constructor(init: IscsiInitiator, lun: number, blockSize: number, blocks: number, o: IscsiDeviceOptions) {
    this.init = init;
    this.lun = lun;
    this.blockSize = blockSize;
    this.blocks = blocks;
    this.atsOn = o.ats ?? true;
    this.maxIoBlocks = Math.max(1, Math.floor((o.maxIoBytes ?? 1024 * 1024) / blockSize));
    this.conflictRetryMs = o.conflictRetryMs;
    this.name = o.name ?? `${init.targetName}/${lun}`;
  }

  /** READ CAPACITY the LUN and wrap it. */
  static async open(init: IscsiInitiator, o: IscsiDeviceOptions = {}): Promise<IscsiBlockDevice> {
    const lun = o.lun ?? 0;
    const cap = await init.readCapacity(lun);
    if (!cap.ok) throw scsiFailure(`READ CAPACITY of LUN ${lun}`, cap);
    return new IscsiBlockDevice(init, lun, cap.value.blockSize, cap.value.blocks, o);
  }

  get ats(): boolean {
    return this.atsOn;
  }

  get sizeBytes(): number {
    return this.blocks * this.blockSize;
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    checkRange(this, lba, blocks);
    const parts: Buffer[] = [];
    for (let done = 0; done < blocks; ) {
      const n = Math.min(this.maxIoBlocks, blocks - done);
      const at = lba + done;
      parts.push(await retryConflicts(`read of LBA ${at}`, async () => {
        const r = await this.init.read(this.lun, at, n);
        if (!r.ok) throw scsiFailure(`READ of ${n} blocks at LBA ${at}`, r);
        return r.value;
      }, this.conflictRetryMs));
      done += n;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  async write(lba: number, data: Buffer, opts: WriteOptions = {}): Promise<void> {
    const blocks = checkData(this, lba, data);
    const bs = this.blockSize;
    for (let done = 0; done < blocks; ) {
      const n = Math.min(this.maxIoBlocks, blocks - done);
      const at = lba + done;
      const chunk = data.subarray(done * bs, (done + n) * bs);
      await retryConflicts(`write of LBA ${at}`, async () => {
        const r = await this.init.write(this.lun, at, chunk, { fua: opts.fua ?? false });
        if (!r.ok) throw scsiFailure(`WRITE of ${n} blocks at LBA ${at}`, r);
      }, this.conflictRetryMs);
      done += n;
    }
  }

  async flush(): Promise<void> {
    await retryConflicts('synchronize cache', async () => {
      const r = await this.init.flush(this.lun);
      if (!r.ok) throw scsiFailure('SYNCHRONIZE CACHE', r);
    }, this.conflictRetryMs);
  }

  async compareAndWrite(lba: number, expected: Buffer, next: Buffer): Promise<CompareAndWriteResult> {
    if (!this.atsOn) throw new EsxError('NOT_IMPLEMENTED', `device ${this.name}: COMPARE AND WRITE is switched off`);
    if (expected.length !== next.length) throw new EsxError('INVALID_ARGUMENT', 'compare and write buffers differ in length');
    checkData(this, lba, next);
    return retryConflicts(`compare and write of LBA ${lba}`, async () => {
      const r = await this.init.compareAndWrite(this.lun, lba, expected, next);
      if (r.ok) return r.value.match ? 'ok' : 'miscompare';
      if (r.sense?.key === SENSE_ILLEGAL_REQUEST && r.sense.asc === 0x20) {
        this.atsOn = false;
        throw new EsxError('NOT_IMPLEMENTED', `target does not support COMPARE AND WRITE; ${this.name} falls back to reservations`, { reason: 'ATS_UNSUPPORTED' });
      }
      throw scsiFailure(`COMPARE AND WRITE at LBA ${lba}`, r);
    }, this.conflictRetryMs);
  }

  async reserve(): Promise<boolean> {
    const r = await this.init.reserve(this.lun);
    if (r.ok) return true;
    if (r.status === RESERVATION_CONFLICT) return false;
    throw scsiFailure('RESERVE(6)', r);
  }

  async release(): Promise<void> {
    const r = await this.init.release(this.lun);
    if (!r.ok && r.status !== RESERVATION_CONFLICT) throw scsiFailure('RELEASE(6)', r);
  }

  /** The initiator belongs to the caller: close it separately. */
  async close(): Promise<void> {}
}
