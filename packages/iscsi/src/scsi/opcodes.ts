/**
 * The one opcode table: operation code (+ service action) -> handler, CDB length, data
 * direction, CDB usage data (what REPORT SUPPORTED OPERATION CODES returns), how the command
 * stands against reservations, whether it needs the medium, writes it, or is exempt from unit
 * attentions. The logical unit does the checks the table describes before calling the handler.
 */
import { be16, be32, lbaRange } from './cdb.js';
import type { Handler } from './command.js';
import type { LogicalUnit } from './logical-unit.js';
import { persistentReserveIn, persistentReserveOut } from './persistent-reserve.js';
import { reportSupportedOpcodes, reportSupportedTmfs } from './report-opcodes.js';
import type { AccessClass } from './reservations.js';
import * as sbc from './sbc.js';
import * as spc from './spc.js';
import type { DataDirection } from './types.js';

export interface OpcodeEntry {
  opcode: number;
  /** Service action, for opcodes that have them. */
  sa?: number;
  name: string;
  cdbLength: number;
  direction: DataDirection;
  /** CDB USAGE DATA: byte 0 is the opcode, then the bits this target honours or accepts. */
  usage: readonly number[];
  handler: Handler;
  /** Access class for persistent reservation conflicts. */
  access: AccessClass | ((cdb: Buffer) => AccessClass);
  /** Allowed while another I_T nexus holds an SPC-2 reservation. */
  spc2Exempt?: boolean | ((cdb: Buffer) => boolean);
  /** INQUIRY, REPORT LUNS, REQUEST SENSE: not failed by a pending unit attention. */
  uaExempt?: boolean;
  /** Needs the medium present and the unit started. */
  medium?: boolean;
  /** Changes blocks: refused on a write-protected unit. */
  writes?: boolean;
  /** Absent: always supported. */
  supported?: (lu: LogicalUnit) => boolean;
  /** Bytes of Data-Out the CDB calls for (reported to the transport for residuals). */
  dataOut?: (cdb: Buffer, blockSize: number) => number;
}

/** Opcodes that carry a service action in byte 1. */
export const SERVICE_ACTION_OPCODES = new Set([spc.OP.PERSISTENT_RESERVE_IN, spc.OP.PERSISTENT_RESERVE_OUT, sbc.OP.SERVICE_ACTION_IN_16, spc.OP.MAINTENANCE_IN]);

const L4 = [0xff, 0xff, 0xff, 0xff];
const L8 = [...L4, ...L4];
const blocksOut = (cdb: Buffer, bs: number) => lbaRange(cdb).blocks * bs;
const thin = (lu: LogicalUnit) => lu.thin;

function rw(opcode: number, name: string, len: 6 | 10 | 12 | 16, dir: 'read' | 'write', handler: Handler, extra: Partial<OpcodeEntry> = {}): OpcodeEntry {
  const usage =
    len === 6
      ? [opcode, 0x1f, 0xff, 0xff, 0xff, 0x00]
      : len === 10
        ? [opcode, 0x18, ...L4, 0x1f, 0xff, 0xff, 0x00]
        : len === 12
          ? [opcode, 0x18, ...L4, ...L4, 0x1f, 0x00]
          : [opcode, 0x18, ...L8, ...L4, 0x1f, 0x00];
  return {
    opcode,
    name,
    cdbLength: len,
    direction: dir,
    usage,
    handler,
    access: dir,
    medium: true,
    writes: dir === 'write',
    ...(dir === 'write' ? { dataOut: blocksOut } : {}),
    ...extra,
  };
}

function verifyUsage(opcode: number, len: 10 | 12 | 16): number[] {
  return len === 10 ? [opcode, 0x16, ...L4, 0x1f, 0xff, 0xff, 0x00] : len === 12 ? [opcode, 0x16, ...L4, ...L4, 0x1f, 0x00] : [opcode, 0x16, ...L8, ...L4, 0x1f, 0x00];
}

function verifyDataOut(cdb: Buffer, bs: number): number {
  const check = (cdb[1]! >> 1) & 0x03;
  return check === 1 ? lbaRange(cdb).blocks * bs : check === 3 ? bs : 0;
}

function writeVerifyUsage(opcode: number, len: 10 | 12 | 16): number[] {
  return len === 10 ? [opcode, 0x12, ...L4, 0x1f, 0xff, 0xff, 0x00] : len === 12 ? [opcode, 0x12, ...L4, ...L4, 0x1f, 0x00] : [opcode, 0x12, ...L8, ...L4, 0x1f, 0x00];
}

export const OPCODES: readonly OpcodeEntry[] = [
  // --- SPC ---
  { opcode: spc.OP.TEST_UNIT_READY, name: 'TEST UNIT READY', cdbLength: 6, direction: 'none', usage: [0x00, 0, 0, 0, 0, 0], handler: spc.testUnitReady, access: 'none', medium: true },
  { opcode: spc.OP.REQUEST_SENSE, name: 'REQUEST SENSE', cdbLength: 6, direction: 'read', usage: [0x03, 0x01, 0, 0, 0xff, 0], handler: spc.requestSense, access: 'none', spc2Exempt: true, uaExempt: true },
  { opcode: spc.OP.INQUIRY, name: 'INQUIRY', cdbLength: 6, direction: 'read', usage: [0x12, 0x01, 0xff, 0xff, 0xff, 0], handler: spc.inquiry, access: 'none', spc2Exempt: true, uaExempt: true },
  { opcode: spc.OP.MODE_SELECT_6, name: 'MODE SELECT(6)', cdbLength: 6, direction: 'write', usage: [0x15, 0x11, 0, 0, 0xff, 0], handler: spc.modeSelect, access: 'write', dataOut: (cdb) => cdb[4]! },
  { opcode: spc.OP.RESERVE_6, name: 'RESERVE(6)', cdbLength: 6, direction: 'none', usage: [0x16, 0, 0, 0, 0, 0], handler: spc.reserve, access: 'none', spc2Exempt: true },
  { opcode: spc.OP.RELEASE_6, name: 'RELEASE(6)', cdbLength: 6, direction: 'none', usage: [0x17, 0, 0, 0, 0, 0], handler: spc.release, access: 'none', spc2Exempt: true },
  { opcode: spc.OP.MODE_SENSE_6, name: 'MODE SENSE(6)', cdbLength: 6, direction: 'read', usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0], handler: spc.modeSense, access: 'read' },
  {
    opcode: spc.OP.PREVENT_ALLOW_MEDIUM_REMOVAL,
    name: 'PREVENT ALLOW MEDIUM REMOVAL',
    cdbLength: 6,
    direction: 'none',
    usage: [0x1e, 0, 0, 0, 0x01, 0],
    handler: spc.preventAllowMediumRemoval,
    access: (cdb) => ((cdb[4]! & 0x03) === 0 ? 'none' : 'write'),
    spc2Exempt: (cdb) => (cdb[4]! & 0x03) === 0,
  },
  { opcode: spc.OP.MODE_SELECT_10, name: 'MODE SELECT(10)', cdbLength: 10, direction: 'write', usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0], handler: spc.modeSelect, access: 'write', dataOut: (cdb) => be16(cdb, 7) },
  { opcode: spc.OP.RESERVE_10, name: 'RESERVE(10)', cdbLength: 10, direction: 'none', usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0], handler: spc.reserve, access: 'none', spc2Exempt: true },
  { opcode: spc.OP.RELEASE_10, name: 'RELEASE(10)', cdbLength: 10, direction: 'none', usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0], handler: spc.release, access: 'none', spc2Exempt: true },
  { opcode: spc.OP.MODE_SENSE_10, name: 'MODE SENSE(10)', cdbLength: 10, direction: 'read', usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0], handler: spc.modeSense, access: 'read' },
  ...[0, 1, 2, 3].map(
    (sa): OpcodeEntry => ({ opcode: spc.OP.PERSISTENT_RESERVE_IN, sa, name: `PERSISTENT RESERVE IN/${sa}`, cdbLength: 10, direction: 'read', usage: [0x5e, sa, 0, 0, 0, 0, 0, 0xff, 0xff, 0], handler: persistentReserveIn, access: 'none', spc2Exempt: true }),
  ),
  ...[0, 1, 2, 3, 4, 5, 6, 7].map(
    (sa): OpcodeEntry => ({
      opcode: spc.OP.PERSISTENT_RESERVE_OUT,
      sa,
      name: `PERSISTENT RESERVE OUT/${sa}`,
      cdbLength: 10,
      direction: 'write',
      usage: [0x5f, sa, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
      handler: persistentReserveOut,
      access: 'none',
      spc2Exempt: true,
      dataOut: (cdb) => be32(cdb, 5),
    }),
  ),
  { opcode: spc.OP.REPORT_LUNS, name: 'REPORT LUNS', cdbLength: 12, direction: 'read', usage: [0xa0, 0, 0xff, 0, 0, 0, ...L4, 0, 0], handler: spc.reportLunsCommand, access: 'none', spc2Exempt: true, uaExempt: true },
  {
    opcode: spc.OP.MAINTENANCE_IN,
    sa: 0x0c,
    name: 'REPORT SUPPORTED OPERATION CODES',
    cdbLength: 12,
    direction: 'read',
    usage: [0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, ...L4, 0, 0],
    handler: (cmd) => reportSupportedOpcodes(cmd, OPCODES),
    access: 'none',
    spc2Exempt: true,
  },
  { opcode: spc.OP.MAINTENANCE_IN, sa: 0x0d, name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', cdbLength: 12, direction: 'read', usage: [0xa3, 0x0d, 0x80, 0, 0, 0, ...L4, 0, 0], handler: reportSupportedTmfs, access: 'none', spc2Exempt: true },

  // --- SBC ---
  rw(sbc.OP.READ_6, 'READ(6)', 6, 'read', sbc.read),
  rw(sbc.OP.WRITE_6, 'WRITE(6)', 6, 'write', sbc.write),
  { opcode: sbc.OP.START_STOP_UNIT, name: 'START STOP UNIT', cdbLength: 6, direction: 'none', usage: [0x1b, 0x01, 0, 0, 0xf7, 0], handler: sbc.startStopUnit, access: 'write' },
  { opcode: sbc.OP.READ_CAPACITY_10, name: 'READ CAPACITY(10)', cdbLength: 10, direction: 'read', usage: [0x25, 0, ...L4, 0, 0, 0x01, 0], handler: sbc.readCapacity10, access: 'none', medium: true },
  rw(sbc.OP.READ_10, 'READ(10)', 10, 'read', sbc.read),
  rw(sbc.OP.WRITE_10, 'WRITE(10)', 10, 'write', sbc.write),
  rw(sbc.OP.WRITE_AND_VERIFY_10, 'WRITE AND VERIFY(10)', 10, 'write', sbc.writeAndVerify, { usage: writeVerifyUsage(0x2e, 10) }),
  rw(sbc.OP.VERIFY_10, 'VERIFY(10)', 10, 'read', sbc.verify, { usage: verifyUsage(0x2f, 10), direction: 'write', dataOut: verifyDataOut }),
  rw(sbc.OP.PRE_FETCH_10, 'PRE-FETCH(10)', 10, 'read', sbc.preFetch, { direction: 'none', usage: [0x34, 0x02, ...L4, 0x1f, 0xff, 0xff, 0] }),
  rw(sbc.OP.SYNCHRONIZE_CACHE_10, 'SYNCHRONIZE CACHE(10)', 10, 'read', sbc.synchronizeCache, { direction: 'none', access: 'write', usage: [0x35, 0x02, ...L4, 0x1f, 0xff, 0xff, 0] }),
  {
    opcode: sbc.OP.WRITE_SAME_10,
    name: 'WRITE SAME(10)',
    cdbLength: 10,
    direction: 'write',
    usage: [0x41, 0x08, ...L4, 0x1f, 0xff, 0xff, 0],
    handler: sbc.writeSame,
    access: 'write',
    medium: true,
    writes: true,
    dataOut: (_cdb, bs) => bs,
  },
  { opcode: sbc.OP.UNMAP, name: 'UNMAP', cdbLength: 10, direction: 'write', usage: [0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0], handler: sbc.unmap, access: 'write', medium: true, writes: true, supported: thin, dataOut: (cdb) => be16(cdb, 7) },
  rw(sbc.OP.READ_16, 'READ(16)', 16, 'read', sbc.read),
  {
    opcode: sbc.OP.COMPARE_AND_WRITE,
    name: 'COMPARE AND WRITE',
    cdbLength: 16,
    direction: 'write',
    usage: [0x89, 0x18, ...L8, 0, 0, 0, 0xff, 0x1f, 0],
    handler: sbc.compareAndWrite,
    access: 'write',
    medium: true,
    writes: true,
    supported: (lu) => lu.ats,
    dataOut: (cdb, bs) => 2 * cdb[13]! * bs,
  },
  rw(sbc.OP.WRITE_16, 'WRITE(16)', 16, 'write', sbc.write),
  rw(sbc.OP.ORWRITE_16, 'ORWRITE(16)', 16, 'write', sbc.orWrite),
  rw(sbc.OP.WRITE_AND_VERIFY_16, 'WRITE AND VERIFY(16)', 16, 'write', sbc.writeAndVerify, { usage: writeVerifyUsage(0x8e, 16) }),
  rw(sbc.OP.VERIFY_16, 'VERIFY(16)', 16, 'read', sbc.verify, { usage: verifyUsage(0x8f, 16), direction: 'write', dataOut: verifyDataOut }),
  rw(sbc.OP.PRE_FETCH_16, 'PRE-FETCH(16)', 16, 'read', sbc.preFetch, { direction: 'none', usage: [0x90, 0x02, ...L8, ...L4, 0x1f, 0] }),
  rw(sbc.OP.SYNCHRONIZE_CACHE_16, 'SYNCHRONIZE CACHE(16)', 16, 'read', sbc.synchronizeCache, { direction: 'none', access: 'write', usage: [0x91, 0x02, ...L8, ...L4, 0x1f, 0] }),
  {
    opcode: sbc.OP.WRITE_SAME_16,
    name: 'WRITE SAME(16)',
    cdbLength: 16,
    direction: 'write',
    usage: [0x93, 0x09, ...L8, ...L4, 0x1f, 0],
    handler: sbc.writeSame,
    access: 'write',
    medium: true,
    writes: true,
    dataOut: (cdb, bs) => (cdb[1]! & 0x01 ? 0 : bs),
  },
  { opcode: sbc.OP.SERVICE_ACTION_IN_16, sa: sbc.SAI.READ_CAPACITY_16, name: 'READ CAPACITY(16)', cdbLength: 16, direction: 'read', usage: [0x9e, 0x10, ...L8, ...L4, 0, 0], handler: sbc.readCapacity16, access: 'none', medium: true },
  { opcode: sbc.OP.SERVICE_ACTION_IN_16, sa: sbc.SAI.GET_LBA_STATUS, name: 'GET LBA STATUS', cdbLength: 16, direction: 'read', usage: [0x9e, 0x12, ...L8, ...L4, 0, 0], handler: sbc.getLbaStatus, access: 'read', medium: true },
  rw(sbc.OP.READ_12, 'READ(12)', 12, 'read', sbc.read),
  rw(sbc.OP.WRITE_12, 'WRITE(12)', 12, 'write', sbc.write),
  rw(sbc.OP.WRITE_AND_VERIFY_12, 'WRITE AND VERIFY(12)', 12, 'write', sbc.writeAndVerify, { usage: writeVerifyUsage(0xae, 12) }),
  rw(sbc.OP.VERIFY_12, 'VERIFY(12)', 12, 'read', sbc.verify, { usage: verifyUsage(0xaf, 12), direction: 'write', dataOut: verifyDataOut }),
];

const BY_KEY = new Map<number, OpcodeEntry>();
for (const e of OPCODES) {
  const key = e.sa === undefined ? e.opcode << 8 : (e.opcode << 8) | 0x80 | e.sa;
  if (BY_KEY.has(key)) throw new Error(`duplicate opcode table entry ${e.name}`);
  if (e.usage.length !== e.cdbLength || e.usage[0] !== e.opcode) throw new Error(`bad usage data for ${e.name}`);
  BY_KEY.set(key, e);
}

export type Lookup = { entry: OpcodeEntry } | { badServiceAction: true } | null;

/** Find the entry for a CDB: null for an unknown opcode, badServiceAction for an unknown service action. */
export function lookupOpcode(cdb: Buffer): Lookup {
  const op = cdb[0]!;
  if (SERVICE_ACTION_OPCODES.has(op as never)) {
    const e = BY_KEY.get((op << 8) | 0x80 | (cdb[1]! & 0x1f));
    return e ? { entry: e } : { badServiceAction: true };
  }
  const e = BY_KEY.get(op << 8);
  return e ? { entry: e } : null;
}

export function findEntry(opcode: number, sa?: number): OpcodeEntry | undefined {
  return BY_KEY.get(sa === undefined ? opcode << 8 : (opcode << 8) | 0x80 | (sa & 0x1f));
}
