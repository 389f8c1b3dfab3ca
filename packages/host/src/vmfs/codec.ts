/**
 * Byte-level helpers shared by every on-disk record: CRC32C sealing of a sector, 64-bit
 * integers kept as JS numbers (every on-disk quantity is below 2^53), bounded UTF-8 names.
 *
 * Every metadata record is one device sector that starts with the same 8 bytes:
 *
 *   0  magic   u32 BE  four ASCII letters naming the record kind ('VLCK', 'VINO', ...)
 *   4  crc     u32 LE  CRC32C of the whole sector computed with this field zeroed
 *
 * An all-zero sector is the "never written" state of most records and decodes as an empty
 * record (a fresh LUN or a freshly zeroed block needs no initialisation pass); any other
 * content must carry the right magic and checksum or the reader reports CORRUPT.
 */
import CRC32C from 'crc-32/crc32c.js';
import { EsxError } from '@esxemu/shared';

export const CRC_OFFSET = 4;
/** Names (file and directory) are at most this many UTF-8 bytes. */
export const MAX_NAME_BYTES = 110;

export function crc32c(data: Uint8Array): number {
  return CRC32C.buf(data) >>> 0;
}

/** The four-letter tag as a u32 (big endian so that a hex dump reads the letters). */
export function magicOf(tag: string): number {
  if (tag.length !== 4) throw new Error(`magic '${tag}' must be 4 characters`);
  return Buffer.from(tag, 'latin1').readUInt32BE(0);
}

/** Write `magic` and the CRC32C of the sector (computed with the crc field zeroed). */
export function seal(sector: Buffer, magic: number): Buffer {
  sector.writeUInt32BE(magic, 0);
  sector.writeUInt32LE(0, CRC_OFFSET);
  sector.writeUInt32LE(crc32c(sector), CRC_OFFSET);
  return sector;
}

export function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export type SectorCheck = 'zero' | 'ok' | 'bad-magic' | 'bad-crc';

/** Classify a sector read from the LUN; never throws. */
export function checkSector(sector: Buffer, magic: number): SectorCheck {
  if (isZero(sector)) return 'zero';
  if (sector.readUInt32BE(0) !== magic) return 'bad-magic';
  const stored = sector.readUInt32LE(CRC_OFFSET);
  const copy = Buffer.from(sector);
  copy.writeUInt32LE(0, CRC_OFFSET);
  return crc32c(copy) === stored ? 'ok' : 'bad-crc';
}

/**
 * Verify a sector and throw CORRUPT with `what` and the LBA when it is neither zero nor a
 * valid record of this kind. Returns true for a valid record, false for an all-zero sector.
 */
export function verifySector(sector: Buffer, magic: number, what: string, lba: number): boolean {
  const c = checkSector(sector, magic);
  if (c === 'zero') return false;
  if (c === 'ok') return true;
  throw new EsxError('CORRUPT', `${what} at LBA ${lba}: ${c === 'bad-crc' ? 'checksum mismatch' : 'wrong record type'}`, { lba, what, problem: c });
}

export function writeU64(b: Buffer, v: number, off: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`u64 field out of range: ${v}`);
  b.writeUInt32LE(v % 2 ** 32, off);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), off + 4);
}

export function readU64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 2 ** 32;
}

/** Check a path component: 1..MAX_NAME_BYTES UTF-8 bytes, no '/', NUL, '.' or '..'. */
export function checkName(name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) throw new EsxError('INVALID_ARGUMENT', `name '${name}' must be 1..${MAX_NAME_BYTES} bytes`);
  if (name.includes('/') || name.includes('\0') || name === '.' || name === '..') throw new EsxError('INVALID_ARGUMENT', `invalid name '${name}'`);
  return bytes;
}

/** Split an absolute or relative datastore path into checked components ('' or '/' is the root). */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string') throw new EsxError('INVALID_ARGUMENT', 'path must be a string');
  const parts = path.split('/').filter((p) => p.length > 0);
  for (const p of parts) checkName(p);
  return parts;
}

export function ceilDiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}
