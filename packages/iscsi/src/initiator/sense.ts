/**
 * Decoding sense data (SPC-4 4.5): fixed format (response codes 70h/71h) and descriptor format
 * (72h/73h), into one shape: sense key, ASC/ASCQ, the INFORMATION field (COMPARE AND WRITE puts
 * the offset of the first miscompared byte there) and the sense-key-specific bytes. Anything
 * malformed decodes to what could be read and `valid: false`; it never throws.
 */

import { SENSE_KEY } from '../scsi/sense.js';

export { SENSE_KEY };

const KEY_NAMES = new Map<number, string>(Object.entries(SENSE_KEY).map(([k, v]) => [v, k]));

/** ASC/ASCQ a block device commonly reports, for readable logs and errors. */
const ASC_NAMES = new Map<number, string>([
  [0x0000, 'NO ADDITIONAL SENSE INFORMATION'],
  [0x0401, 'LOGICAL UNIT IS IN PROCESS OF BECOMING READY'],
  [0x1100, 'UNRECOVERED READ ERROR'],
  [0x1d00, 'MISCOMPARE DURING VERIFY OPERATION'],
  [0x1a00, 'PARAMETER LIST LENGTH ERROR'],
  [0x2000, 'INVALID COMMAND OPERATION CODE'],
  [0x2100, 'LOGICAL BLOCK ADDRESS OUT OF RANGE'],
  [0x2400, 'INVALID FIELD IN CDB'],
  [0x2500, 'LOGICAL UNIT NOT SUPPORTED'],
  [0x2600, 'INVALID FIELD IN PARAMETER LIST'],
  [0x2700, 'WRITE PROTECTED'],
  [0x2800, 'NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED'],
  [0x2900, 'POWER ON, RESET, OR BUS DEVICE RESET OCCURRED'],
  [0x2901, 'POWER ON OCCURRED'],
  [0x2902, 'SCSI BUS RESET OCCURRED'],
  [0x2903, 'BUS DEVICE RESET FUNCTION OCCURRED'],
  [0x2907, 'I_T NEXUS LOSS OCCURRED'],
  [0x2a01, 'MODE PARAMETERS CHANGED'],
  [0x2a03, 'RESERVATIONS PREEMPTED'],
  [0x2a04, 'RESERVATIONS RELEASED'],
  [0x2a05, 'REGISTRATIONS PREEMPTED'],
  [0x2a09, 'CAPACITY DATA HAS CHANGED'],
  [0x2c00, 'COMMAND SEQUENCE ERROR'],
  [0x3a00, 'MEDIUM NOT PRESENT'],
  [0x3f0e, 'REPORTED LUNS DATA HAS CHANGED'],
  [0x4400, 'INTERNAL TARGET FAILURE'],
  [0x4700, 'SCSI PARITY ERROR'],
  [0x5500, 'SYSTEM RESOURCE FAILURE'],
]);

export interface SenseData {
  /** 0x70..0x73 */
  responseCode: number;
  format: 'fixed' | 'descriptor' | 'unknown';
  current: boolean;
  key: number;
  keyName: string;
  asc: number;
  ascq: number;
  /** e.g. 'MISCOMPARE DURING VERIFY OPERATION', or 'ASC 0x.. ASCQ 0x..' */
  description: string;
  /** The INFORMATION field when valid (an LBA, or the miscompare offset), else null. */
  information: number | null;
  /** Sense-key specific bytes (3) when SKSV is set, else null. */
  senseKeySpecific: Buffer | null;
  /** False when the buffer was too short or the response code unknown. */
  valid: boolean;
  raw: Buffer;
}

export function senseKeyName(key: number): string {
  return KEY_NAMES.get(key) ?? `0x${key.toString(16)}`;
}

export function ascDescription(asc: number, ascq: number): string {
  return ASC_NAMES.get((asc << 8) | ascq) ?? `ASC 0x${asc.toString(16).padStart(2, '0')} ASCQ 0x${ascq.toString(16).padStart(2, '0')}`;
}

function readInformation(b: Buffer, off: number, len: 4 | 8): number {
  if (len === 4) return b.readUInt32BE(off);
  const v = b.readBigUInt64BE(off);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Number.MAX_SAFE_INTEGER;
}

export function decodeSense(raw: Buffer): SenseData {
  const out: SenseData = { responseCode: 0, format: 'unknown', current: true, key: 0, keyName: 'NO_SENSE', asc: 0, ascq: 0, description: '', information: null, senseKeySpecific: null, valid: false, raw };
  if (raw.length < 1) return finish(out);
  const rc = raw[0]! & 0x7f;
  out.responseCode = rc;
  out.current = rc === 0x70 || rc === 0x72;
  if (rc === 0x70 || rc === 0x71) {
    out.format = 'fixed';
    if (raw.length < 8) return finish(out);
    out.key = raw[2]! & 0x0f;
    const end = Math.min(raw.length, 8 + raw[7]!);
    if ((raw[0]! & 0x80) !== 0) out.information = readInformation(raw, 3, 4);
    if (end >= 14) {
      out.asc = raw[12]!;
      out.ascq = raw[13]!;
    }
    if (end >= 18 && (raw[15]! & 0x80) !== 0) out.senseKeySpecific = Buffer.from(raw.subarray(15, 18));
    out.valid = end >= 14;
    return finish(out);
  }
  if (rc === 0x72 || rc === 0x73) {
    out.format = 'descriptor';
    if (raw.length < 8) return finish(out);
    out.key = raw[1]! & 0x0f;
    out.asc = raw[2]!;
    out.ascq = raw[3]!;
    out.valid = true;
    const end = Math.min(raw.length, 8 + raw[7]!);
    for (let off = 8; off + 2 <= end; ) {
      const type = raw[off]!;
      const len = raw[off + 1]!;
      if (off + 2 + len > end) break;
      if (type === 0x00 && len >= 0x0a && (raw[off + 2]! & 0x80) !== 0) out.information = readInformation(raw, off + 4, 8);
      if (type === 0x02 && len >= 6 && (raw[off + 4]! & 0x80) !== 0) out.senseKeySpecific = Buffer.from(raw.subarray(off + 4, off + 7));
      off += 2 + len;
    }
    return finish(out);
  }
  return finish(out);
}

function finish(s: SenseData): SenseData {
  s.keyName = senseKeyName(s.key);
  s.description = ascDescription(s.asc, s.ascq);
  return s;
}

/** One line for logs and error messages: `ILLEGAL_REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE`. */
export function describeSense(s: SenseData | null): string {
  return s ? `${s.keyName}: ${s.description}` : 'no sense data';
}
