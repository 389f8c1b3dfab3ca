/**
 * A backing store in memory (tgt's bs_null with storage): a Buffer, thin at block granularity.
 * For tests and scratch LUNs; nothing survives the process.
 */
import { EsxError } from '@esxemu/shared';
import { AllocationMap, type MappingRun } from './allocation-map.js';
import type { Backstore } from './backstore.js';
import { checkIo, MAX_IO_BYTES } from './io-check.js';

/** Bound on a memory LUN: it lives in this process's heap. */
export const MAX_MEMORY_BACKSTORE_BYTES = 1024 * 1024 * 1024;

export class MemoryBackstore implements Backstore {
  readonly kind = 'memory';
  readonly thin = true;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly granuleBytes: number;
  private readonly data: Buffer;
  private readonly map: AllocationMap;
  private closed = false;

  constructor(sizeBytes: number, blockSize = 512) {
    if (sizeBytes > MAX_MEMORY_BACKSTORE_BYTES) throw new EsxError('INVALID_ARGUMENT', `memory LUN of ${sizeBytes} bytes exceeds ${MAX_MEMORY_BACKSTORE_BYTES}`);
    checkGeometry(sizeBytes, blockSize);
    this.sizeBytes = sizeBytes;
    this.blockSize = blockSize;
    this.granuleBytes = blockSize;
    this.data = Buffer.alloc(sizeBytes);
    this.map = new AllocationMap(sizeBytes, blockSize);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    return Buffer.from(this.data.subarray(offset, offset + length));
  }

  async write(offset: number, data: Buffer, _opts?: { fua?: boolean }): Promise<void> {
    this.check(offset, data.length);
    this.map.markMapped(offset, data.length);
    data.copy(this.data, offset);
  }

  async flush(): Promise<void> {
    if (this.closed) throw new EsxError('INVALID_STATE', 'backstore closed');
  }

  async unmap(offset: number, length: number): Promise<void> {
    this.check(offset, length, Number.MAX_SAFE_INTEGER);
    this.data.fill(0, offset, offset + length);
    const { first, end } = this.map.coveredGranules(offset, length);
    this.map.clear(first, end);
  }

  async mapping(offset: number, length: number): Promise<MappingRun[]> {
    this.check(offset, length, Number.MAX_SAFE_INTEGER);
    return this.map.runs(offset, length);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private check(offset: number, length: number, max = MAX_IO_BYTES): void {
    if (this.closed) throw new EsxError('INVALID_STATE', 'backstore closed');
    checkIo(this, offset, length, max);
  }
}

export function checkGeometry(sizeBytes: number, blockSize: number): void {
  if (![512, 1024, 2048, 4096].includes(blockSize)) throw new EsxError('INVALID_ARGUMENT', `block size ${blockSize} is not 512, 1024, 2048 or 4096`);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < blockSize || sizeBytes % blockSize !== 0) {
    throw new EsxError('INVALID_ARGUMENT', `LUN size ${sizeBytes} is not a positive multiple of the block size ${blockSize}`);
  }
}
