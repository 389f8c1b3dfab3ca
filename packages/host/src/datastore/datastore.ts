/**
 * The host's view of the shared datastore: its software iSCSI adapter logged in to the target,
 * the LUN as a block device, the VMFS mount (heartbeat slot, locks, journal), and the VM file
 * operations the host does for vcenter and for its own VMs (vm-files.ts has the layout).
 *
 *   connect: IscsiInitiator -> IscsiBlockDevice -> mount(hostId 'auto' by host name)
 *   VM files: createVm (folder, .vmx, .vmdk descriptor + thin -flat extent), readVmx (register
 *             from a path on any host), deleteVm (files gone, refused while any is locked)
 *   power-on: take the VM's run lock (its .vswp, created exclusive) and its disk extent
 *             (exclusive), append to vmware.log; power-off undoes it. A VM whose files are
 *             locked by another live host cannot power on here: FILE_LOCKED with the holder.
 *
 * Everything on the datastore may be wrong (another host or a user wrote it): parsing is in
 * vm-files.ts and fails with CORRUPT; the VMFS layer checks every sector it reads.
 */
import { IscsiInitiator, parseIscsiUrl } from '@esxemu/iscsi';
import { EsxError, toEsxError, type Logger, type VmConfig } from '@esxemu/shared';
import { IscsiBlockDevice, mount, type HeartbeatSettings, type Vmfs, type VmfsFile } from '../vmfs/index.js';
import { VmfsDiskBackend } from './vmfs-disk.js';
import { datastorePath, encodeVmdkDescriptor, encodeVmx, parseDatastorePath, parseVmdkDescriptor, parseVmx, vmPaths } from './vm-files.js';

export interface DatastoreOptions {
  /** iscsi://host:port/iqn/lun of the LUN that holds the datastore. */
  url: string;
  hostName: string;
  /** Heartbeat slot; default: claimed by host name. */
  hostId?: number | 'auto';
  /** COMPARE AND WRITE for locks and heartbeats (default true); false: SCSI reservations. */
  ats?: boolean;
  heartbeat?: Partial<HeartbeatSettings>;
  logger: Logger;
}

export interface DatastoreInfo {
  name: string;
  uuid: string;
  url: string;
  capacityBytes: number;
  freeBytes: number;
  /** Host names whose heartbeat this host sees as live (itself included). */
  liveHosts: string[];
  /** Set when this host lost its locks (fenced) and must remount. */
  fenced: string | null;
}

/** What a running VM holds on the datastore; release() at power-off. */
export interface VmDatastoreLease {
  disk: VmfsDiskBackend | null;
  release(): Promise<void>;
}

export class Datastore {
  readonly url: string;
  readonly fs: Vmfs;
  private readonly init: IscsiInitiator;
  private readonly log: Logger;

  private constructor(url: string, init: IscsiInitiator, fs: Vmfs, log: Logger) {
    this.url = url;
    this.init = init;
    this.fs = fs;
    this.log = log;
  }

  static async connect(o: DatastoreOptions): Promise<Datastore> {
    const u = parseIscsiUrl(o.url);
    const init = await IscsiInitiator.connect({
      portal: u.portal,
      targetName: u.targetName,
      initiatorName: `iqn.2026-11.io.esxemu:${o.hostName.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`,
      initiatorAlias: o.hostName,
      logger: o.logger.child({ component: 'vmhba' }),
    });
    try {
      const dev = await IscsiBlockDevice.open(init, { lun: u.lun, ats: o.ats ?? true, name: o.hostName });
      const fs = await mount(dev, { hostId: o.hostId ?? 'auto', hostName: o.hostName, logger: o.logger.child({ component: 'vmfs' }), ...o.heartbeat });
      return new Datastore(o.url, init, fs, o.logger);
    } catch (err) {
      await init.close().catch(() => undefined);
      throw err;
    }
  }

  get name(): string {
    return this.fs.superblock.label;
  }

  async info(): Promise<DatastoreInfo> {
    const df = await this.fs.df();
    return {
      name: df.label,
      uuid: df.uuid,
      url: this.url,
      capacityBytes: df.capacityBytes,
      freeBytes: df.freeBytes,
      liveHosts: this.fs.liveHosts().map((h) => h.name),
      fenced: this.fs.fenced,
    };
  }

  /** Write a new VM's folder and files; returns the .vmx as a datastore path. */
  async createVm(c: VmConfig): Promise<string> {
    const p = vmPaths(c.name);
    if (await this.fs.exists(p.dir)) throw new EsxError('NAME_IN_USE', `the datastore already holds a folder ${p.dir}`);
    await this.fs.mkdir(p.dir);
    try {
      if (c.diskMiB !== undefined) {
        const size = c.diskMiB * 1024 * 1024;
        const flat = await this.fs.open(p.flat, 'exclusive', { create: true });
        try {
          await flat.truncate(size);
        } finally {
          await flat.close();
        }
        await this.fs.writeFile(p.vmdk, encodeVmdkDescriptor(c.name, size));
      }
      await this.fs.writeFile(p.vmx, encodeVmx(c));
      await this.appendLog(c.name, `created (${c.memoryMiB} MiB, ${c.vcpus} vCPU${c.diskMiB ? `, ${c.diskMiB} MiB disk` : ''})`);
    } catch (err) {
      await this.removeFolder(c.name).catch(() => undefined);
      throw err;
    }
    return datastorePath(this.name, p.vmx);
  }

  /** The configuration in a .vmx ("[datastore1] vm1/vm1.vmx" or "vm1/vm1.vmx"). */
  async readVmx(path: string): Promise<VmConfig> {
    const p = parseDatastorePath(path);
    return parseVmx(await this.fs.readFile(p), p);
  }

  /** Remove a powered-off VM's files (FILE_LOCKED while a host holds any of them). */
  async deleteVm(name: string): Promise<void> {
    if (!(await this.fs.exists(name))) return;
    await this.removeFolder(name);
  }

  private async removeFolder(name: string): Promise<void> {
    for (const e of await this.fs.readdir(name)) {
      const path = `${name}/${e.name}`;
      const lock = await this.fs.lockInfo(path);
      if (lock.mode !== 'free' && lock.holders.some((h) => h.liveness === 'alive')) {
        throw new EsxError('FILE_LOCKED', `${path} is locked by ${lock.holders.map((h) => h.hostName).join(', ')}`, { path, holders: lock.holders.map((h) => h.hostName) });
      }
    }
    for (const e of await this.fs.readdir(name)) await this.fs.unlink(`${name}/${e.name}`);
    await this.fs.rmdir(name);
  }

  /**
   * Take what a running VM holds: its .vswp (the run lock) and its disk extent, both
   * exclusive. FILE_LOCKED (nothing kept) when another host runs the VM.
   */
  async powerOn(c: VmConfig): Promise<VmDatastoreLease> {
    const p = vmPaths(c.name);
    if (!(await this.fs.exists(p.vmx))) throw new EsxError('NOT_FOUND', `${datastorePath(this.name, p.vmx)} does not exist: the VM's files are not on this datastore`);
    let swap: VmfsFile | null = null;
    let disk: VmfsDiskBackend | null = null;
    try {
      swap = await this.fs.open(p.vswp, 'exclusive', { create: true });
      if (c.diskMiB !== undefined) {
        const { extent, sizeBytes } = parseVmdkDescriptor(await this.fs.readFile(p.vmdk), p.vmdk);
        if (sizeBytes !== c.diskMiB * 1024 * 1024) throw new EsxError('CORRUPT', `${p.vmdk} declares ${sizeBytes} bytes, the VM's configuration ${c.diskMiB} MiB`);
        disk = await VmfsDiskBackend.open(this.fs, `${p.dir}/${extent}`, sizeBytes);
      }
      await this.appendLog(c.name, 'power on');
    } catch (err) {
      await disk?.close().catch(() => undefined);
      if (swap) {
        await swap.close().catch(() => undefined);
        await this.fs.unlink(p.vswp).catch(() => undefined);
      }
      throw err;
    }
    const s = swap;
    let released = false;
    return {
      disk,
      release: async () => {
        if (released) return;
        released = true;
        // The disk backend is closed by the VM's disk service; the run lock goes last.
        await this.appendLog(c.name, 'power off').catch((err: unknown) => this.log.warn({ vm: c.name, err: toEsxError(err).message }, 'vmware.log not written'));
        await s.close().catch(() => undefined);
        await this.fs.unlink(p.vswp).catch((err: unknown) => this.log.warn({ vm: c.name, err: toEsxError(err).message }, '.vswp not removed'));
      },
    };
  }

  /** Append a timestamped line to the VM's vmware.log (bounded: the last 256 KiB are kept). */
  private async appendLog(name: string, line: string): Promise<void> {
    const path = vmPaths(name).log;
    const old = (await this.fs.exists(path)) ? await this.fs.readFile(path) : Buffer.alloc(0);
    const next = Buffer.concat([old, Buffer.from(`${new Date().toISOString()} ${this.fs.hostName}| ${line}\n`)]);
    await this.fs.writeFile(path, next.length > 256 * 1024 ? next.subarray(next.length - 256 * 1024) : next);
  }

  /** Drop the mount without writing anything (fenced: our locks may belong to others now). */
  async abandon(): Promise<void> {
    this.fs.abandon();
    await this.init.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    try {
      await this.fs.unmount();
    } catch (err) {
      this.log.warn({ err: toEsxError(err).message }, 'datastore unmount failed');
    }
    await this.init.close().catch(() => undefined);
  }
}
