/**
 * Who a logical unit says it is: vendor, product, revision, unit serial number and its NAA
 * name, and the standard INQUIRY data (SPC-4 6.6.2) built from them.
 *
 * The serial number and the NAA identifier are derived from a stable seed (target name and
 * LUN) so they survive restarts: initiators (and VMFS) recognise the LUN by them. The NAA
 * designator is NAA-3 ("locally assigned"): honest, since no IEEE company ID is ours.
 */
import { createHash } from 'node:crypto';
import { asciiField } from './cdb.js';

export const DEFAULT_VENDOR = 'ESXEMU';
export const DEFAULT_PRODUCT = 'VIRTUAL-DISK';
export const DEFAULT_REVISION = '0001';

/** Version descriptors (SPC-4 Table 7): SAM-5, iSCSI, SPC-4, SBC-3. */
const VERSION_DESCRIPTORS = [0x00a0, 0x0960, 0x0460, 0x04c0];
export const STANDARD_INQUIRY_BYTES = 96;

export interface LuIdentity {
  vendor: string;
  product: string;
  revision: string;
  /** Unit serial number (ASCII, VPD 80h). */
  serial: string;
  /** NAA-3 name, 8 bytes. */
  naa: Buffer;
}

export function deriveIdentity(seed: string, overrides: Partial<Omit<LuIdentity, 'naa'>> = {}): LuIdentity {
  const h = createHash('sha256').update(seed).digest();
  const naa = Buffer.from(h.subarray(0, 8));
  naa[0] = 0x30 | (naa[0]! & 0x0f); // NAA = 3 in the top nibble
  return {
    vendor: overrides.vendor ?? DEFAULT_VENDOR,
    product: overrides.product ?? DEFAULT_PRODUCT,
    revision: overrides.revision ?? DEFAULT_REVISION,
    serial: (overrides.serial ?? h.subarray(8, 16).toString('hex')).slice(0, 64),
    naa,
  };
}

export interface InquiryFlags {
  removable: boolean;
  /** Peripheral qualifier 011b + type 1Fh: no logical unit at this LUN. */
  noLu?: boolean;
}

/** Standard INQUIRY data: SPC-4, response data format 2, HiSup, CmdQue, TPGS 0. */
export function standardInquiry(id: LuIdentity, f: InquiryFlags): Buffer {
  const b = Buffer.alloc(STANDARD_INQUIRY_BYTES);
  b[0] = f.noLu ? 0x7f : 0x00; // qualifier 000b, direct access block device
  b[1] = f.removable ? 0x80 : 0x00;
  b[2] = 0x06; // SPC-4
  b[3] = 0x10 | 0x02; // HiSup, response data format 2
  b[4] = STANDARD_INQUIRY_BYTES - 5;
  b[5] = 0x00; // SCCS 0, ACC 0, TPGS 00b, 3PC 0, PROTECT 0
  b[6] = 0x00;
  b[7] = 0x02; // CmdQue
  asciiField(id.vendor, 8).copy(b, 8);
  asciiField(id.product, 16).copy(b, 16);
  asciiField(id.revision, 4).copy(b, 32);
  VERSION_DESCRIPTORS.forEach((v, i) => b.writeUInt16BE(v, 58 + 2 * i));
  return b;
}
