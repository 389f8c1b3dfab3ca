/**
 * The limits a logical unit advertises (VPD B0h, SBC-3 6.6.3) and enforces: every transfer,
 * unmap and write-same is checked against them before any I/O, which bounds every buffer.
 */

export interface BlockLimits {
  /** MAXIMUM TRANSFER LENGTH, blocks (READ/WRITE/VERIFY/ORWRITE...). */
  maxTransferBlocks: number;
  /** OPTIMAL TRANSFER LENGTH, blocks. */
  optimalTransferBlocks: number;
  /** MAXIMUM COMPARE AND WRITE LENGTH, blocks (1..255). */
  maxCompareAndWriteBlocks: number;
  /** MAXIMUM UNMAP LBA COUNT (per UNMAP command). */
  maxUnmapBlocks: number;
  /** MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT. */
  maxUnmapDescriptors: number;
  /** OPTIMAL UNMAP GRANULARITY, blocks. */
  unmapGranularityBlocks: number;
  /** MAXIMUM WRITE SAME LENGTH, blocks. */
  maxWriteSameBlocks: number;
}

/** Bytes one command may move at most (Data-In or Data-Out): 8 MiB. */
export const MAX_TRANSFER_BYTES = 8 * 1024 * 1024;

export function defaultBlockLimits(blockSize: number, unmapGranuleBytes: number): BlockLimits {
  return {
    maxTransferBlocks: MAX_TRANSFER_BYTES / blockSize,
    optimalTransferBlocks: (1024 * 1024) / blockSize,
    maxCompareAndWriteBlocks: 255,
    maxUnmapBlocks: Math.min(1 << 20, (1024 * 1024 * 1024) / blockSize),
    maxUnmapDescriptors: 1024,
    unmapGranularityBlocks: Math.max(1, Math.floor(unmapGranuleBytes / blockSize)),
    // A 2-byte count: larger ranges go through UNMAP. (Initiators that size a WRITE SAME to the
    // maximum also tend to read and write that many blocks in one command: 64 Ki blocks would
    // exceed MAXIMUM TRANSFER LENGTH.)
    maxWriteSameBlocks: 0xffff,
  };
}

export function checkLimits(l: BlockLimits, blockSize: number): void {
  const bad = (what: string) => {
    throw new RangeError(`block limits: ${what}`);
  };
  if (!(l.maxTransferBlocks >= 1 && l.maxTransferBlocks * blockSize <= MAX_TRANSFER_BYTES)) bad(`maxTransferBlocks ${l.maxTransferBlocks} (at most ${MAX_TRANSFER_BYTES} bytes)`);
  if (!(l.maxCompareAndWriteBlocks >= 1 && l.maxCompareAndWriteBlocks <= 255 && l.maxCompareAndWriteBlocks <= l.maxTransferBlocks)) bad(`maxCompareAndWriteBlocks ${l.maxCompareAndWriteBlocks}`);
  if (!(l.maxUnmapBlocks >= 1 && l.maxUnmapBlocks <= 0xffffffff)) bad(`maxUnmapBlocks ${l.maxUnmapBlocks}`);
  if (!(l.maxUnmapDescriptors >= 1 && l.maxUnmapDescriptors <= 4095)) bad(`maxUnmapDescriptors ${l.maxUnmapDescriptors}`);
  if (!(l.maxWriteSameBlocks >= 1 && l.maxWriteSameBlocks <= 0xffffffff)) bad(`maxWriteSameBlocks ${l.maxWriteSameBlocks}`);
}
