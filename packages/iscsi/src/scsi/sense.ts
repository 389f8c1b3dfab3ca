/**
 * Sense data as data (tgt's sense_data_build): a SenseInfo describes the condition; the logical
 * unit formats it as fixed (70h) or descriptor (72h) sense data according to the D_SENSE bit of
 * its control mode page (SPC-4 4.5).
 */

/** Sense keys (SPC-4 table 28); the initiator decodes with the same table. */
export const SENSE_KEY = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  VENDOR_SPECIFIC: 0x9,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  VOLUME_OVERFLOW: 0xd,
  MISCOMPARE: 0xe,
} as const;

/** Additional sense code / qualifier pairs used by this target (SPC-4 Annex D). */
export const ASC = {
  NO_ADDITIONAL_SENSE: [0x00, 0x00],
  LUN_NOT_READY_INITIALIZING_COMMAND_REQUIRED: [0x04, 0x02],
  WRITE_ERROR: [0x0c, 0x00],
  UNRECOVERED_READ_ERROR: [0x11, 0x00],
  PARAMETER_LIST_LENGTH_ERROR: [0x1a, 0x00],
  MISCOMPARE_DURING_VERIFY: [0x1d, 0x00],
  INVALID_COMMAND_OPERATION_CODE: [0x20, 0x00],
  LBA_OUT_OF_RANGE: [0x21, 0x00],
  INVALID_FIELD_IN_CDB: [0x24, 0x00],
  LOGICAL_UNIT_NOT_SUPPORTED: [0x25, 0x00],
  INVALID_FIELD_IN_PARAMETER_LIST: [0x26, 0x00],
  INVALID_RELEASE_OF_PERSISTENT_RESERVATION: [0x26, 0x04],
  WRITE_PROTECTED: [0x27, 0x00],
  POWER_ON_RESET: [0x29, 0x00],
  POWER_ON_OCCURRED: [0x29, 0x01],
  BUS_DEVICE_RESET: [0x29, 0x03],
  I_T_NEXUS_LOSS: [0x29, 0x07],
  MODE_PARAMETERS_CHANGED: [0x2a, 0x01],
  RESERVATIONS_PREEMPTED: [0x2a, 0x03],
  RESERVATIONS_RELEASED: [0x2a, 0x04],
  REGISTRATIONS_PREEMPTED: [0x2a, 0x05],
  CAPACITY_DATA_CHANGED: [0x2a, 0x09],
  COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: [0x2f, 0x00],
  SAVING_PARAMETERS_NOT_SUPPORTED: [0x39, 0x00],
  MEDIUM_NOT_PRESENT: [0x3a, 0x00],
  REPORTED_LUNS_DATA_HAS_CHANGED: [0x3f, 0x0e],
  INTERNAL_TARGET_FAILURE: [0x44, 0x00],
  MEDIUM_REMOVAL_PREVENTED: [0x53, 0x02],
  INSUFFICIENT_REGISTRATION_RESOURCES: [0x55, 0x04],
} as const satisfies Record<string, readonly [number, number]>;

export type AscPair = readonly [number, number];

/** Where in the CDB or parameter list the offending field is (sense-key specific, SPC-4 4.5.2.4.2). */
export interface FieldPointer {
  /** true: the field is in the CDB; false: in the parameter data. */
  cdb: boolean;
  byte: number;
  bit?: number;
}

export interface SenseInfo {
  key: number;
  asc: number;
  ascq: number;
  /** INFORMATION field (VALID bit set): e.g. the miscompare offset of COMPARE AND WRITE. */
  information?: number;
  /** Incorrect length indicator. */
  ili?: boolean;
  field?: FieldPointer;
}

export function senseInfo(key: number, asc: AscPair, extra?: Omit<SenseInfo, 'key' | 'asc' | 'ascq'>): SenseInfo {
  return { key, asc: asc[0], ascq: asc[1], ...extra };
}

export const FIXED_SENSE_BYTES = 18;

/** Fixed format sense data (70h, current error), 18 bytes. */
export function fixedSense(s: SenseInfo): Buffer {
  const b = Buffer.alloc(FIXED_SENSE_BYTES);
  b[0] = 0x70 | (s.information !== undefined ? 0x80 : 0);
  b[2] = (s.key & 0x0f) | (s.ili ? 0x20 : 0);
  if (s.information !== undefined) b.writeUInt32BE(s.information >>> 0, 3); // low 32 bits, as fixed format allows
  b[7] = FIXED_SENSE_BYTES - 8;
  b[12] = s.asc;
  b[13] = s.ascq;
  if (s.field) writeFieldPointer(b, 15, s.field);
  return b;
}

/** Descriptor format sense data (72h, current error) with information, sense-key specific and block command descriptors. */
export function descriptorSense(s: SenseInfo): Buffer {
  const parts: Buffer[] = [];
  if (s.information !== undefined) {
    const d = Buffer.alloc(12);
    d[0] = 0x00; // information descriptor
    d[1] = 0x0a;
    d[2] = 0x80; // VALID
    d.writeBigUInt64BE(BigInt(s.information), 4);
    parts.push(d);
  }
  if (s.field) {
    const d = Buffer.alloc(8);
    d[0] = 0x02; // sense key specific descriptor
    d[1] = 0x06;
    writeFieldPointer(d, 4, s.field);
    parts.push(d);
  }
  if (s.ili) {
    const d = Buffer.alloc(4);
    d[0] = 0x05; // block commands descriptor
    d[1] = 0x02;
    d[3] = 0x20; // ILI
    parts.push(d);
  }
  const body = Buffer.concat(parts);
  const h = Buffer.alloc(8);
  h[0] = 0x72;
  h[1] = s.key & 0x0f;
  h[2] = s.asc;
  h[3] = s.ascq;
  h[7] = body.length;
  return Buffer.concat([h, body]);
}

export function buildSense(s: SenseInfo, descriptorFormat: boolean): Buffer {
  return descriptorFormat ? descriptorSense(s) : fixedSense(s);
}

function writeFieldPointer(b: Buffer, at: number, f: FieldPointer): void {
  b[at] = 0x80 | (f.cdb ? 0x40 : 0) | (f.bit !== undefined ? 0x08 | (f.bit & 0x07) : 0); // SKSV, C/D, BPV, bit pointer
  b.writeUInt16BE(f.byte & 0xffff, at + 1);
}

/** Parse sense data of either format (used by tests and the initiator). */
export function parseSense(b: Buffer): SenseInfo & { descriptor: boolean } {
  const code = b[0]! & 0x7f;
  if (code === 0x72 || code === 0x73) {
    const out: SenseInfo & { descriptor: boolean } = { descriptor: true, key: b[1]! & 0x0f, asc: b[2]!, ascq: b[3]! };
    let p = 8;
    const end = Math.min(b.length, 8 + b[7]!);
    while (p + 2 <= end) {
      const type = b[p]!;
      const len = b[p + 1]!;
      if (type === 0x00 && len >= 0x0a) out.information = Number(b.readBigUInt64BE(p + 4));
      if (type === 0x02 && len >= 6 && b[p + 4]! & 0x80) out.field = readFieldPointer(b, p + 4);
      if (type === 0x05 && len >= 2 && b[p + 3]! & 0x20) out.ili = true;
      p += 2 + len;
    }
    return out;
  }
  const out: SenseInfo & { descriptor: boolean } = { descriptor: false, key: b[2]! & 0x0f, asc: b[12] ?? 0, ascq: b[13] ?? 0 };
  if (b[0]! & 0x80) out.information = b.readUInt32BE(3);
  if (b[2]! & 0x20) out.ili = true;
  if (b.length >= 18 && b[15]! & 0x80) out.field = readFieldPointer(b, 15);
  return out;
}

function readFieldPointer(b: Buffer, at: number): FieldPointer {
  const f: FieldPointer = { cdb: (b[at]! & 0x40) !== 0, byte: b.readUInt16BE(at + 1) };
  if (b[at]! & 0x08) f.bit = b[at]! & 0x07;
  return f;
}
