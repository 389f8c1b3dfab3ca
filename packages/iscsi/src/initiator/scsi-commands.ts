/**
 * Typed SCSI commands for the initiator (SPC-4, SBC-3): each builder returns the CDB, the data
 * to send or the length to read, the replay policy (what recovery may do if the status is lost)
 * and a decoder. `runScsi` executes one and returns a ScsiResult: a CHECK CONDITION or
 * RESERVATION CONFLICT is a result carrying decoded sense (a SCSI failure is data); transport
 * failures reject with an EsxError.
 */
import { EsxError } from '@esxemu/shared';
import { decodeLun } from '../transport/index.js';
import { SAM_STAT } from '../scsi/types.js';
import { decodeSense, describeSense, SENSE_KEY, type SenseData } from './sense.js';
import type { CommandResult, ReplayPolicy } from './task.js';

export interface ScsiCommand<T> {
  name: string;
  cdb: Buffer;
  dataOut: Buffer | null;
  expectedLength: number;
  replay: ReplayPolicy;
  decode(r: CommandResult): T;
  /** Some failures are answers (a COMPARE AND WRITE miscompare): map them to a value. */
  decodeFailure?(status: number, sense: SenseData | null): T | undefined;
}

export type ScsiResult<T> =
  | { ok: true; value: T; status: number; residual: number; attempts: number }
  | { ok: false; status: number; statusName: string; sense: SenseData | null; attempts: number };

const STATUS_NAMES = new Map<number, string>(Object.entries(SAM_STAT).map(([k, v]) => [v, k]));

export function statusName(status: number): string {
  return STATUS_NAMES.get(status) ?? `0x${status.toString(16)}`;
}

/** Turn a raw command result into a typed one. */
export function toScsiResult<T>(cmd: ScsiCommand<T>, r: CommandResult): ScsiResult<T> {
  if (r.status === SAM_STAT.GOOD || r.status === SAM_STAT.CONDITION_MET) {
    return { ok: true, value: cmd.decode(r), status: r.status, residual: r.underflow ? r.residual : 0, attempts: r.attempts };
  }
  const sense = r.sense ? decodeSense(r.sense) : null;
  const mapped = cmd.decodeFailure?.(r.status, sense);
  if (mapped !== undefined) return { ok: true, value: mapped, status: r.status, residual: 0, attempts: r.attempts };
  return { ok: false, status: r.status, statusName: statusName(r.status), sense, attempts: r.attempts };
}

/** The value of a successful result, or an EsxError describing the SCSI failure (opt-in). */
export function scsiValue<T>(r: ScsiResult<T>, what = 'SCSI command'): T {
  if (r.ok) return r.value;
  const code = r.status === SAM_STAT.RESERVATION_CONFLICT ? 'INVALID_STATE' : r.sense?.key === SENSE_KEY.ILLEGAL_REQUEST ? 'INVALID_ARGUMENT' : 'INTERNAL';
  throw new EsxError(code, `${what} failed: ${r.statusName}${r.sense ? ` (${describeSense(r.sense)})` : ''}`, {
    reason: 'SCSI_STATUS',
    status: r.status,
    statusName: r.statusName,
    senseKey: r.sense?.keyName ?? null,
    asc: r.sense?.asc ?? null,
    ascq: r.sense?.ascq ?? null,
  });
}

// ---- helpers ---------------------------------------------------------------------------------

function cdb(len: number, opcode: number): Buffer {
  const b = Buffer.alloc(len);
  b[0] = opcode;
  return b;
}

function checkLba(lba: number, blocks: number): void {
  if (!Number.isSafeInteger(lba) || lba < 0) throw new EsxError('INVALID_ARGUMENT', `bad LBA ${lba}`);
  if (!Number.isInteger(blocks) || blocks < 0 || blocks > 0xffffffff) throw new EsxError('INVALID_ARGUMENT', `bad block count ${blocks}`);
}

function putLba16(b: Buffer, lba: number, blocks: number): void {
  b.writeBigUInt64BE(BigInt(lba), 2);
  b.writeUInt32BE(blocks >>> 0, 10);
}

const data = (r: CommandResult): Buffer => r.data ?? Buffer.alloc(0);
const nothing = (): void => undefined;
const ascii = (b: Buffer, from: number, to: number): string => b.subarray(from, Math.min(to, b.length)).toString('latin1').replace(/\s+$/, '');

// ---- SPC: TEST UNIT READY, INQUIRY, REPORT LUNS ---------------------------------------------

export function testUnitReady(): ScsiCommand<void> {
  return { name: 'TEST UNIT READY', cdb: cdb(6, 0x00), dataOut: null, expectedLength: 0, replay: 'reissue', decode: nothing };
}

export interface StandardInquiry {
  peripheralQualifier: number;
  deviceType: number;
  removable: boolean;
  version: number;
  responseDataFormat: number;
  /** TPGS field: ALUA support. */
  tpgs: number;
  commandQueueing: boolean;
  vendor: string;
  product: string;
  revision: string;
  raw: Buffer;
}

export function inquiry(allocationLength = 96): ScsiCommand<StandardInquiry> {
  const c = cdb(6, 0x12);
  c.writeUInt16BE(allocationLength, 3);
  return {
    name: 'INQUIRY',
    cdb: c,
    dataOut: null,
    expectedLength: allocationLength,
    replay: 'reissue',
    decode: (r) => {
      const b = data(r);
      if (b.length < 5) throw new EsxError('PROTOCOL_ERROR', `INQUIRY returned ${b.length} bytes`, { reason: 'SHORT_INQUIRY' });
      return {
        peripheralQualifier: b[0]! >> 5,
        deviceType: b[0]! & 0x1f,
        removable: (b[1]! & 0x80) !== 0,
        version: b[2]!,
        responseDataFormat: b[3]! & 0x0f,
        tpgs: b.length > 5 ? (b[5]! >> 4) & 0x3 : 0,
        commandQueueing: b.length > 7 ? (b[7]! & 0x02) !== 0 : false,
        vendor: ascii(b, 8, 16),
        product: ascii(b, 16, 32),
        revision: ascii(b, 32, 36),
        raw: b,
      };
    },
  };
}

export interface Designator {
  codeSet: number;
  association: number;
  type: number;
  /** Hex for binary designators, text for ASCII/UTF-8 ones. */
  value: string;
}

export interface VpdPage {
  page: number;
  deviceType: number;
  payload: Buffer;
  /** 0x00 */
  supportedPages?: number[];
  /** 0x80 */
  serialNumber?: string;
  /** 0x83 */
  designators?: Designator[];
  /** 0xB0 */
  blockLimits?: { maxCompareAndWriteBlocks: number; maxTransferBlocks: number; optimalTransferBlocks: number; maxUnmapBlocks: number; maxUnmapDescriptors: number; maxWriteSameBlocks: number };
  /** 0xB2 */
  provisioning?: { unmap: boolean; writeSame16Unmap: boolean; writeSame10Unmap: boolean };
}

export function inquiryVpd(page: number, allocationLength = 1024): ScsiCommand<VpdPage> {
  const c = cdb(6, 0x12);
  c[1] = 0x01;
  c[2] = page & 0xff;
  c.writeUInt16BE(allocationLength, 3);
  return {
    name: `INQUIRY VPD 0x${page.toString(16)}`,
    cdb: c,
    dataOut: null,
    expectedLength: allocationLength,
    replay: 'reissue',
    decode: (r) => decodeVpd(page, data(r)),
  };
}

export function decodeVpd(page: number, b: Buffer): VpdPage {
  if (b.length < 4) throw new EsxError('PROTOCOL_ERROR', `VPD page 0x${page.toString(16)} returned ${b.length} bytes`, { reason: 'SHORT_VPD' });
  if (b[1] !== page) throw new EsxError('PROTOCOL_ERROR', `asked for VPD page 0x${page.toString(16)}, got 0x${b[1]!.toString(16)}`, { reason: 'WRONG_VPD' });
  const payload = b.subarray(4, Math.min(b.length, 4 + b.readUInt16BE(2)));
  const out: VpdPage = { page, deviceType: b[0]! & 0x1f, payload };
  if (page === 0x00) out.supportedPages = [...payload];
  if (page === 0x80) out.serialNumber = payload.toString('latin1').trim();
  if (page === 0x83) {
    out.designators = [];
    for (let off = 0; off + 4 <= payload.length; ) {
      const len = payload[off + 3]!;
      const id = payload.subarray(off + 4, Math.min(payload.length, off + 4 + len));
      const codeSet = payload[off]! & 0x0f;
      out.designators.push({ codeSet, association: (payload[off + 1]! >> 4) & 0x3, type: payload[off + 1]! & 0x0f, value: codeSet === 2 || codeSet === 3 ? id.toString('utf8').replace(/\0+$/, '') : id.toString('hex') });
      off += 4 + len;
    }
  }
  if (page === 0xb0 && payload.length >= 40) {
    out.blockLimits = {
      maxCompareAndWriteBlocks: payload[1]!,
      maxTransferBlocks: payload.readUInt32BE(4),
      optimalTransferBlocks: payload.readUInt32BE(8),
      maxUnmapBlocks: payload.readUInt32BE(16),
      maxUnmapDescriptors: payload.readUInt32BE(20),
      maxWriteSameBlocks: payload.length >= 40 ? Number(payload.readBigUInt64BE(32)) : 0,
    };
  }
  if (page === 0xb2 && payload.length >= 2) {
    out.provisioning = { unmap: (payload[1]! & 0x80) !== 0, writeSame16Unmap: (payload[1]! & 0x40) !== 0, writeSame10Unmap: (payload[1]! & 0x20) !== 0 };
  }
  return out;
}

export function reportLuns(allocationLength = 8 + 8 * 256): ScsiCommand<number[]> {
  const c = cdb(12, 0xa0);
  c.writeUInt32BE(allocationLength, 6);
  return {
    name: 'REPORT LUNS',
    cdb: c,
    dataOut: null,
    expectedLength: allocationLength,
    replay: 'reissue',
    decode: (r) => {
      const b = data(r);
      if (b.length < 8) throw new EsxError('PROTOCOL_ERROR', `REPORT LUNS returned ${b.length} bytes`, { reason: 'SHORT_REPORT_LUNS' });
      const n = Math.min(b.readUInt32BE(0), b.length - 8);
      const luns: number[] = [];
      for (let off = 8; off + 8 <= 8 + n; off += 8) luns.push(decodeLun(b.subarray(off, off + 8)));
      return luns;
    },
  };
}

// ---- SBC: capacity, read, write, flush, compare and write, unmap, write same ------------------

export interface Capacity {
  /** Number of logical blocks (last LBA + 1). */
  blocks: number;
  blockSize: number;
  /** Logical blocks per physical block exponent. */
  physicalBlockExponent: number;
  /** Thin provisioning enabled (LBPME) and reads of unmapped blocks return zeros (LBPRZ). */
  thinProvisioned: boolean;
  unmappedReadsZero: boolean;
  bytes: number;
}

export function readCapacity16(): ScsiCommand<Capacity> {
  const c = cdb(16, 0x9e);
  c[1] = 0x10;
  c.writeUInt32BE(32, 10);
  return {
    name: 'READ CAPACITY(16)',
    cdb: c,
    dataOut: null,
    expectedLength: 32,
    replay: 'reissue',
    decode: (r) => {
      const b = data(r);
      if (b.length < 12) throw new EsxError('PROTOCOL_ERROR', `READ CAPACITY(16) returned ${b.length} bytes`, { reason: 'SHORT_CAPACITY' });
      const blocks = Number(b.readBigUInt64BE(0)) + 1;
      const blockSize = b.readUInt32BE(8);
      return { blocks, blockSize, physicalBlockExponent: b.length > 13 ? b[13]! & 0x0f : 0, thinProvisioned: b.length > 14 ? (b[14]! & 0x80) !== 0 : false, unmappedReadsZero: b.length > 14 ? (b[14]! & 0x40) !== 0 : false, bytes: blocks * blockSize };
    },
  };
}

export function read16(lba: number, blocks: number, blockSize: number, opts: { fua?: boolean } = {}): ScsiCommand<Buffer> {
  checkLba(lba, blocks);
  const c = cdb(16, 0x88);
  if (opts.fua) c[1] = 0x08;
  putLba16(c, lba, blocks);
  return { name: 'READ(16)', cdb: c, dataOut: null, expectedLength: blocks * blockSize, replay: 'reissue', decode: data };
}

export function write16(lba: number, payload: Buffer, blockSize: number, opts: { fua?: boolean } = {}): ScsiCommand<void> {
  if (payload.length % blockSize !== 0) throw new EsxError('INVALID_ARGUMENT', `write of ${payload.length} bytes is not a multiple of the ${blockSize}-byte block`);
  const blocks = payload.length / blockSize;
  checkLba(lba, blocks);
  const c = cdb(16, 0x8a);
  if (opts.fua) c[1] = 0x08;
  putLba16(c, lba, blocks);
  // Idempotent: the same data to the same blocks, so a write whose status was lost is reissued.
  return { name: 'WRITE(16)', cdb: c, dataOut: payload, expectedLength: 0, replay: 'reissue', decode: nothing };
}

/** SYNCHRONIZE CACHE(16); blocks 0 = from lba to the end of the medium. */
export function synchronizeCache16(lba = 0, blocks = 0): ScsiCommand<void> {
  checkLba(lba, blocks);
  const c = cdb(16, 0x91);
  putLba16(c, lba, blocks);
  return { name: 'SYNCHRONIZE CACHE(16)', cdb: c, dataOut: null, expectedLength: 0, replay: 'reissue', decode: nothing };
}

export type CompareAndWriteResult = { match: true; verifiedAfterRecovery?: boolean } | { match: false; offset: number | null };

/**
 * COMPARE AND WRITE (SBC-3 5.2): atomically compare `blocks` at `lba` with `compare` and, if
 * equal, write `write`. A miscompare is an answer, not a failure: `{ match: false, offset }`
 * with the offset of the first byte that differed (from the sense INFORMATION field).
 */
export function compareAndWrite(lba: number, compare: Buffer, write: Buffer, blockSize: number, opts: { fua?: boolean } = {}): ScsiCommand<CompareAndWriteResult> {
  if (compare.length !== write.length || compare.length === 0 || compare.length % blockSize !== 0) {
    throw new EsxError('INVALID_ARGUMENT', 'compare and write buffers must be the same whole number of blocks');
  }
  const blocks = compare.length / blockSize;
  if (blocks > 255) throw new EsxError('INVALID_ARGUMENT', 'COMPARE AND WRITE covers at most 255 blocks');
  checkLba(lba, blocks);
  const c = cdb(16, 0x89);
  if (opts.fua) c[1] = 0x08;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c[13] = blocks;
  return {
    name: 'COMPARE AND WRITE',
    cdb: c,
    dataOut: Buffer.concat([compare, write]),
    expectedLength: 0,
    replay: 'verify-caw',
    decode: (r) => (r.verifiedByRead ? { match: true, verifiedAfterRecovery: true } : { match: true }),
    decodeFailure: (status, sense) => (status === SAM_STAT.CHECK_CONDITION && sense?.key === SENSE_KEY.MISCOMPARE ? { match: false, offset: sense.information } : undefined),
  };
}

export interface UnmapRange {
  lba: number;
  blocks: number;
}

export function unmap(ranges: readonly UnmapRange[]): ScsiCommand<void> {
  if (ranges.length === 0 || ranges.length > 4095) throw new EsxError('INVALID_ARGUMENT', 'UNMAP takes 1..4095 ranges');
  const param = Buffer.alloc(8 + 16 * ranges.length);
  param.writeUInt16BE(param.length - 2, 0);
  param.writeUInt16BE(16 * ranges.length, 2);
  ranges.forEach((r, i) => {
    checkLba(r.lba, r.blocks);
    param.writeBigUInt64BE(BigInt(r.lba), 8 + 16 * i);
    param.writeUInt32BE(r.blocks, 16 + 16 * i);
  });
  const c = cdb(10, 0x42);
  c.writeUInt16BE(param.length, 7);
  return { name: 'UNMAP', cdb: c, dataOut: param, expectedLength: 0, replay: 'reissue', decode: nothing };
}

export function writeSame16(lba: number, blocks: number, block: Buffer, opts: { unmap?: boolean } = {}): ScsiCommand<void> {
  checkLba(lba, blocks);
  const c = cdb(16, 0x93);
  if (opts.unmap) c[1] = 0x08;
  putLba16(c, lba, blocks);
  return { name: 'WRITE SAME(16)', cdb: c, dataOut: block, expectedLength: 0, replay: 'reissue', decode: nothing };
}

// ---- reservations -----------------------------------------------------------------------------

/** SPC-2 RESERVE(6): released on I_T nexus loss, so reissuing after a reconnect re-takes it. */
export function reserve6(): ScsiCommand<void> {
  return { name: 'RESERVE(6)', cdb: cdb(6, 0x16), dataOut: null, expectedLength: 0, replay: 'reissue', decode: nothing };
}

export function release6(): ScsiCommand<void> {
  return { name: 'RELEASE(6)', cdb: cdb(6, 0x17), dataOut: null, expectedLength: 0, replay: 'reissue', decode: nothing };
}

export const PR_TYPE = {
  WRITE_EXCLUSIVE: 1,
  EXCLUSIVE_ACCESS: 3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 8,
} as const;

export const PR_OUT = {
  REGISTER: 0,
  RESERVE: 1,
  RELEASE: 2,
  CLEAR: 3,
  PREEMPT: 4,
  PREEMPT_AND_ABORT: 5,
  REGISTER_AND_IGNORE_EXISTING_KEY: 6,
} as const;

export type PrOutAction = keyof typeof PR_OUT;

export interface PrKeys {
  generation: number;
  /** Registered keys as 16 hex digits. */
  keys: string[];
}

export interface PrReservation {
  generation: number;
  /** Null when no persistent reservation is held. */
  reservation: { key: string; scope: number; type: number } | null;
}

function prIn(sa: number, name: string): { c: Buffer; name: string } {
  const c = cdb(10, 0x5e);
  c[1] = sa;
  c.writeUInt16BE(4096, 7);
  return { c, name };
}

export function persistentReserveInReadKeys(): ScsiCommand<PrKeys> {
  const { c, name } = prIn(0x00, 'PERSISTENT RESERVE IN (READ KEYS)');
  return {
    name,
    cdb: c,
    dataOut: null,
    expectedLength: 4096,
    replay: 'reissue',
    decode: (r) => {
      const b = data(r);
      if (b.length < 8) throw new EsxError('PROTOCOL_ERROR', `READ KEYS returned ${b.length} bytes`, { reason: 'SHORT_PR_IN' });
      const n = Math.min(b.readUInt32BE(4), b.length - 8);
      const keys: string[] = [];
      for (let off = 8; off + 8 <= 8 + n; off += 8) keys.push(b.subarray(off, off + 8).toString('hex'));
      return { generation: b.readUInt32BE(0), keys };
    },
  };
}

export function persistentReserveInReadReservation(): ScsiCommand<PrReservation> {
  const { c, name } = prIn(0x01, 'PERSISTENT RESERVE IN (READ RESERVATION)');
  return {
    name,
    cdb: c,
    dataOut: null,
    expectedLength: 4096,
    replay: 'reissue',
    decode: (r) => {
      const b = data(r);
      if (b.length < 8) throw new EsxError('PROTOCOL_ERROR', `READ RESERVATION returned ${b.length} bytes`, { reason: 'SHORT_PR_IN' });
      const len = b.readUInt32BE(4);
      const reservation = len >= 16 && b.length >= 24 ? { key: b.subarray(8, 16).toString('hex'), scope: b[21]! >> 4, type: b[21]! & 0x0f } : null;
      return { generation: b.readUInt32BE(0), reservation };
    },
  };
}

function keyBytes(key: string | bigint): Buffer {
  const b = Buffer.alloc(8);
  const v = typeof key === 'bigint' ? key : BigInt(`0x${key.replace(/^0x/i, '') || '0'}`);
  if (v < 0n || v > 0xffffffffffffffffn) throw new EsxError('INVALID_ARGUMENT', `reservation key ${key} is not 64-bit`);
  b.writeBigUInt64BE(v);
  return b;
}

export interface PrOutParams {
  /** Our current key (0 when registering for the first time). Hex string or bigint. */
  key: string | bigint;
  /** REGISTER: the new key (0 unregisters); PREEMPT: the key to preempt. */
  serviceActionKey?: string | bigint;
  type?: number;
  /** Activate persist through power loss. */
  aptpl?: boolean;
}

/**
 * PERSISTENT RESERVE OUT. Replay policy: RESERVE, RELEASE and REGISTER AND IGNORE EXISTING KEY
 * are idempotent and reissued after a lost status; REGISTER (its second run conflicts: the key
 * changed), CLEAR and PREEMPT are not and fail with TASK_INTERRUPTED (read the keys to learn
 * what happened).
 */
export function persistentReserveOut(action: PrOutAction, p: PrOutParams): ScsiCommand<void> {
  const c = cdb(10, 0x5f);
  c[1] = PR_OUT[action];
  c[2] = (p.type ?? 0) & 0x0f;
  const param = Buffer.alloc(24);
  keyBytes(p.key).copy(param, 0);
  keyBytes(p.serviceActionKey ?? 0n).copy(param, 8);
  if (p.aptpl) param[20] = 0x01;
  c.writeUInt32BE(param.length, 5);
  const idempotent = action === 'RESERVE' || action === 'RELEASE' || action === 'REGISTER_AND_IGNORE_EXISTING_KEY';
  return { name: `PERSISTENT RESERVE OUT (${action})`, cdb: c, dataOut: param, expectedLength: 0, replay: idempotent ? 'reissue' : 'fail', decode: nothing };
}

/**
 * The replay policy of an arbitrary CDB (for `execute`): COMPARE AND WRITE is verified by
 * reading back, the non-idempotent PERSISTENT RESERVE OUT actions fail, everything else (reads,
 * writes of fixed data, cache and provisioning commands, SPC-2 reservations) is reissued.
 */
export function defaultReplayPolicy(cdb: Buffer): ReplayPolicy {
  const op = cdb[0];
  if (op === 0x89) return 'verify-caw';
  if (op === 0x5f) {
    const sa = cdb[1]! & 0x1f;
    return sa === PR_OUT.RESERVE || sa === PR_OUT.RELEASE || sa === PR_OUT.REGISTER_AND_IGNORE_EXISTING_KEY ? 'reissue' : 'fail';
  }
  return 'reissue';
}
