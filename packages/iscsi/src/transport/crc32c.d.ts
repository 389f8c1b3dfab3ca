declare module 'crc-32/crc32c.js' {
  /** CRC32C of a buffer; `seed` is the CRC of what came before, to chain buffers. Signed 32-bit. */
  export function buf(data: Uint8Array | number[], seed?: number): number;
  const CRC32C: { buf: typeof buf };
  export default CRC32C;
}
