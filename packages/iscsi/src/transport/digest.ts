/**
 * iSCSI digests: CRC32C (Castagnoli) over the header (BHS + AHS) or the padded data segment,
 * sent least significant byte first (RFC 7143 13.1; RFC 3720 B.4: 32 zero bytes -> aa 36 91 8a).
 */
import CRC32C from 'crc-32/crc32c.js';

export function crc32c(data: Uint8Array, seed?: number): number {
  return CRC32C.buf(data, seed) >>> 0;
}

/** CRC32C over several buffers as if they were one. */
export function crc32cv(parts: readonly Uint8Array[]): number {
  let c: number | undefined;
  for (const p of parts) c = CRC32C.buf(p, c);
  return (c ?? CRC32C.buf(new Uint8Array(0))) >>> 0;
}

export function digestBytes(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(value >>> 0, 0);
  return b;
}
