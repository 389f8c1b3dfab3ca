/**
 * Test helpers for the SCSI layer: nexuses, requests, CDB builders and sense parsing, so the
 * tests read like the initiator's side of the wire.
 */
import { parseSense, type SenseInfo } from '../src/scsi/sense.js';
import type { Nexus, ScsiRequest, ScsiResponse, ScsiTargetDevice, TaskAttribute } from '../src/scsi/types.js';

export const TARGET = 'iqn.2026-11.io.esxemu:test';

export function nexus(initiatorName = 'iqn.2026-01.io.test:host1', isid = '400001370000', tpgt = 1, targetName = TARGET): Nexus {
  const initiatorPortName = `${initiatorName},i,0x${isid}`;
  return { id: `${initiatorPortName}|${targetName},t,0x${tpgt.toString(16).padStart(4, '0')}`, initiatorName, isid, initiatorPortName, targetName, tpgt };
}

export interface RunOpts {
  dataOut?: Buffer | null;
  taskAttr?: TaskAttribute;
  signal?: AbortSignal;
  expectedLength?: number;
}

let itt = 1;

export function request(n: Nexus, lun: number, cdb: Buffer, o: RunOpts = {}): ScsiRequest {
  const c = Buffer.alloc(16);
  cdb.copy(c);
  return {
    nexus: n,
    lun,
    cdb: c,
    dataOut: o.dataOut ?? null,
    expectedLength: o.expectedLength ?? o.dataOut?.length ?? 65536,
    direction: o.dataOut ? 'write' : 'read',
    taskAttr: o.taskAttr ?? 'simple',
    taskTag: itt++,
    signal: o.signal ?? new AbortController().signal,
  };
}

export function run(dev: ScsiTargetDevice, n: Nexus, cdb: Buffer, o: RunOpts & { lun?: number } = {}): Promise<ScsiResponse> {
  return dev.execute(request(n, o.lun ?? 0, cdb, o));
}

export function sense(r: ScsiResponse): (SenseInfo & { descriptor: boolean }) | null {
  return r.sense ? parseSense(r.sense) : null;
}

/** "key/asc/ascq" of a response, or "GOOD" / the status in hex. */
export function outcome(r: ScsiResponse): string {
  if (r.status === 0) return 'GOOD';
  if (r.status !== 2 || !r.sense) return `status 0x${r.status.toString(16)}`;
  const s = parseSense(r.sense);
  return `${s.key.toString(16)}/${s.asc.toString(16).padStart(2, '0')}/${s.ascq.toString(16).padStart(2, '0')}`;
}

export const OK = 'GOOD';
export const CONFLICT = 'status 0x18';
export const INVALID_FIELD_IN_CDB = '5/24/00';
export const INVALID_FIELD_IN_PARAM = '5/26/00';
export const LBA_OUT_OF_RANGE = '5/21/00';
export const INVALID_OPCODE = '5/20/00';
export const PARAM_LIST_LENGTH_ERROR = '5/1a/00';
export const MISCOMPARE = 'e/1d/00';
export const WRITE_PROTECTED = '7/27/00';
export const LU_NOT_SUPPORTED = '5/25/00';
export const POWER_ON_RESET = '6/29/00';

function b(...bytes: number[]): Buffer {
  return Buffer.from(bytes);
}
function u16(v: number): number[] {
  return [(v >> 8) & 0xff, v & 0xff];
}
function u32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}
function u64(v: number | bigint): number[] {
  const x = BigInt(v);
  return [...u32(Number((x >> 32n) & 0xffffffffn)), ...u32(Number(x & 0xffffffffn))];
}

export const cdb = {
  tur: () => b(0x00, 0, 0, 0, 0, 0),
  requestSense: (alloc = 252, desc = false) => b(0x03, desc ? 1 : 0, 0, 0, alloc, 0),
  inquiry: (evpd: boolean, page: number, alloc = 255) => b(0x12, evpd ? 1 : 0, page, ...u16(alloc), 0),
  reportLuns: (alloc = 4096, select = 0) => b(0xa0, 0, select, 0, 0, 0, ...u32(alloc), 0, 0),
  modeSense6: (page: number, pc = 0, alloc = 255, dbd = false, subpage = 0) => b(0x1a, dbd ? 0x08 : 0, (pc << 6) | page, subpage, alloc, 0),
  modeSense10: (page: number, pc = 0, alloc = 1024, dbd = false, llbaa = false) => b(0x5a, (dbd ? 0x08 : 0) | (llbaa ? 0x10 : 0), (pc << 6) | page, 0, 0, 0, 0, ...u16(alloc), 0),
  modeSelect6: (len: number, sp = false) => b(0x15, 0x10 | (sp ? 1 : 0), 0, 0, len, 0),
  modeSelect10: (len: number) => b(0x55, 0x10, 0, 0, 0, 0, 0, ...u16(len), 0),
  readCapacity10: () => b(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0),
  readCapacity16: (alloc = 32) => b(0x9e, 0x10, ...u64(0), ...u32(alloc), 0, 0),
  read6: (lba: number, n: number) => b(0x08, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, n & 0xff, 0),
  write6: (lba: number, n: number) => b(0x0a, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, n & 0xff, 0),
  read10: (lba: number, n: number, flags = 0) => b(0x28, flags, ...u32(lba), 0, ...u16(n), 0),
  write10: (lba: number, n: number, flags = 0) => b(0x2a, flags, ...u32(lba), 0, ...u16(n), 0),
  read12: (lba: number, n: number, flags = 0) => b(0xa8, flags, ...u32(lba), ...u32(n), 0, 0),
  write12: (lba: number, n: number, flags = 0) => b(0xaa, flags, ...u32(lba), ...u32(n), 0, 0),
  read16: (lba: number | bigint, n: number, flags = 0) => b(0x88, flags, ...u64(lba), ...u32(n), 0, 0),
  write16: (lba: number | bigint, n: number, flags = 0) => b(0x8a, flags, ...u64(lba), ...u32(n), 0, 0),
  writeVerify10: (lba: number, n: number, bytchk = true) => b(0x2e, bytchk ? 0x02 : 0, ...u32(lba), 0, ...u16(n), 0),
  verify10: (lba: number, n: number, bytchk = 0) => b(0x2f, bytchk << 1, ...u32(lba), 0, ...u16(n), 0),
  verify16: (lba: number, n: number, bytchk = 0) => b(0x8f, bytchk << 1, ...u64(lba), ...u32(n), 0, 0),
  writeSame10: (lba: number, n: number, flags = 0) => b(0x41, flags, ...u32(lba), 0, ...u16(n), 0),
  writeSame16: (lba: number, n: number, flags = 0) => b(0x93, flags, ...u64(lba), ...u32(n), 0, 0),
  unmap: (len: number, anchor = false) => b(0x42, anchor ? 1 : 0, 0, 0, 0, 0, 0, ...u16(len), 0),
  getLbaStatus: (lba: number | bigint, alloc = 4096) => b(0x9e, 0x12, ...u64(lba), ...u32(alloc), 0, 0),
  preFetch10: (lba: number, n: number) => b(0x34, 0, ...u32(lba), 0, ...u16(n), 0),
  syncCache10: (lba = 0, n = 0) => b(0x35, 0, ...u32(lba), 0, ...u16(n), 0),
  syncCache16: (lba = 0, n = 0) => b(0x91, 0, ...u64(lba), ...u32(n), 0, 0),
  compareAndWrite: (lba: number, n: number, flags = 0) => b(0x89, flags, ...u64(lba), 0, 0, 0, n, 0, 0),
  orWrite16: (lba: number, n: number) => b(0x8b, 0, ...u64(lba), ...u32(n), 0, 0),
  startStop: (start: boolean, loej = false, immed = false) => b(0x1b, immed ? 1 : 0, 0, 0, (loej ? 2 : 0) | (start ? 1 : 0), 0),
  preventAllow: (prevent: boolean) => b(0x1e, 0, 0, 0, prevent ? 1 : 0, 0),
  reserve6: () => b(0x16, 0, 0, 0, 0, 0),
  release6: () => b(0x17, 0, 0, 0, 0, 0),
  reserve10: () => b(0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0),
  release10: () => b(0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0),
  prIn: (sa: number, alloc = 8192) => b(0x5e, sa, 0, 0, 0, 0, 0, ...u16(alloc), 0),
  prOut: (sa: number, type = 0, len = 24, scope = 0) => b(0x5f, sa, (scope << 4) | type, 0, 0, ...u32(len), 0),
  rsoc: (options = 0, opcode = 0, sa = 0, rctd = false, alloc = 65536) => b(0xa3, 0x0c, (rctd ? 0x80 : 0) | options, opcode, ...u16(sa), ...u32(alloc), 0, 0),
  rstmf: (alloc = 16, repd = false) => b(0xa3, 0x0d, repd ? 0x80 : 0, 0, 0, 0, ...u32(alloc), 0, 0),
};

/** PERSISTENT RESERVE OUT basic parameter list. */
export function prParams(key: bigint, sark: bigint, flags = 0): Buffer {
  const p = Buffer.alloc(24);
  p.writeBigUInt64BE(key, 0);
  p.writeBigUInt64BE(sark, 8);
  p[20] = flags;
  return p;
}

/** UNMAP parameter list. */
export function unmapParams(extents: [number, number][]): Buffer {
  const p = Buffer.alloc(8 + 16 * extents.length);
  p.writeUInt16BE(p.length - 2, 0);
  p.writeUInt16BE(16 * extents.length, 2);
  extents.forEach(([lba, n], i) => {
    p.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    p.writeUInt32BE(n, 16 + 16 * i);
  });
  return p;
}

export function fill(blocks: number, byte: number, bs = 512): Buffer {
  return Buffer.alloc(blocks * bs, byte);
}
