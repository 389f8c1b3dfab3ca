/**
 * Keeping the host's datastore mounted: the host starts whether or not the SAN is up, and this
 * loop connects, logs in and mounts in the background with bounded exponential backoff, as an
 * ESX host rescans its adapters. A mount that fences itself (its heartbeat could not be proven
 * within the lease: the host was frozen or cut off) is unmounted and mounted again; the VMs
 * that held files there have already failed their I/O with LOCK_LOST.
 *
 *   mounting --connect+mount ok--> mounted --fenced / session lost--> mounting
 *      ^  |                                                              |
 *      |  +--error (NOT_FORMATTED, TARGET_UNREACHABLE...)--> error --backoff--+
 *
 * status() is what the host reports to vcenter (refreshed by refresh() on the stats tick).
 */
import { Backoff, EsxError, toEsxError, type DatastoreStatus, type Logger, type VmConfig } from '@esxemu/shared';
import type { VmStorageLease } from '../vmkernel/virtual-disk.js';
import { Datastore, type DatastoreOptions } from './datastore.js';

export class DatastoreMount {
  private ds: Datastore | null = null;
  private st: DatastoreStatus;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private connecting: Promise<void> | null = null;
  private readonly backoff = new Backoff(500, 10_000);
  private readonly log: Logger;

  constructor(private readonly o: DatastoreOptions) {
    this.log = o.logger;
    this.st = { url: o.url, state: 'mounting', name: null, uuid: null, capacityBytes: null, freeBytes: null, liveHosts: [], error: null };
  }

  start(): void {
    this.attempt();
  }

  get current(): Datastore | null {
    return this.ds;
  }

  status(): DatastoreStatus {
    return { ...this.st, liveHosts: [...this.st.liveHosts] };
  }

  /** The datastore, or INVALID_STATE saying why there is none right now. */
  require(): Datastore {
    if (this.ds) return this.ds;
    throw new EsxError('INVALID_STATE', `the datastore ${this.o.url} is not mounted on this host (${this.st.state}${this.st.error ? `: ${this.st.error}` : ''})`);
  }

  /** Update capacity and live hosts; notice a fenced mount and remount. */
  async refresh(): Promise<void> {
    const ds = this.ds;
    if (!ds) return;
    try {
      const i = await ds.info();
      if (i.fenced) {
        this.log.error({ why: i.fenced }, 'datastore mount fenced: its locks may be gone; mounting again');
        this.lost(`fenced: ${i.fenced}`);
        return;
      }
      this.st = { ...this.st, state: 'mounted', name: i.name, uuid: i.uuid, capacityBytes: i.capacityBytes, freeBytes: i.freeBytes, liveHosts: i.liveHosts, error: null };
    } catch (err) {
      this.st = { ...this.st, error: toEsxError(err).message };
    }
  }

  /** The VMkernel's storage hook: a VM's locks and disk, when its files are on the datastore. */
  async attach(c: VmConfig): Promise<VmStorageLease> {
    const ds = this.require();
    return ds.powerOn(c);
  }

  private attempt(): void {
    if (this.closed || this.connecting) return;
    this.connecting = (async () => {
      try {
        const ds = await Datastore.connect(this.o);
        if (this.closed) {
          await ds.close();
          return;
        }
        this.ds = ds;
        this.backoff.reset();
        this.st = { ...this.st, state: 'mounted', error: null };
        await this.refresh();
        this.log.info({ url: this.o.url, name: ds.name, hostId: ds.fs.hostId }, `datastore ${ds.name} mounted`);
      } catch (err) {
        const e = toEsxError(err);
        const delay = this.backoff.next();
        this.st = { ...this.st, state: 'error', error: `${e.code}: ${e.message}` };
        this.log.warn({ url: this.o.url, code: e.code, err: e.message, retryMs: delay }, 'datastore not mounted; retrying');
        this.timer = setTimeout(() => {
          this.timer = null;
          this.attempt();
        }, delay);
        this.timer.unref();
      } finally {
        this.connecting = null;
      }
    })();
  }

  private lost(why: string): void {
    const ds = this.ds;
    this.ds = null;
    this.st = { ...this.st, state: 'mounting', error: why };
    void (async () => {
      // Not unmount: a fenced host must not write one more sector (its slot may be reclaimed).
      await ds?.abandon();
      this.attempt();
    })();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.connecting?.catch(() => undefined);
    const ds = this.ds;
    this.ds = null;
    await ds?.close();
  }
}
