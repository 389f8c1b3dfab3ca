/**
 * An iSCSI PDU (RFC 7143 11.2): a 48-byte Basic Header Segment, optional Additional Header
 * Segments, and a data segment. This is the whole wire format of one PDU in one place: the
 * common fields have accessors; opcode-specific fields are read at the offsets named in
 * `fields.ts`. Big-endian throughout, as the RFC says; only digests are little-endian.
 *
 *   byte 0      .I opcode(6)          byte 1   F + opcode-specific flags
 *   byte 4      TotalAHSLength (words) bytes 5-7 DataSegmentLength (bytes, before padding)
 *   bytes 8-15  LUN or opcode-specific bytes 16-19 Initiator Task Tag
 *   bytes 20-47 opcode-specific
 */
import { opcodeName } from './opcodes.js';

export const BHS_BYTES = 48;
export const MAX_AHS_BYTES = 255 * 4;
/** The data segment length field is 24 bits. */
export const MAX_DATA_SEGMENT_FIELD = 0xffffff;
export const RESERVED_TAG = 0xffffffff;
/** Shared by every PDU without AHS or data: a zero-length buffer has no bytes to change. */
const EMPTY = Buffer.alloc(0);

export class Pdu {
  readonly bhs: Buffer;
  ahs: Buffer;
  data: Buffer;
  /**
   * Called by writePdus once the socket is done with this PDU's bytes: written to the kernel, or
   * failed with the connection. The owner of `data` may reuse it from then on, not before.
   */
  onSent: (() => void) | null = null;

  constructor(bhs: Buffer = Buffer.alloc(BHS_BYTES), ahs: Buffer = EMPTY, data: Buffer = EMPTY) {
    if (bhs.length !== BHS_BYTES) throw new RangeError(`BHS must be ${BHS_BYTES} bytes, got ${bhs.length}`);
    this.bhs = bhs;
    this.ahs = ahs;
    this.data = data;
  }

  static create(opcode: number, opts: { immediate?: boolean; final?: boolean } = {}): Pdu {
    const p = new Pdu();
    p.opcode = opcode;
    if (opts.immediate) p.immediate = true;
    if (opts.final) p.final = true;
    return p;
  }

  get opcode(): number {
    return this.bhs[0]! & 0x3f;
  }
  set opcode(op: number) {
    this.bhs[0] = (this.bhs[0]! & 0x40) | (op & 0x3f);
  }
  get opcodeName(): string {
    return opcodeName(this.opcode);
  }
  get immediate(): boolean {
    return (this.bhs[0]! & 0x40) !== 0;
  }
  set immediate(v: boolean) {
    this.bhs[0] = v ? this.bhs[0]! | 0x40 : this.bhs[0]! & ~0x40;
  }
  /** Byte 1 (F bit and the opcode-specific flags). */
  get flags(): number {
    return this.bhs[1]!;
  }
  set flags(v: number) {
    this.bhs[1] = v & 0xff;
  }
  get final(): boolean {
    return (this.bhs[1]! & 0x80) !== 0;
  }
  set final(v: boolean) {
    this.bhs[1] = v ? this.bhs[1]! | 0x80 : this.bhs[1]! & ~0x80;
  }
  /** TotalAHSLength in bytes (the field holds 4-byte words). */
  get ahsLengthField(): number {
    return this.bhs[4]! * 4;
  }
  /** DataSegmentLength as the header says (without padding). */
  get dataSegmentLengthField(): number {
    return (this.bhs[5]! << 16) | (this.bhs[6]! << 8) | this.bhs[7]!;
  }
  /** Write TotalAHSLength and DataSegmentLength from this.ahs and this.data. */
  syncLengths(): void {
    if (this.ahs.length % 4 !== 0 || this.ahs.length > MAX_AHS_BYTES) throw new RangeError(`AHS length ${this.ahs.length} is not a multiple of 4 up to ${MAX_AHS_BYTES}`);
    if (this.data.length > MAX_DATA_SEGMENT_FIELD) throw new RangeError(`data segment of ${this.data.length} bytes does not fit 24 bits`);
    this.bhs[4] = this.ahs.length / 4;
    this.bhs[5] = (this.data.length >>> 16) & 0xff;
    this.bhs[6] = (this.data.length >>> 8) & 0xff;
    this.bhs[7] = this.data.length & 0xff;
  }
  get itt(): number {
    return this.bhs.readUInt32BE(16);
  }
  set itt(v: number) {
    this.bhs.writeUInt32BE(v >>> 0, 16);
  }
  /** The 8-byte LUN field decoded (peripheral or flat space addressing), or -1 if another method. */
  get lun(): number {
    return decodeLun(this.bhs.subarray(8, 16));
  }
  set lun(v: number) {
    encodeLun(v).copy(this.bhs, 8);
  }
  u8(offset: number): number {
    return this.bhs[offset]!;
  }
  setU8(offset: number, v: number): void {
    this.bhs[offset] = v & 0xff;
  }
  u16(offset: number): number {
    return this.bhs.readUInt16BE(offset);
  }
  setU16(offset: number, v: number): void {
    this.bhs.writeUInt16BE(v & 0xffff, offset);
  }
  u32(offset: number): number {
    return this.bhs.readUInt32BE(offset);
  }
  setU32(offset: number, v: number): void {
    this.bhs.writeUInt32BE(v >>> 0, offset);
  }
  toString(): string {
    return `${this.opcodeName}${this.immediate ? '(I)' : ''} itt=0x${this.itt.toString(16)} ds=${this.data.length}`;
  }
}

/**
 * SAM LUN (8 bytes) -> number. Peripheral device addressing (method 00b, bus 0) and flat space
 * addressing (01b) give 0..16383; anything else returns -1 (the caller answers LOGICAL UNIT NOT
 * SUPPORTED).
 */
export function decodeLun(b: Uint8Array): number {
  const method = b[0]! >> 6;
  for (let i = 2; i < 8; i++) if (b[i] !== 0) return -1;
  if (method === 0) return b[0] === 0 ? b[1]! : -1;
  if (method === 1) return ((b[0]! & 0x3f) << 8) | b[1]!;
  return -1;
}

export function encodeLun(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (!(Number.isInteger(lun) && lun >= 0 && lun <= 0x3fff)) throw new RangeError(`LUN ${lun} out of range 0..16383`);
  if (lun < 256) b[1] = lun;
  else {
    b[0] = 0x40 | (lun >> 8);
    b[1] = lun & 0xff;
  }
  return b;
}

/** Bytes of padding after a data segment of `n` bytes. */
export function padding(n: number): number {
  return (4 - (n & 3)) & 3;
}

/** Serial number arithmetic (RFC 1982, 32-bit) for CmdSN/StatSN/DataSN comparisons. */
export function snLessThan(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < 0x80000000) || (a > b && a - b > 0x80000000));
}

export function snLessOrEqual(a: number, b: number): boolean {
  return a === b || snLessThan(a, b);
}

export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
