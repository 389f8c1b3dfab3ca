/**
 * The virtual disk as the guest sees it: a queue of requests and a queue of completions, like
 * a virtio-blk ring. The guest submits reads, writes and flushes at its step boundaries and
 * picks completions up at later steps; nothing blocks a step. A write is complete only when
 * every layer below (VMM, VMkernel, VMFS file, iSCSI initiator, target) has acknowledged it;
 * a flush completes when everything completed before it is on the target's disk.
 *
 * Offsets and lengths are in bytes, multiples of SECTOR_BYTES. The device never throws at the
 * guest: a request it cannot take returns false from submit() (queue full: try again later),
 * and a request that fails completes with ok = false and an error code (INVALID_ARGUMENT for
 * a request out of bounds, NO_SPACE when the datastore is full, IO_ERROR, ...).
 */
export const SECTOR_BYTES = 512;
/** Largest single read or write. */
export const MAX_DISK_REQUEST_BYTES = 1024 * 1024;

export type DiskOp = 'read' | 'write' | 'flush';

export interface DiskRequest {
  /** Chosen by the guest; echoed in the completion. */
  id: number;
  op: DiskOp;
  offset: number;
  length: number;
  /** write: exactly `length` bytes. */
  data?: Uint8Array;
  /**
   * write, instead of data: `length` bytes of this value (a guest zeroing or patterning a
   * region, like SCSI WRITE SAME): no buffer to build in the guest.
   */
  fill?: number;
}

export interface DiskCompletion {
  id: number;
  ok: boolean;
  /** read: the bytes. */
  data?: Uint8Array;
  error?: { code: string; message: string };
}

export interface VirtualDisk {
  readonly sizeBytes: number;
  /** Queue a request; false when the device queue is full (nothing was queued). */
  submit(req: DiskRequest): boolean;
  /** The next completion, or null. */
  complete(): DiskCompletion | null;
}
