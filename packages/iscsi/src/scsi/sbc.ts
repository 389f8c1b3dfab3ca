/**
 * Block commands (tgt's sbc.c): READ CAPACITY, READ/WRITE, WRITE AND VERIFY, VERIFY, WRITE
 * SAME, UNMAP, GET LBA STATUS, PRE-FETCH, SYNCHRONIZE CACHE, COMPARE AND WRITE, ORWRITE, START
 * STOP UNIT. Every LBA range and length is checked against the capacity and the advertised
 * block limits before any I/O; every command that changes blocks holds the range lock of its
 * extent, which makes COMPARE AND WRITE and ORWRITE atomic against other writes.
 */
import { be16, be32, be64, cdbLengthOf, lbaRange, rwFlags, truncateTo } from './cdb.js';
import { checkCondition, good, illegalRequest, invalidCdbField, invalidOpcode, invalidParamField, lbaOutOfRange, TASK_ABORTED, type Command, type CommandResult } from './command.js';
import { ASC, SENSE_KEY } from './sense.js';

export const OP = {
  READ_6: 0x08,
  WRITE_6: 0x0a,
  START_STOP_UNIT: 0x1b,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  WRITE_AND_VERIFY_10: 0x2e,
  VERIFY_10: 0x2f,
  PRE_FETCH_10: 0x34,
  SYNCHRONIZE_CACHE_10: 0x35,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  READ_16: 0x88,
  COMPARE_AND_WRITE: 0x89,
  WRITE_16: 0x8a,
  ORWRITE_16: 0x8b,
  WRITE_AND_VERIFY_16: 0x8e,
  VERIFY_16: 0x8f,
  PRE_FETCH_16: 0x90,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  SERVICE_ACTION_IN_16: 0x9e,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  WRITE_AND_VERIFY_12: 0xae,
  VERIFY_12: 0xaf,
} as const;

export const SAI = { READ_CAPACITY_16: 0x10, GET_LBA_STATUS: 0x12 } as const;

/** Largest buffer one step of WRITE SAME / VERIFY builds. */
const CHUNK_BYTES = 1024 * 1024;

/** Byte offset of the TRANSFER LENGTH field, by CDB length (for field pointers). */
function lengthByte(cdb: Buffer): number {
  return { 6: 4, 10: 7, 12: 6, 16: 10 }[cdbLengthOf(cdb[0]!)] ?? 0;
}

/** LBA range and transfer length checks, in SBC order: range first, then the limit. */
function checkExtent(cmd: Command, lba: number, blocks: number, max: number): CommandResult | null {
  if (lba + blocks > cmd.lu.capacityBlocks) return lbaOutOfRange();
  if (blocks > max) return invalidCdbField(lengthByte(cmd.cdb));
  return null;
}

/** Whole blocks of Data-Out received, at most `blocks` (an initiator may send less than the CDB says). */
function receivedBlocks(cmd: Command, blocks: number): number {
  return Math.min(blocks, Math.floor((cmd.req.dataOut?.length ?? 0) / cmd.lu.blockSize));
}

function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return a.length;
}

function miscompare(offset: number): CommandResult {
  return checkCondition(SENSE_KEY.MISCOMPARE, ASC.MISCOMPARE_DURING_VERIFY, { information: offset });
}

export function readCapacity10(cmd: Command): CommandResult {
  const lba = be32(cmd.cdb, 2);
  const pmi = (cmd.cdb[8]! & 0x01) !== 0;
  if (!pmi && lba !== 0) return invalidCdbField(2);
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.min(cmd.lu.capacityBlocks - 1, 0xffffffff), 0);
  b.writeUInt32BE(cmd.lu.blockSize, 4);
  return good(b);
}

export function readCapacity16(cmd: Command): CommandResult {
  const alloc = be32(cmd.cdb, 10);
  const lu = cmd.lu;
  const b = Buffer.alloc(32);
  b.writeBigUInt64BE(BigInt(lu.capacityBlocks - 1), 0);
  b.writeUInt32BE(lu.blockSize, 8);
  // byte 12: no protection; byte 13: LBPPBE 0 (one logical block per physical block)
  if (lu.thin) b[14] = 0x80 | 0x40; // LBPME, LBPRZ; LOWEST ALIGNED LBA 0
  return good(truncateTo(b, alloc));
}

export async function read(cmd: Command): Promise<CommandResult> {
  const { lba, blocks } = lbaRange(cmd.cdb);
  const f = rwFlags(cmd.cdb);
  if (f.protect) return invalidCdbField(1, 7);
  const bad = checkExtent(cmd, lba, blocks, cmd.lu.limits.maxTransferBlocks);
  if (bad) return bad;
  if (blocks === 0) return good(Buffer.alloc(0));
  const lu = cmd.lu;
  if (f.fua) await lu.backstore.flush(); // FUA: from the medium, so cached writes go there first
  const data = await lu.backstore.read(lba * lu.blockSize, blocks * lu.blockSize);
  return cmd.aborted() ? TASK_ABORTED : good(data);
}

export async function write(cmd: Command): Promise<CommandResult> {
  const { lba, blocks } = lbaRange(cmd.cdb);
  const f = rwFlags(cmd.cdb);
  if (f.protect) return invalidCdbField(1, 7);
  const bad = checkExtent(cmd, lba, blocks, cmd.lu.limits.maxTransferBlocks);
  if (bad) return bad;
  const n = receivedBlocks(cmd, blocks);
  if (n === 0) return good();
  const lu = cmd.lu;
  const unlock = await lu.lock(lba, n);
  try {
    if (cmd.aborted()) return TASK_ABORTED;
    await lu.backstore.write(lba * lu.blockSize, cmd.req.dataOut!.subarray(0, n * lu.blockSize), { fua: f.fua || !lu.modePages.wce });
  } finally {
    unlock();
  }
  return good();
}

/** BYTCHK of VERIFY and WRITE AND VERIFY (byte 1 bits 2:1). */
function bytchk(cdb: Buffer): number {
  return (cdb[1]! >> 1) & 0x03;
}

export async function writeAndVerify(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const { lba, blocks } = lbaRange(cdb);
  if (cdb[1]! >> 5) return invalidCdbField(1, 7); // WRPROTECT
  const check = bytchk(cdb);
  if (check > 1) return invalidCdbField(1, 2);
  const bad = checkExtent(cmd, lba, blocks, cmd.lu.limits.maxTransferBlocks);
  if (bad) return bad;
  const n = receivedBlocks(cmd, blocks);
  if (n === 0) return good();
  const lu = cmd.lu;
  const data = cmd.req.dataOut!.subarray(0, n * lu.blockSize);
  const unlock = await lu.lock(lba, n);
  try {
    if (cmd.aborted()) return TASK_ABORTED;
    await lu.backstore.write(lba * lu.blockSize, data, { fua: true }); // verified means on the medium
    if (check === 1) {
      const back = await lu.backstore.read(lba * lu.blockSize, data.length);
      const off = firstDifference(back, data);
      if (off >= 0) return miscompare(off);
    }
  } finally {
    unlock();
  }
  return good();
}

export async function verify(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const { lba, blocks } = lbaRange(cdb);
  if (cdb[1]! >> 5) return invalidCdbField(1, 7); // VRPROTECT
  const check = bytchk(cdb);
  if (check === 2) return invalidCdbField(1, 2);
  const lu = cmd.lu;
  const bad = checkExtent(cmd, lba, blocks, lu.limits.maxTransferBlocks);
  if (bad) return bad;
  if (blocks === 0) return good();
  const bs = lu.blockSize;
  if (check === 0) {
    // medium verification: every block must be readable
    for (let done = 0; done < blocks; ) {
      if (cmd.aborted()) return TASK_ABORTED;
      const n = Math.min(blocks - done, CHUNK_BYTES / bs);
      await lu.backstore.read((lba + done) * bs, n * bs);
      done += n;
    }
    return good();
  }
  const data = cmd.req.dataOut ?? Buffer.alloc(0);
  if (check === 1) {
    const n = receivedBlocks(cmd, blocks);
    if (n === 0) return good();
    const medium = await lu.backstore.read(lba * bs, n * bs);
    const off = firstDifference(medium, data.subarray(0, n * bs));
    return off >= 0 ? miscompare(off) : good();
  }
  // BYTCHK 11b: one block of Data-Out compared with every block of the range
  if (data.length < bs) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const block = data.subarray(0, bs);
  for (let i = 0; i < blocks; i++) {
    if (i % 256 === 0 && cmd.aborted()) return TASK_ABORTED;
    const medium = await lu.backstore.read((lba + i) * bs, bs);
    const off = firstDifference(medium, block);
    if (off >= 0) return miscompare(i * bs + off);
  }
  return good();
}

/**
 * WRITE SAME (10/16). WSNZ is 1 (zero blocks is refused). With UNMAP=1 on a thin LU the range is
 * deallocated (and reads back as zeros, LBPRZ=1) whatever the Data-Out block holds, as Linux's
 * targets do; NDOB (16 only) means a block of zeros with no Data-Out. ANCHOR is not supported.
 */
export async function writeSame(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const sixteen = cdb[0] === OP.WRITE_SAME_16;
  const b1 = cdb[1]!;
  const { lba, blocks } = lbaRange(cdb);
  const lu = cmd.lu;
  const bs = lu.blockSize;
  if (b1 >> 5) return invalidCdbField(1, 7); // WRPROTECT
  if (b1 & 0x10) return invalidCdbField(1, 4); // ANCHOR: ANC_SUP is 0
  const unmapBit = (b1 & 0x08) !== 0;
  const ndob = sixteen && (b1 & 0x01) !== 0;
  if (lba + blocks > lu.capacityBlocks) return lbaOutOfRange();
  if (blocks === 0) return invalidCdbField(lengthByte(cdb)); // WSNZ
  if (blocks > lu.limits.maxWriteSameBlocks) return invalidCdbField(lengthByte(cdb));
  const dataOut = cmd.req.dataOut ?? Buffer.alloc(0);
  if (!ndob && dataOut.length !== bs) return invalidCdbField(lengthByte(cdb)); // exactly one block of Data-Out
  const block = ndob ? Buffer.alloc(bs) : dataOut;
  const unlock = await lu.lock(lba, blocks);
  try {
    if (cmd.aborted()) return TASK_ABORTED;
    if (unmapBit && lu.thin) {
      await lu.backstore.unmap(lba * bs, blocks * bs);
      return good();
    }
    const perChunk = Math.max(1, Math.min(blocks, Math.floor(CHUNK_BYTES / bs)));
    const pattern = Buffer.alloc(perChunk * bs);
    for (let i = 0; i < perChunk; i++) block.copy(pattern, i * bs);
    const fua = !lu.modePages.wce;
    for (let done = 0; done < blocks; ) {
      if (cmd.aborted()) return TASK_ABORTED;
      const n = Math.min(perChunk, blocks - done);
      await lu.backstore.write((lba + done) * bs, pattern.subarray(0, n * bs), { fua });
      done += n;
    }
  } finally {
    unlock();
  }
  return good();
}

/** UNMAP: every descriptor is checked (range, counts) before any block is deallocated. */
export async function unmap(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  if (!lu.thin) return invalidOpcode();
  if (cdb[1]! & 0x01) return invalidCdbField(1, 0); // ANCHOR
  const plen = be16(cdb, 7);
  if (plen === 0) return good();
  if (plen < 8) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const data = (cmd.req.dataOut ?? Buffer.alloc(0)).subarray(0, plen);
  if (data.length < 8) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const bdLen = Math.min(be16(data, 2), data.length - 8);
  const count = Math.floor(bdLen / 16);
  if (count > lu.limits.maxUnmapDescriptors) return invalidParamField(2);
  const extents: { lba: number; blocks: number }[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = 8 + 16 * i;
    const lba = be64(data, at);
    const blocks = be32(data, at + 8);
    if (lba + blocks > lu.capacityBlocks) return lbaOutOfRange();
    total += blocks;
    if (blocks > lu.limits.maxUnmapBlocks || total > lu.limits.maxUnmapBlocks) return invalidParamField(at + 8);
    if (blocks > 0) extents.push({ lba, blocks });
  }
  const bs = lu.blockSize;
  for (const e of extents) {
    if (cmd.aborted()) return TASK_ABORTED;
    const unlock = await lu.lock(e.lba, e.blocks);
    try {
      await lu.backstore.unmap(e.lba * bs, e.blocks * bs);
    } finally {
      unlock();
    }
  }
  return good();
}

/** GET LBA STATUS: LBA status descriptors from the starting LBA, as many as the allocation length holds. */
export async function getLbaStatus(cmd: Command): Promise<CommandResult> {
  const lu = cmd.lu;
  const lba = be64(cmd.cdb, 2);
  const alloc = be32(cmd.cdb, 10);
  if (lba >= lu.capacityBlocks) return lbaOutOfRange();
  const bs = lu.blockSize;
  const maxDescriptors = Math.max(1, Math.min(1024, Math.floor((Math.min(alloc, 65536) - 8) / 16)));
  const runs = await lu.backstore.mapping(lba * bs, (lu.capacityBlocks - lba) * bs);
  const descs: Buffer[] = [];
  for (const r of runs) {
    let start = r.offset / bs;
    let left = r.length / bs;
    while (left > 0 && descs.length < maxDescriptors) {
      const n = Math.min(left, 0xffffffff);
      const d = Buffer.alloc(16);
      d.writeBigUInt64BE(BigInt(start), 0);
      d.writeUInt32BE(n, 8);
      d[12] = r.mapped ? 0x00 : 0x01; // PROVISIONING STATUS: mapped / deallocated
      descs.push(d);
      start += n;
      left -= n;
    }
    if (descs.length >= maxDescriptors) break;
  }
  const h = Buffer.alloc(8);
  h.writeUInt32BE(4 + 16 * descs.length, 0);
  return good(truncateTo(Buffer.concat([h, ...descs]), alloc));
}

/** PRE-FETCH: nothing is cached ahead here, so after the checks it completes with GOOD (SBC-3 allows it). */
export function preFetch(cmd: Command): CommandResult {
  const { lba, blocks } = lbaRange(cmd.cdb);
  return checkExtent(cmd, lba, blocks, cmd.lu.limits.maxTransferBlocks) ?? good();
}

/** SYNCHRONIZE CACHE: fdatasync of the whole LUN (IMMED is honoured by completing after the flush). */
export async function synchronizeCache(cmd: Command): Promise<CommandResult> {
  const { lba, blocks } = lbaRange(cmd.cdb);
  if (lba + blocks > cmd.lu.capacityBlocks) return lbaOutOfRange();
  await cmd.lu.backstore.flush();
  return good();
}

/** COMPARE AND WRITE: read, compare and write under the range lock: no other write to those LBAs in between. */
export async function compareAndWrite(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  if (cdb[1]! >> 5) return invalidCdbField(1, 7); // WRPROTECT
  const fua = (cdb[1]! & 0x08) !== 0;
  const lba = be64(cdb, 2);
  const nb = cdb[13]!;
  if (lba + nb > lu.capacityBlocks) return lbaOutOfRange();
  if (nb > lu.limits.maxCompareAndWriteBlocks) return invalidCdbField(13);
  const len = nb * lu.blockSize;
  const data = cmd.req.dataOut ?? Buffer.alloc(0);
  if (data.length !== 2 * len) return invalidCdbField(13); // Data-Out must be exactly the compare and write blocks
  if (nb === 0) return good();
  const unlock = await lu.lock(lba, nb);
  try {
    if (cmd.aborted()) return TASK_ABORTED;
    const current = await lu.backstore.read(lba * lu.blockSize, len);
    const off = firstDifference(current, data.subarray(0, len));
    if (off >= 0) return miscompare(off);
    await lu.backstore.write(lba * lu.blockSize, data.subarray(len, 2 * len), { fua: fua || !lu.modePages.wce });
  } finally {
    unlock();
  }
  return good();
}

/** ORWRITE(16): the Data-Out blocks are ORed into the medium, atomically against other writes. */
export async function orWrite(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const { lba, blocks } = lbaRange(cdb);
  const f = rwFlags(cdb);
  if (f.protect) return invalidCdbField(1, 7); // ORPROTECT
  const bad = checkExtent(cmd, lba, blocks, lu.limits.maxTransferBlocks);
  if (bad) return bad;
  const n = receivedBlocks(cmd, blocks);
  if (n === 0) return good();
  const bs = lu.blockSize;
  const data = cmd.req.dataOut!;
  const unlock = await lu.lock(lba, n);
  try {
    if (cmd.aborted()) return TASK_ABORTED;
    const cur = await lu.backstore.read(lba * bs, n * bs);
    for (let i = 0; i < cur.length; i++) cur[i]! |= data[i]!;
    await lu.backstore.write(lba * bs, cur, { fua: f.fua || !lu.modePages.wce });
  } finally {
    unlock();
  }
  return good();
}

const VALID_POWER_CONDITIONS = new Set([0x1, 0x2, 0x3, 0x7, 0xa, 0xb]);

/**
 * START STOP UNIT: START=0 stops the unit (media access then reports NOT READY, INITIALIZING
 * COMMAND REQUIRED until START=1); LOEJ ejects or loads a removable medium unless a PREVENT is
 * in effect. Power conditions are accepted and have no effect.
 */
export async function startStopUnit(cmd: Command): Promise<CommandResult> {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const powerCondition = cdb[4]! >> 4;
  const noFlush = (cdb[4]! & 0x04) !== 0;
  const loej = (cdb[4]! & 0x02) !== 0;
  const start = (cdb[4]! & 0x01) !== 0;
  if (powerCondition !== 0) return VALID_POWER_CONDITIONS.has(powerCondition) ? good() : invalidCdbField(4, 7);
  if (loej) {
    if (!lu.removable) return invalidCdbField(4, 1);
    if (lu.preventers.size > 0) return illegalRequest(ASC.MEDIUM_REMOVAL_PREVENTED);
    if (start) {
      lu.mediumPresent = true;
      lu.stopped = false;
    } else {
      if (!noFlush && lu.mediumPresent) await lu.backstore.flush();
      lu.mediumPresent = false;
    }
    return good();
  }
  if (start) lu.stopped = false;
  else {
    if (!noFlush && lu.mediumPresent) await lu.backstore.flush();
    lu.stopped = true;
  }
  return good();
}
