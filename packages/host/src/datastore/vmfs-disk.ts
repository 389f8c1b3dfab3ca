/**
 * A virtual disk whose bytes are a VMFS file: the data extent of a VM's .vmdk
 * (`<vm>/<vm>-flat.vmdk`), opened with an exclusive lock so that no other host can run the VM
 * while this one does. The bottom of the guest disk path:
 *
 *   guest -> VMM disk device -> VirtualDiskService -> VmfsDiskBackend -> VmfsFile
 *         -> IscsiBlockDevice -> iSCSI initiator -> target -> LUN file
 *
 * The extent is thin: its size is set at creation, blocks are allocated on first write. A
 * write resolves when VMFS (and the target under it) acknowledged it, flush() when the target
 * synced (SYNCHRONIZE CACHE). When the host loses the file's lock (its heartbeat went stale, or
 * another host broke the lock after the lease), every later call fails with LOCK_LOST and the
 * guest sees an I/O error: the VM must not write one more byte to a disk another host may own.
 */
import { EsxError } from '@esxemu/shared';
import type { DiskBackend } from '../vmkernel/virtual-disk.js';
import type { Vmfs, VmfsFile } from '../vmfs/index.js';

export class VmfsDiskBackend implements DiskBackend {
  private constructor(
    private readonly file: VmfsFile,
    readonly sizeBytes: number,
  ) {}

  /** Open the extent exclusively (FILE_LOCKED when another host holds it). */
  static async open(fs: Vmfs, path: string, sizeBytes: number): Promise<VmfsDiskBackend> {
    const file = await fs.open(path, 'exclusive');
    if (file.size < sizeBytes) {
      await file.close().catch(() => undefined);
      throw new EsxError('CORRUPT', `${path} holds ${file.size} bytes, less than the ${sizeBytes}-byte disk its descriptor declares`);
    }
    return new VmfsDiskBackend(file, sizeBytes);
  }

  get path(): string {
    return this.file.path;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.file.read(offset, length);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.file.write(offset, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  }

  flush(): Promise<void> {
    return this.file.flush();
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
