/**
 * The VM's virtual disk device on the VMM side (the worker thread). The guest submits requests
 * at its step boundaries (sdk/disk.ts); the device checks them, gives each a tag of its own and
 * posts it to the VMkernel over the disk's MessagePort (disk-protocol.ts); the VMkernel's
 * answer becomes a completion the guest picks up at a later step.
 *
 * Bounds: requests in flight plus completions the guest has not taken are at most `queueDepth`
 * (submit() says false beyond). A request the device refuses (out of
 * the disk, not sector-aligned, too large, a write whose data does not match its length)
 * completes at once with INVALID_ARGUMENT: the guest sees an error, nothing reaches the disk.
 *
 * drain() waits, bounded, until nothing is in flight: power-off and the quiesce of a migration
 * stop the vCPU first, then drain, so every write the guest was told about is acknowledged.
 */
import type { MessagePort } from 'node:worker_threads';
import { MAX_DISK_REQUEST_BYTES, SECTOR_BYTES, type DiskCompletion, type DiskRequest, type VirtualDisk } from '@esxemu/guest';
import { EsxError } from '@esxemu/shared/core';
import { isDiskReply, PostBatch, whole, type DiskCall } from '../../../vmkernel/disk-protocol.js';

/** Write buffers kept for reuse, bytes at most. */
const MAX_SPARE_BYTES = 16 * 1024 * 1024;

export interface DiskDeviceOptions {
  port: MessagePort;
  sizeBytes: number;
  /** Requests in flight at most (default 32). */
  queueDepth?: number;
  /** A completion arrived (the VMM runs the guest soon: an interrupt). */
  onComplete?: () => void;
}

export class DiskDevice implements VirtualDisk {
  readonly sizeBytes: number;
  readonly queueDepth: number;
  private readonly port: MessagePort;
  /** tag -> the guest's id */
  private readonly inflight = new Map<number, number>();
  private readonly done: DiskCompletion[] = [];
  private nextTag = 1;
  private closed = false;
  private drained: (() => void) | null = null;
  private readonly onComplete: (() => void) | null;
  /** Write buffers the VMkernel gave back, by size, for the next writes (bounded). */
  private readonly spare = new Map<number, Uint8Array[]>();
  private spareBytes = 0;
  /** Calls of this turn, posted together (one message per guest step, not one per request). */
  private readonly outbox: PostBatch<DiskCall>;

  constructor(o: DiskDeviceOptions) {
    this.port = o.port;
    this.sizeBytes = o.sizeBytes;
    this.queueDepth = o.queueDepth ?? 32;
    this.onComplete = o.onComplete ?? null;
    this.outbox = new PostBatch((m, transfer) => {
      if (!this.closed) this.port.postMessage(m, transfer);
    });
    this.port.on('message', (m: unknown) => {
      if (Array.isArray(m)) for (const r of m.slice(0, 4 * this.queueDepth)) this.onReply(r);
      else this.onReply(m);
    });
  }

  get inFlight(): number {
    return this.inflight.size;
  }

  submit(req: DiskRequest): boolean {
    if (this.closed) {
      this.done.push({ id: req.id, ok: false, error: { code: 'INVALID_STATE', message: 'the disk is closed' } });
      return true;
    }
    if (this.inflight.size + this.done.length >= this.queueDepth) return false;
    const bad = this.check(req);
    if (bad) {
      this.done.push({ id: req.id, ok: false, error: { code: 'INVALID_ARGUMENT', message: bad } });
      return true;
    }
    const tag = this.nextTag++;
    this.inflight.set(tag, req.id);
    const call: DiskCall = { tag, op: req.op, offset: req.offset, length: req.length };
    if (req.op === 'write') {
      // A copy (the guest may reuse its buffer at once), into a buffer that came back from an
      // earlier write when there is one.
      const copy = this.takeSpare(req.length);
      if (req.data) copy.set(req.data);
      else copy.fill(req.fill!);
      call.data = copy;
    }
    this.outbox.push(call, call.data?.buffer as ArrayBuffer | undefined);
    return true;
  }


  complete(): DiskCompletion | null {
    return this.done.shift() ?? null;
  }

  /** Resolve once nothing is in flight; TIMEOUT after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.inflight.size === 0) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drained = null;
        reject(new EsxError('TIMEOUT', `${this.inflight.size} disk requests still in flight after ${timeoutMs} ms`));
      }, timeoutMs);
      this.drained = () => {
        clearTimeout(timer);
        this.drained = null;
        resolve();
      };
    });
  }

  /** Drop pending completions (a reset: the rebooted guest knows nothing of them). */
  forget(): void {
    this.done.length = 0;
    this.inflight.clear();
  }

  close(): void {
    this.closed = true;
    this.port.close();
  }

  private takeSpare(length: number): Uint8Array {
    const b = this.spare.get(length)?.pop();
    if (!b) return new Uint8Array(length);
    this.spareBytes -= length;
    return b;
  }

  private keepSpare(b: Uint8Array): void {
    if (!whole(b) || this.spareBytes + b.length > MAX_SPARE_BYTES) return;
    let list = this.spare.get(b.length);
    if (!list) this.spare.set(b.length, (list = []));
    list.push(b);
    this.spareBytes += b.length;
  }

  private check(req: DiskRequest): string | null {
    const { op, offset, length } = req;
    if (op !== 'read' && op !== 'write' && op !== 'flush') return `unknown disk operation '${String(op)}'`;
    if (op === 'flush') return null;
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length <= 0) return `bad extent [${offset}, +${length})`;
    if (offset % SECTOR_BYTES !== 0 || length % SECTOR_BYTES !== 0) return `extent [${offset}, +${length}) is not ${SECTOR_BYTES}-byte aligned`;
    if (length > MAX_DISK_REQUEST_BYTES) return `${length} bytes in one request, more than ${MAX_DISK_REQUEST_BYTES}`;
    if (offset + length > this.sizeBytes) return `extent [${offset}, +${length}) beyond the end of the ${this.sizeBytes}-byte disk`;
    if (op === 'write' && req.data === undefined && Number.isInteger(req.fill) && req.fill! >= 0 && req.fill! <= 255) return null;
    if (op === 'write' && !(req.data instanceof Uint8Array && req.data.length === length)) return `write of ${length} bytes with ${req.data?.length ?? 0} bytes of data`;
    return null;
  }

  private onReply(m: unknown): void {
    if (!isDiskReply(m)) return;
    const id = this.inflight.get(m.tag);
    if (id === undefined) return; // forgotten by a reset
    this.inflight.delete(m.tag);
    if (m.returned) this.keepSpare(m.returned);
    const c: DiskCompletion = { id, ok: m.ok };
    if (m.data) c.data = m.data;
    if (m.error) c.error = m.error;
    this.done.push(c);
    if (this.inflight.size === 0) this.drained?.();
    this.onComplete?.();
  }
}
