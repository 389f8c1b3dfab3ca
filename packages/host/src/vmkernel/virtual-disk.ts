/**
 * The VMkernel's side of a VM's virtual disk: it serves the VMM's disk calls (disk-protocol.ts)
 * from a DiskBackend, the VM's .vmdk extent on the datastore (a VMFS file over the iSCSI
 * initiator) or, for a host without a datastore, a local file.
 *
 *   guest write -> VMM disk device -> [port] -> VirtualDiskService -> backend.write
 *        <- completion <- reply <------------------------------- once the backend resolved
 *
 * The reply to a write leaves only after the backend acknowledged it, and a flush after the
 * backend's flush (SYNCHRONIZE CACHE at the bottom), so the guest is never told more than the
 * layers below have done. Calls are checked again here (extent, alignment, size, data length):
 * a bad one is answered INVALID_ARGUMENT and never reaches the backend. At most `maxInflight`
 * calls run at once; more wait in a bounded queue, beyond which they are answered BUSY-style
 * with INSUFFICIENT_RESOURCES (the VMM's own queue depth keeps that from happening).
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { MessagePort } from 'node:worker_threads';
import { MAX_DISK_REQUEST_BYTES, SECTOR_BYTES } from '@esxemu/guest';
import { EsxError, toEsxError, type Logger, type VmConfig } from '@esxemu/shared';
import { isDiskCall, PostBatch, whole, type DiskCall, type DiskReply } from './disk-protocol.js';

/** Where a virtual disk's bytes live. */
export interface DiskBackend {
  readonly sizeBytes: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Resolves once the layer below acknowledged the write. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Resolves once every acknowledged write is durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What a VM holds on its host's storage while it runs: its disk (when it has one) and whatever
 * else says "this VM runs here" (on a datastore: the locks of its .vswp and disk extent).
 * Taken at power-on, released after the VM's worker is gone.
 */
export interface VmStorageLease {
  disk: DiskBackend | null;
  release(): Promise<void>;
}

/** Where a host keeps its VMs' files: attach() at power-on, FILE_LOCKED when another host runs the VM. */
export type AttachStorage = (config: VmConfig) => Promise<VmStorageLease>;

/** Storage for a host whose VMs' disks are plain backends (no locks besides the backend's own). */
export function diskOnlyStorage(openDisk: (config: VmConfig) => Promise<DiskBackend>): AttachStorage {
  return async (c) => ({ disk: c.diskMiB === undefined ? null : await openDisk(c), release: async () => undefined });
}

export interface VirtualDiskStats {
  reads: number;
  writes: number;
  flushes: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
  refused: number;
}

export class VirtualDiskService {
  private readonly port: MessagePort;
  private readonly backend: DiskBackend;
  private readonly log: Logger;
  private readonly maxInflight: number;
  private readonly maxQueued: number;
  private running = 0;
  private readonly queue: DiskCall[] = [];
  private idle: (() => void) | null = null;
  private closed = false;
  /** Replies of one burst of completions, posted together. */
  private readonly outbox: PostBatch<DiskReply>;
  private readonly onError: ((op: DiskCall['op'], err: EsxError) => void) | null;
  readonly stats: VirtualDiskStats = { reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0, errors: 0, refused: 0 };

  constructor(port: MessagePort, backend: DiskBackend, o: { log: Logger; maxInflight?: number; maxQueued?: number; onError?: (op: DiskCall['op'], err: EsxError) => void }) {
    this.onError = o.onError ?? null;
    this.port = port;
    this.outbox = new PostBatch((m, transfer) => {
      if (!this.closed) this.port.postMessage(m, transfer);
    });
    this.backend = backend;
    this.log = o.log;
    this.maxInflight = o.maxInflight ?? 32;
    this.maxQueued = o.maxQueued ?? 256;
    port.on('message', (m: unknown) => {
      if (!Array.isArray(m)) return this.onCall(m);
      // A batch is at most a queue depth of calls; a larger one is not from our VMM.
      if (m.length > this.maxQueued) {
        this.stats.refused += m.length;
        this.log.warn({ calls: m.length }, 'oversized batch of disk calls from the VMM dropped');
        return;
      }
      for (const c of m) this.onCall(c);
    });
  }

  get sizeBytes(): number {
    return this.backend.sizeBytes;
  }

  private onCall(m: unknown): void {
    if (this.closed) return;
    if (!isDiskCall(m)) {
      this.stats.refused++;
      this.log.warn({ msg: JSON.stringify(m)?.slice(0, 200) }, 'malformed disk call from the VMM dropped');
      return;
    }
    const bad = this.check(m);
    if (bad) {
      this.stats.refused++;
      return this.reply({ tag: m.tag, ok: false, error: { code: 'INVALID_ARGUMENT', message: bad } });
    }
    if (this.running >= this.maxInflight) {
      if (this.queue.length >= this.maxQueued) {
        this.stats.refused++;
        return this.reply({ tag: m.tag, ok: false, error: { code: 'INSUFFICIENT_RESOURCES', message: `disk queue full (${this.maxQueued})` } });
      }
      this.queue.push(m);
      return;
    }
    void this.run(m);
  }

  private check(c: DiskCall): string | null {
    if (c.op === 'flush') return null;
    if (c.offset < 0 || c.length <= 0 || c.offset % SECTOR_BYTES !== 0 || c.length % SECTOR_BYTES !== 0) return `bad extent [${c.offset}, +${c.length})`;
    if (c.length > MAX_DISK_REQUEST_BYTES) return `${c.length} bytes in one call, more than ${MAX_DISK_REQUEST_BYTES}`;
    if (c.offset + c.length > this.backend.sizeBytes) return `extent [${c.offset}, +${c.length}) beyond the end of the ${this.backend.sizeBytes}-byte disk`;
    if (c.op === 'write' && c.data?.length !== c.length) return `write of ${c.length} bytes with ${c.data?.length ?? 0} bytes of data`;
    return null;
  }

  private async run(c: DiskCall): Promise<void> {
    this.running++;
    let reply: DiskReply;
    try {
      switch (c.op) {
        case 'read': {
          const data = await this.backend.read(c.offset, c.length);
          this.stats.reads++;
          this.stats.bytesRead += data.length;
          reply = { tag: c.tag, ok: true, data };
          break;
        }
        case 'write':
          await this.backend.write(c.offset, c.data!);
          this.stats.writes++;
          this.stats.bytesWritten += c.length;
          // The backend is done with the bytes (the target has them): the buffer goes back.
          // Not after a failure: a command being retried by the initiator may still need it.
          reply = { tag: c.tag, ok: true, returned: c.data! };
          break;
        case 'flush':
          await this.backend.flush();
          this.stats.flushes++;
          reply = { tag: c.tag, ok: true };
          break;
      }
    } catch (err) {
      const e = toEsxError(err);
      this.stats.errors++;
      this.log.debug({ op: c.op, offset: c.offset, length: c.length, err: e.message, code: e.code }, 'virtual disk I/O failed');
      reply = { tag: c.tag, ok: false, error: { code: e.code, message: e.message } };
      this.onError?.(c.op, e);
    }
    this.running--;
    this.reply(reply);
    const next = this.queue.shift();
    if (next && !this.closed) void this.run(next);
    if (this.running === 0 && this.queue.length === 0) this.idle?.();
  }

  private reply(r: DiskReply): void {
    if (this.closed) return;
    if (r.data) {
      const copy = whole(r.data) ? r.data : new Uint8Array(r.data);
      this.outbox.push({ ...r, data: copy }, copy.buffer as ArrayBuffer);
    } else if (r.returned && whole(r.returned)) {
      this.outbox.push(r, r.returned.buffer as ArrayBuffer);
    } else {
      const { returned: _dropped, ...rest } = r;
      this.outbox.push(rest);
    }
  }

  /**
   * Stop taking calls, wait (bounded) for the running ones, close the port and the backend.
   * Queued calls that never ran are dropped: the VM is gone and nobody waits for them.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    if (this.running > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.port.close();
    await this.backend.close();
  }
}


/**
 * A virtual disk in a local sparse file: for a host without a datastore, and for tests of the
 * disk path above the datastore. Writes are acknowledged once in the file (the page cache);
 * flush() is fdatasync.
 */
export class FileDiskBackend implements DiskBackend {
  private constructor(
    private readonly fh: FileHandle,
    readonly sizeBytes: number,
  ) {}

  static async open(path: string, sizeBytes: number): Promise<FileDiskBackend> {
    if (!(Number.isInteger(sizeBytes) && sizeBytes > 0 && sizeBytes % SECTOR_BYTES === 0)) throw new EsxError('INVALID_ARGUMENT', `disk size ${sizeBytes} is not a positive multiple of ${SECTOR_BYTES}`);
    const fh = await open(path, 'r+').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return open(path, 'wx+');
      throw err;
    });
    try {
      const st = await fh.stat();
      if (st.size < sizeBytes) await fh.truncate(sizeBytes);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new FileDiskBackend(fh, sizeBytes);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead <= 0) break; // past the end of the file: zeros
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, offset + done);
      if (bytesWritten <= 0) throw new EsxError('IO_ERROR', `short write at ${offset + done}`);
      done += bytesWritten;
    }
  }

  flush(): Promise<void> {
    return this.fh.datasync();
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
