/**
 * The vMotion stream: how a running VM's memory and state travel from the source host to the
 * destination host over one TCP connection. Every byte of it is in this module.
 *
 *   source                                             destination
 *     | -- preamble: "ESXMIGR\0", version, flags ----> |  checks magic and version
 *     | -- HELLO {migrationId, vm config, pages} ----> |  A: opens the VM's files, shadow VM
 *     | <------------------------------- READY ------- |
 *     | -- PAGES (gpn, zero|raw) ... ----------------> |  B: pre-copy, while the VM runs
 *     | -- ITERATION {n, dirty left} ---------------> |     one per pass over the dirty set
 *     |          ... more passes ...                   |
 *     | -- SWITCHOVER ---------------------------------> |  C: vCPU stopped, I/O drained
 *     | -- PAGES (the last dirty ones) --------------> |
 *     | -- DEVICE_STATE {regs, nic, disk} -----------> |
 *     | -- COMPLETE ---------------------------------> |  D: destination resumes the VM
 *     | <------------------------------ RESUMED ------ |     (commit: the source frees it)
 *     | -- ABORT {reason} / <-- ABORT {reason} ------- |  either side, any time before commit
 *
 * Framing: after the 16-byte preamble, records of an 8-byte header (type u8, flags u8,
 * reserved u16, payload length u32, little-endian) and a payload. Control payloads (HELLO,
 * ITERATION, DEVICE_STATE, ABORT, READY, RESUMED) are msgpack maps. A PAGES payload is
 * `count u32` then `count` entries of (gpn u32, kind u8, 3 reserved bytes), then the 4 KiB of
 * every raw page in entry order: raw bytes straight from machine memory (the writer hands the
 * socket views of the pages, no copy), and a page of zeros is an entry of kind ZERO with no
 * bytes at all.
 *
 * The receiver treats the stream as hostile: every length is bounded before anything is
 * buffered, records must come in the order above, page numbers must be inside the VM's memory
 * declared in HELLO, a control payload must decode and have the right shape. The first
 * violation makes the reader DEAD with a PROTOCOL_ERROR (reason code in details) and nothing
 * more is delivered; a stream that ends before COMPLETE or ABORT is TRUNCATED.
 */
import { pack, unpack } from 'msgpackr';
import { EsxError } from '@esxemu/shared';

export const STREAM_MAGIC = Buffer.from('ESXMIGR\0', 'latin1');
export const STREAM_VERSION = 1;
export const PREAMBLE_BYTES = 16;
export const RECORD_HEADER_BYTES = 8;
export const PAGE_BYTES = 4096;
/** Pages in one PAGES record at most (so a record is at most ~1 MiB). */
export const MAX_PAGES_PER_RECORD = 256;
/** Control payloads at most (a VM's device state included). */
export const MAX_CONTROL_BYTES = 4 * 1024 * 1024;
const PAGE_ENTRY_BYTES = 8;
const MAX_PAGES_PAYLOAD = 4 + MAX_PAGES_PER_RECORD * (PAGE_ENTRY_BYTES + PAGE_BYTES);

export const REC = {
  HELLO: 1,
  READY: 2,
  PAGES: 3,
  ITERATION: 4,
  SWITCHOVER: 5,
  DEVICE_STATE: 6,
  COMPLETE: 7,
  RESUMED: 8,
  ABORT: 9,
} as const;
export type RecordType = (typeof REC)[keyof typeof REC];
const NAMES: Record<number, string> = Object.fromEntries(Object.entries(REC).map(([k, v]) => [v, k]));

export const PAGE_KIND = { ZERO: 0, RAW: 1 } as const;

/** Preamble flag: page payloads may be compressed (reserved; no compression in version 1). */
export const PREAMBLE_FLAG_COMPRESSION = 0x1;

export interface Hello {
  migrationId: string;
  vmId: string;
  /** Guest memory size in pages: every later page number must be below it. */
  pages: number;
  /** The VM's configuration as the source runs it (checked by the receiver's caller). */
  config: unknown;
}

export interface Iteration {
  n: number;
  dirtyPages: number;
}

export interface Abort {
  code: string;
  message: string;
}

export interface PageEntry {
  gpn: number;
  /** null: a page of zeros. */
  data: Uint8Array | null;
}

export type StreamEvent =
  | { type: 'hello'; hello: Hello }
  | { type: 'ready'; info: Record<string, unknown> }
  | { type: 'pages'; pages: PageEntry[] }
  | { type: 'iteration'; iteration: Iteration }
  | { type: 'switchover' }
  | { type: 'deviceState'; state: Record<string, unknown> }
  | { type: 'complete' }
  | { type: 'resumed'; info: Record<string, unknown> }
  | { type: 'abort'; abort: Abort };

// ---- writing ------------------------------------------------------------------------------

export function encodePreamble(flags = 0): Buffer {
  const b = Buffer.alloc(PREAMBLE_BYTES);
  STREAM_MAGIC.copy(b, 0);
  b.writeUInt16LE(STREAM_VERSION, 8);
  b.writeUInt16LE(flags, 10);
  return b;
}

function header(type: RecordType, length: number): Buffer {
  const h = Buffer.alloc(RECORD_HEADER_BYTES);
  h[0] = type;
  h.writeUInt32LE(length, 4);
  return h;
}

/** A control record: header and msgpack payload. */
export function encodeControl(type: Exclude<RecordType, typeof REC.PAGES>, body: object | null = null): Buffer[] {
  const payload = body === null ? Buffer.alloc(0) : pack(body);
  if (payload.length > MAX_CONTROL_BYTES) throw new EsxError('PAYLOAD_TOO_LARGE', `${NAMES[type]} of ${payload.length} bytes, more than ${MAX_CONTROL_BYTES}`);
  return [header(type, payload.length), payload];
}

/** True when the 4 KiB page is all zeros (checked 8 bytes at a time when aligned). */
export function isZeroPage(page: Uint8Array): boolean {
  if (page.byteOffset % 8 === 0 && page.byteLength % 8 === 0) {
    const w = new BigUint64Array(page.buffer, page.byteOffset, page.byteLength / 8);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
    return true;
  }
  for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

/**
 * A PAGES record for up to MAX_PAGES_PER_RECORD pages. `data` views are written as they are
 * (no copy): the caller must not change them until the socket has written them, which a
 * paused vCPU or the dirty log (a page changed after it was sent is sent again) guarantees.
 * Pages given with data that is all zeros are sent as ZERO entries.
 */
export function encodePages(pages: readonly PageEntry[]): Buffer[] {
  if (pages.length === 0 || pages.length > MAX_PAGES_PER_RECORD) throw new EsxError('INVALID_ARGUMENT', `a PAGES record holds 1-${MAX_PAGES_PER_RECORD} pages, not ${pages.length}`);
  const index = Buffer.alloc(4 + pages.length * PAGE_ENTRY_BYTES);
  index.writeUInt32LE(pages.length, 0);
  const raw: Buffer[] = [];
  pages.forEach((p, i) => {
    const zero = p.data === null || isZeroPage(p.data);
    if (!zero && p.data!.length !== PAGE_BYTES) throw new EsxError('INVALID_ARGUMENT', `page ${p.gpn} has ${p.data!.length} bytes, not ${PAGE_BYTES}`);
    index.writeUInt32LE(p.gpn, 4 + i * PAGE_ENTRY_BYTES);
    index[4 + i * PAGE_ENTRY_BYTES + 4] = zero ? PAGE_KIND.ZERO : PAGE_KIND.RAW;
    if (!zero) raw.push(Buffer.from(p.data!.buffer, p.data!.byteOffset, PAGE_BYTES));
  });
  return [header(REC.PAGES, index.length + raw.length * PAGE_BYTES), index, ...raw];
}

// ---- reading ------------------------------------------------------------------------------

type ReaderState = 'PREAMBLE' | 'HEADER' | 'PAYLOAD' | 'DONE' | 'DEAD';
type Phase = 'start' | 'hello' | 'precopy' | 'switchover' | 'deviceState' | 'complete' | 'aborted';

export interface StreamReaderOptions {
  /** Which end this reader is: a destination reads what the source sends, and the reverse. */
  side: 'destination' | 'source';
  onEvent(e: StreamEvent): void;
  onError(err: EsxError): void;
}

/** Incremental reader of one direction of a migration stream (a state machine, as PduReader). */
export class StreamReader {
  private st: ReaderState;
  private phase: Phase = 'start';
  private chunks: Buffer[] = [];
  private buffered = 0;
  private type = 0;
  private length = 0;
  private pages = 0;
  private readonly o: StreamReaderOptions;

  constructor(o: StreamReaderOptions) {
    this.o = o;
    // Only the source writes a preamble; the destination's answers are bare records.
    this.st = o.side === 'destination' ? 'PREAMBLE' : 'HEADER';
  }

  get state(): ReaderState {
    return this.st;
  }

  push(chunk: Buffer): void {
    if (this.st === 'DEAD' || this.st === 'DONE') return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      const need = this.st === 'PREAMBLE' ? PREAMBLE_BYTES : this.st === 'HEADER' ? RECORD_HEADER_BYTES : this.st === 'PAYLOAD' ? this.length : -1;
      if (need < 0 || this.buffered < need) return;
      const bytes = this.take(need);
      if (this.st === 'PREAMBLE') this.preamble(bytes);
      else if (this.st === 'HEADER') this.header(bytes);
      else this.payload(bytes);
    }
  }

  /** The connection ended: TRUNCATED unless the stream was complete. */
  end(): void {
    if (this.st === 'DEAD' || this.st === 'DONE') return;
    this.fail('TRUNCATED', `the stream ended in phase ${this.phase} with ${this.buffered} bytes of an unfinished record`);
  }

  private take(n: number): Buffer {
    this.buffered -= n;
    if (n === 0) return Buffer.alloc(0);
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = Buffer.from(all.subarray(0, n)); // a copy: the socket's chunks are not kept
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    return out;
  }

  private fail(reason: string, message: string): void {
    this.st = 'DEAD';
    this.chunks = [];
    this.buffered = 0;
    this.o.onError(new EsxError('PROTOCOL_ERROR', `migration stream: ${message}`, { reason }));
  }

  private preamble(b: Buffer): void {
    if (!b.subarray(0, 8).equals(STREAM_MAGIC)) return this.fail('BAD_MAGIC', 'not a migration stream (bad magic)');
    const version = b.readUInt16LE(8);
    if (version !== STREAM_VERSION) return this.fail('VERSION', `stream version ${version}, this host speaks ${STREAM_VERSION}`);
    const flags = b.readUInt16LE(10);
    if (flags !== 0) return this.fail('FLAGS', `stream flags 0x${flags.toString(16)}: compression and other options are not supported by this host`);
    this.st = 'HEADER';
  }

  private header(b: Buffer): void {
    this.type = b[0]!;
    this.length = b.readUInt32LE(4);
    const name = NAMES[this.type];
    if (!name) return this.fail('UNKNOWN_RECORD', `unknown record type ${this.type}`);
    if (b[1] !== 0 || b.readUInt16LE(2) !== 0) return this.fail('RESERVED', `${name} with reserved header bits set`);
    const max = this.type === REC.PAGES ? MAX_PAGES_PAYLOAD : MAX_CONTROL_BYTES;
    if (this.length > max) return this.fail('TOO_LARGE', `${name} of ${this.length} bytes, more than ${max}`);
    const bad = this.orderError(this.type);
    if (bad) return this.fail('ORDER', bad);
    this.st = 'PAYLOAD';
  }

  /** Which records may come now, by side and phase. */
  private orderError(type: number): string | null {
    const name = NAMES[type]!;
    if (type === REC.ABORT) return null;
    if (this.o.side === 'source') {
      // what a destination may say: READY after HELLO, RESUMED at the end
      if (type === REC.READY && this.phase === 'start') return null;
      if (type === REC.RESUMED && this.phase === 'hello') return null;
      return `${name} from the destination here (after ${this.phase})`;
    }
    const allowed: Record<Phase, number[]> = {
      start: [REC.HELLO],
      hello: [REC.PAGES, REC.ITERATION, REC.SWITCHOVER],
      precopy: [REC.PAGES, REC.ITERATION, REC.SWITCHOVER],
      switchover: [REC.PAGES, REC.DEVICE_STATE],
      deviceState: [REC.COMPLETE],
      complete: [],
      aborted: [],
    };
    return allowed[this.phase].includes(type) ? null : `${name} after ${this.phase}`;
  }

  private payload(b: Buffer): void {
    const type = this.type;
    this.st = 'HEADER';
    switch (type) {
      case REC.PAGES:
        return this.pagesRecord(b);
      case REC.SWITCHOVER:
      case REC.COMPLETE:
        if (b.length !== 0) return this.fail('BAD_PAYLOAD', `${NAMES[type]} carries ${b.length} bytes, expected none`);
        if (type === REC.SWITCHOVER) {
          this.phase = 'switchover';
          return this.o.onEvent({ type: 'switchover' });
        }
        this.phase = 'complete';
        this.st = 'DONE';
        return this.o.onEvent({ type: 'complete' });
      default:
        return this.control(type, b);
    }
  }

  private control(type: number, b: Buffer): void {
    let body: unknown;
    try {
      body = b.length ? unpack(b) : {};
    } catch (err) {
      return this.fail('BAD_PAYLOAD', `${NAMES[type]} payload does not decode: ${(err as Error).message}`);
    }
    if (!body || typeof body !== 'object' || Array.isArray(body)) return this.fail('BAD_PAYLOAD', `${NAMES[type]} payload is not a map`);
    const m = body as Record<string, unknown>;
    const str = (k: string, max = 256): boolean => typeof m[k] === 'string' && (m[k] as string).length > 0 && (m[k] as string).length <= max;
    const int = (k: string, max: number): boolean => Number.isInteger(m[k]) && (m[k] as number) >= 0 && (m[k] as number) <= max;
    switch (type) {
      case REC.HELLO:
        if (!str('migrationId') || !str('vmId') || !int('pages', 16 * 1024 * 1024)) return this.fail('BAD_PAYLOAD', 'HELLO needs migrationId, vmId and pages (0..16M)');
        this.pages = m['pages'] as number;
        this.phase = 'hello';
        return this.o.onEvent({ type: 'hello', hello: { migrationId: m['migrationId'] as string, vmId: m['vmId'] as string, pages: this.pages, config: m['config'] } });
      case REC.ITERATION:
        if (!int('n', 1_000_000) || !int('dirtyPages', this.pages)) return this.fail('BAD_PAYLOAD', 'ITERATION needs n and dirtyPages (at most the VM pages)');
        this.phase = 'precopy';
        return this.o.onEvent({ type: 'iteration', iteration: { n: m['n'] as number, dirtyPages: m['dirtyPages'] as number } });
      case REC.DEVICE_STATE:
        this.phase = 'deviceState';
        return this.o.onEvent({ type: 'deviceState', state: m });
      case REC.READY:
        this.phase = 'hello';
        return this.o.onEvent({ type: 'ready', info: m });
      case REC.RESUMED:
        this.phase = 'complete';
        this.st = 'DONE';
        return this.o.onEvent({ type: 'resumed', info: m });
      case REC.ABORT:
        if (!str('code', 64) || typeof m['message'] !== 'string') return this.fail('BAD_PAYLOAD', 'ABORT needs code and message');
        this.phase = 'aborted';
        this.st = 'DONE';
        return this.o.onEvent({ type: 'abort', abort: { code: m['code'] as string, message: (m['message'] as string).slice(0, 4096) } });
    }
  }

  private pagesRecord(b: Buffer): void {
    if (b.length < 4) return this.fail('BAD_PAYLOAD', 'PAGES without a count');
    const count = b.readUInt32LE(0);
    if (count < 1 || count > MAX_PAGES_PER_RECORD) return this.fail('BAD_PAYLOAD', `PAGES with ${count} pages (1-${MAX_PAGES_PER_RECORD})`);
    const indexEnd = 4 + count * PAGE_ENTRY_BYTES;
    if (b.length < indexEnd) return this.fail('BAD_PAYLOAD', 'PAGES shorter than its index');
    let rawPages = 0;
    for (let i = 0; i < count; i++) {
      const at = 4 + i * PAGE_ENTRY_BYTES;
      const gpn = b.readUInt32LE(at);
      const kind = b[at + 4]!;
      if (gpn >= this.pages) return this.fail('PAGE_RANGE', `page ${gpn} beyond the VM's ${this.pages} pages`);
      if (kind !== PAGE_KIND.ZERO && kind !== PAGE_KIND.RAW) return this.fail('BAD_PAYLOAD', `page ${gpn} of unknown kind ${kind}`);
      if (b[at + 5] !== 0 || b[at + 6] !== 0 || b[at + 7] !== 0) return this.fail('RESERVED', `page entry ${i} with reserved bytes set`);
      if (kind === PAGE_KIND.RAW) rawPages++;
    }
    if (b.length !== indexEnd + rawPages * PAGE_BYTES) return this.fail('BAD_PAYLOAD', `PAGES of ${b.length} bytes, its index says ${indexEnd + rawPages * PAGE_BYTES}`);
    const pages: PageEntry[] = [];
    let raw = indexEnd;
    for (let i = 0; i < count; i++) {
      const at = 4 + i * PAGE_ENTRY_BYTES;
      const gpn = b.readUInt32LE(at);
      if (b[at + 4] === PAGE_KIND.RAW) {
        pages.push({ gpn, data: b.subarray(raw, raw + PAGE_BYTES) });
        raw += PAGE_BYTES;
      } else {
        pages.push({ gpn, data: null });
      }
    }
    if (this.phase === 'hello') this.phase = 'precopy';
    this.o.onEvent({ type: 'pages', pages });
  }
}
