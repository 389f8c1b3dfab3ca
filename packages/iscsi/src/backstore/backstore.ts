/**
 * A backing store: where a LUN's blocks live (tgt's bs_rdwr / bs_null). Pluggable; a memory
 * store is one small file. Offsets and lengths are in bytes, always multiples of blockSize and
 * within sizeBytes (the SCSI layer checks the LBA range before calling).
 */
export interface Backstore {
  readonly kind: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  /** Whether unmap() deallocates (thin provisioning): drives the LBPME bit and VPD B2. */
  readonly thin: boolean;
  /** Allocation granularity of unmap(), bytes (advertised as OPTIMAL UNMAP GRANULARITY); blockSize when absent. */
  readonly granuleBytes?: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Resolves only once the data is in the store; with fua, once it is on stable storage. */
  write(offset: number, data: Buffer, opts?: { fua?: boolean }): Promise<void>;
  /** Make every completed write durable (fdatasync for files). */
  flush(): Promise<void>;
  /** Deallocate; later reads return zeros. */
  unmap(offset: number, length: number): Promise<void>;
  /** Is this range mapped (allocated)? For GET LBA STATUS: runs of [offset, length, mapped]. */
  mapping(offset: number, length: number): Promise<{ offset: number; length: number; mapped: boolean }[]>;
  close(): Promise<void>;
}
