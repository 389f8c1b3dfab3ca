/**
 * CDB field decoding. Big-endian fields; 64-bit LBAs become numbers (exact below 2^53, and any
 * larger value is beyond every LUN this target can hold, so it still fails the range check).
 */

export function be16(b: Buffer, at: number): number {
  return b.readUInt16BE(at);
}

export function be24(b: Buffer, at: number): number {
  return (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
}

export function be32(b: Buffer, at: number): number {
  return b.readUInt32BE(at);
}

export function be64(b: Buffer, at: number): number {
  return Number(b.readBigUInt64BE(at));
}

/** CDB length implied by the group code of the operation code (SPC-4 4.2.5.1), or 0 if vendor/reserved. */
export function cdbLengthOf(opcode: number): number {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return 0;
  }
}

export interface LbaRange {
  lba: number;
  blocks: number;
}

/**
 * LBA and length of a block command by CDB size: 6-byte (21-bit LBA, 0 means 256 blocks),
 * 10-byte (32-bit LBA, 16-bit length), 12-byte (32/32) and 16-byte (64/32).
 */
export function lbaRange(cdb: Buffer): LbaRange {
  switch (cdbLengthOf(cdb[0]!)) {
    case 6:
      return { lba: ((cdb[1]! & 0x1f) << 16) | be16(cdb, 2), blocks: cdb[4] === 0 ? 256 : cdb[4]! };
    case 10:
      return { lba: be32(cdb, 2), blocks: be16(cdb, 7) };
    case 12:
      return { lba: be32(cdb, 2), blocks: be32(cdb, 6) };
    default:
      return { lba: be64(cdb, 2), blocks: be32(cdb, 10) };
  }
}

/** Byte 1 flags common to READ/WRITE/VERIFY(10/12/16): xPROTECT, DPO, FUA. */
export function rwFlags(cdb: Buffer): { protect: number; dpo: boolean; fua: boolean } {
  if (cdbLengthOf(cdb[0]!) === 6) return { protect: 0, dpo: false, fua: false };
  const b1 = cdb[1]!;
  return { protect: b1 >> 5, dpo: (b1 & 0x10) !== 0, fua: (b1 & 0x08) !== 0 };
}

/** The service action of a CDB whose opcode carries one (low five bits of byte 1). */
export function serviceAction(cdb: Buffer): number {
  return cdb[1]! & 0x1f;
}

/** Truncate parameter data to the allocation length (never overflow it). */
export function truncateTo(data: Buffer, allocationLength: number): Buffer {
  return data.length > allocationLength ? data.subarray(0, allocationLength) : data;
}

/** Fixed-width, space-padded ASCII (INQUIRY identification fields). */
export function asciiField(s: string, width: number): Buffer {
  const b = Buffer.alloc(width, 0x20);
  b.write(s.replace(/[^\x20-\x7e]/g, '?').slice(0, width), 'latin1');
  return b;
}
