/**
 * A byte-stream PDU parser in the style of ws's Receiver: an explicit state, one method per
 * state, `consume(n)` that reads across chunks, and caps on what it buffers. Feed it the bytes of
 * a TCP connection with push(); it calls onPdu for every complete PDU.
 *
 *   BHS (48) -> AHS (TotalAHSLength*4) -> HEADER_DIGEST (4, if on) -> DATA (len + pad)
 *            -> DATA_DIGEST (4, if on and len > 0) -> BHS ...
 *
 * Settings (digests, MaxRecvDataSegmentLength) are read at each PDU boundary, so the session can
 * switch digests on from inside onPdu for the PDU that ends the login (RFC 7143 13.12: they apply
 * to the first PDU after the final Login Response).
 *
 * Errors: a header digest mismatch or a data segment larger than allowed is fatal (the caller
 * drops the connection: at ErrorRecoveryLevel 0 there is no way to resynchronize); a data digest
 * mismatch is not: the PDU is reported through onDataDigestError so the caller answers with a
 * Reject (reason 0x02) and goes on with the next PDU.
 */
import { EsxError } from '@esxemu/shared';
import { crc32cv } from './digest.js';
import { BHS_BYTES, padding, Pdu } from './pdu.js';

export interface PduReaderSettings {
  /** Largest data segment accepted (our MaxRecvDataSegmentLength; 8192 during login). */
  maxRecvDataSegmentLength: number;
  headerDigest: boolean;
  dataDigest: boolean;
}

export interface PduReaderHandlers {
  onPdu(pdu: Pdu): void;
  /** The PDU's data digest did not match; its data was discarded. */
  onDataDigestError(pdu: Pdu): void;
  /** A fatal framing error: stop using this connection. */
  onError(err: EsxError): void;
}

/**
 * Upper bound for any data segment, whatever was negotiated: MaxRecvDataSegmentLength may be at
 * most 2^24 - 1 (RFC 7143 13.12).
 */
export const ABSOLUTE_MAX_DATA_SEGMENT = 0xffffff;

type State = 'BHS' | 'AHS' | 'HEADER_DIGEST' | 'DATA' | 'DATA_DIGEST' | 'DEAD';

export class PduReader {
  settings: PduReaderSettings;
  private readonly h: PduReaderHandlers;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private state: State = 'BHS';
  private pdu: Pdu | null = null;
  private dataLength = 0;
  /** The data segment with its padding, which the data digest covers. */
  private paddedData: Buffer | null = null;
  /** PDUs parsed so far (for diagnostics and tests). */
  count = 0;

  constructor(settings: PduReaderSettings, handlers: PduReaderHandlers) {
    this.settings = { ...settings };
    this.h = handlers;
  }

  get dead(): boolean {
    return this.state === 'DEAD';
  }

  push(chunk: Buffer): void {
    if (this.state === 'DEAD') return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.loop();
  }

  private loop(): void {
    for (;;) {
      let progressed: boolean;
      switch (this.state) {
        case 'BHS':
          progressed = this.getBhs();
          break;
        case 'AHS':
          progressed = this.getAhs();
          break;
        case 'HEADER_DIGEST':
          progressed = this.getHeaderDigest();
          break;
        case 'DATA':
          progressed = this.getData();
          break;
        case 'DATA_DIGEST':
          progressed = this.getDataDigest();
          break;
        case 'DEAD':
          return;
      }
      if (!progressed) return;
    }
  }

  /** Take exactly n buffered bytes (the caller checked they are there). */
  private consume(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0]!;
    if (n === first.length) return this.chunks.shift()!;
    if (n < first.length) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    return out;
  }

  private fail(reason: string, message: string): false {
    this.state = 'DEAD';
    this.chunks = [];
    this.buffered = 0;
    this.h.onError(new EsxError('PROTOCOL_ERROR', message, { reason }));
    return false;
  }

  private getBhs(): boolean {
    if (this.buffered < BHS_BYTES) return false;
    // Copy: the BHS outlives the socket chunk it arrived in (it is queued, answered later).
    const bhs = Buffer.from(this.consume(BHS_BYTES));
    this.pdu = new Pdu(bhs);
    this.dataLength = this.pdu.dataSegmentLengthField;
    const max = Math.min(this.settings.maxRecvDataSegmentLength, ABSOLUTE_MAX_DATA_SEGMENT);
    if (this.dataLength > max) {
      return this.fail('PDU_TOO_LARGE', `${this.pdu.opcodeName} carries a data segment of ${this.dataLength} bytes, more than MaxRecvDataSegmentLength ${max}`);
    }
    this.state = this.pdu.ahsLengthField > 0 ? 'AHS' : this.settings.headerDigest ? 'HEADER_DIGEST' : 'DATA';
    return true;
  }

  private getAhs(): boolean {
    const n = this.pdu!.ahsLengthField;
    if (this.buffered < n) return false;
    this.pdu!.ahs = Buffer.from(this.consume(n));
    this.state = this.settings.headerDigest ? 'HEADER_DIGEST' : 'DATA';
    return true;
  }

  private getHeaderDigest(): boolean {
    if (this.buffered < 4) return false;
    const got = this.consume(4).readUInt32LE(0);
    const want = crc32cv([this.pdu!.bhs, this.pdu!.ahs]);
    if (got !== want) {
      return this.fail('HEADER_DIGEST', `header digest mismatch on ${this.pdu!.opcodeName}: got 0x${got.toString(16)}, computed 0x${want.toString(16)}`);
    }
    this.state = 'DATA';
    return true;
  }

  private getData(): boolean {
    const padded = this.dataLength + padding(this.dataLength);
    if (this.buffered < padded) return false;
    if (padded > 0) {
      // No copy: Node hands every socket read a fresh buffer that is never reused, so the data
      // segment can keep referring to it (a segment split across reads was copied by consume).
      const raw = this.consume(padded);
      this.pdu!.data = raw.subarray(0, this.dataLength);
      this.paddedData = raw;
    } else {
      this.paddedData = null;
    }
    if (this.settings.dataDigest && this.dataLength > 0) {
      this.state = 'DATA_DIGEST';
      return true;
    }
    return this.emit();
  }

  private getDataDigest(): boolean {
    if (this.buffered < 4) return false;
    const got = this.consume(4).readUInt32LE(0);
    const want = crc32cv([this.paddedData!]);
    const pdu = this.pdu!;
    this.reset();
    if (got !== want) {
      pdu.data = Buffer.alloc(0);
      this.h.onDataDigestError(pdu);
      return this.state !== 'DEAD';
    }
    this.count++;
    this.h.onPdu(pdu);
    return this.state !== 'DEAD';
  }

  private emit(): boolean {
    const pdu = this.pdu!;
    this.reset();
    this.count++;
    this.h.onPdu(pdu);
    return this.state !== 'DEAD';
  }

  private reset(): void {
    this.pdu = null;
    this.paddedData = null;
    this.dataLength = 0;
    this.state = 'BHS';
  }

  /** Stop parsing for good (the connection is closing). */
  destroy(): void {
    this.state = 'DEAD';
    this.chunks = [];
    this.buffered = 0;
  }
}
