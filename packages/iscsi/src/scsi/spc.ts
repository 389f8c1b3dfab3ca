/**
 * Primary commands every device has (tgt's spc.c): TEST UNIT READY, INQUIRY, REQUEST SENSE,
 * REPORT LUNS, MODE SENSE/SELECT (6/10), RESERVE/RELEASE (6/10), PREVENT ALLOW MEDIUM REMOVAL.
 * PERSISTENT RESERVE IN/OUT live in persistent-reserve.ts, REPORT SUPPORTED OPERATION CODES in
 * report-opcodes.ts.
 */
import { be16, be32, truncateTo } from './cdb.js';
import { good, illegalRequest, invalidCdbField, invalidParamField, RESERVATION_CONFLICT, type Command, type CommandResult } from './command.js';
import { standardInquiry } from './identity.js';
import { modeSelectHeader, PAGE_CONTROL } from './mode-pages.js';
import { ASC, buildSense, senseInfo, SENSE_KEY, type SenseInfo } from './sense.js';
import { vpdPage } from './vpd.js';

export const OP = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  RESERVE_6: 0x16,
  RELEASE_6: 0x17,
  MODE_SENSE_6: 0x1a,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  MODE_SELECT_10: 0x55,
  RESERVE_10: 0x56,
  RELEASE_10: 0x57,
  MODE_SENSE_10: 0x5a,
  PERSISTENT_RESERVE_IN: 0x5e,
  PERSISTENT_RESERVE_OUT: 0x5f,
  REPORT_LUNS: 0xa0,
  MAINTENANCE_IN: 0xa3,
} as const;

export function testUnitReady(): CommandResult {
  return good(); // medium presence and readiness are checked before dispatch
}

export function inquiry(cmd: Command): CommandResult {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  if (cdb[1]! & 0x02) return invalidCdbField(1, 1); // CMDDT (obsolete)
  const evpd = (cdb[1]! & 0x01) !== 0;
  const pageCode = cdb[2]!;
  const alloc = be16(cdb, 3);
  if (!evpd) {
    if (pageCode !== 0) return invalidCdbField(2);
    return good(truncateTo(standardInquiry(lu.identity, { removable: lu.removable }), alloc));
  }
  const page = vpdPage(pageCode, { identity: lu.identity, limits: lu.limits, thin: lu.thin, ats: lu.ats, targetName: cmd.nexus.targetName, tpgt: cmd.nexus.tpgt });
  if (!page) return invalidCdbField(2);
  return good(truncateTo(page, alloc));
}

/** REQUEST SENSE: the oldest unit attention (cleared), else the unit's readiness, as parameter data. */
export function requestSense(cmd: Command): CommandResult {
  const lu = cmd.lu;
  const descriptor = (cmd.cdb[1]! & 0x01) !== 0;
  const alloc = cmd.cdb[4]!;
  const ua = lu.ua.take(cmd.nexusKey);
  let s: SenseInfo;
  if (ua) s = senseInfo(SENSE_KEY.UNIT_ATTENTION, ua);
  else if (!lu.mediumPresent) s = senseInfo(SENSE_KEY.NOT_READY, ASC.MEDIUM_NOT_PRESENT);
  else if (lu.stopped) s = senseInfo(SENSE_KEY.NOT_READY, ASC.LUN_NOT_READY_INITIALIZING_COMMAND_REQUIRED);
  else s = senseInfo(SENSE_KEY.NO_SENSE, ASC.NO_ADDITIONAL_SENSE);
  return good(truncateTo(buildSense(s, descriptor), alloc));
}

/** Eight-byte LUN field: peripheral device addressing below 256, flat space addressing above. */
export function encodeLunField(lun: number): Buffer {
  const b = Buffer.alloc(8);
  if (lun < 256) b[1] = lun;
  else {
    b[0] = 0x40 | ((lun >> 8) & 0x3f);
    b[1] = lun & 0xff;
  }
  return b;
}

/** REPORT LUNS parameter data for a list of LUNs (also answered for LUNs that do not exist). */
export function reportLuns(cdb: Buffer, luns: readonly number[]): CommandResult {
  const select = cdb[2]!;
  const alloc = be32(cdb, 6);
  if (select > 2) return invalidCdbField(2);
  if (alloc < 16) return invalidCdbField(6);
  const list = select === 1 ? [] : [...luns].sort((a, b) => a - b); // 01h: well known LUNs only (none)
  const b = Buffer.alloc(8 + 8 * list.length);
  b.writeUInt32BE(8 * list.length, 0);
  list.forEach((l, i) => encodeLunField(l).copy(b, 8 + 8 * i));
  return good(truncateTo(b, alloc));
}

export function reportLunsCommand(cmd: Command): CommandResult {
  cmd.lu.ua.clearCondition(cmd.nexusKey, ASC.REPORTED_LUNS_DATA_HAS_CHANGED);
  return reportLuns(cmd.cdb, cmd.visibleLuns());
}

export function modeSense(cmd: Command): CommandResult {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const ten = cdb[0] === OP.MODE_SENSE_10;
  const dbd = (cdb[1]! & 0x08) !== 0;
  const llbaa = ten && (cdb[1]! & 0x10) !== 0;
  const pc = cdb[2]! >> 6;
  const pageCode = cdb[2]! & 0x3f;
  const subpage = cdb[3]!;
  const alloc = ten ? be16(cdb, 7) : cdb[4]!;
  if (pc === PAGE_CONTROL.SAVED) return illegalRequest(ASC.SAVING_PARAMETERS_NOT_SUPPORTED, { field: { cdb: true, byte: 2, bit: 7 } });
  const pages = lu.modePages.pages(pc, pageCode, subpage);
  if (!pages) {
    const pageKnown = pageCode === 0x3f || lu.modePages.pages(pc, pageCode, 0) !== null;
    return invalidCdbField(pageKnown ? 3 : 2);
  }
  let bd = Buffer.alloc(0);
  if (!dbd) {
    const changeable = pc === PAGE_CONTROL.CHANGEABLE;
    if (llbaa) {
      bd = Buffer.alloc(16);
      if (!changeable) {
        bd.writeBigUInt64BE(BigInt(lu.capacityBlocks), 0);
        bd.writeUInt32BE(lu.blockSize, 12);
      }
    } else {
      bd = Buffer.alloc(8);
      if (!changeable) {
        bd.writeUInt32BE(Math.min(lu.capacityBlocks, 0xffffffff), 0);
        bd.writeUIntBE(lu.blockSize, 5, 3);
      }
    }
  }
  const dsp = (lu.writeProtected ? 0x80 : 0) | 0x10; // WP, DPOFUA
  let header: Buffer;
  if (ten) {
    header = Buffer.alloc(8);
    header.writeUInt16BE(8 + bd.length + pages.length - 2, 0);
    header[3] = dsp;
    header[4] = llbaa && bd.length === 16 ? 0x01 : 0x00;
    header.writeUInt16BE(bd.length, 6);
  } else {
    header = Buffer.alloc(4);
    header[0] = Math.min(255, 4 + bd.length + pages.length - 1);
    header[2] = dsp;
    header[3] = bd.length;
  }
  return good(truncateTo(Buffer.concat([header, bd, pages]), alloc));
}

export function modeSelect(cmd: Command): CommandResult {
  const cdb = cmd.cdb;
  const lu = cmd.lu;
  const ten = cdb[0] === OP.MODE_SELECT_10;
  if (cdb[1]! & 0x01) return invalidCdbField(1, 0); // SP: saved pages are not implemented
  const plen = ten ? be16(cdb, 7) : cdb[4]!;
  if (plen === 0) return good();
  const data = (cmd.req.dataOut ?? Buffer.alloc(0)).subarray(0, plen);
  if (data.length < plen) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const h = modeSelectHeader(data, ten);
  if (!h) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  if (data[ten ? 2 : 1] !== 0) return invalidParamField(ten ? 2 : 1); // MEDIUM TYPE
  const bdLen = h.bdLength;
  if (bdLen !== 0 && bdLen !== 8 && !(h.longLba && bdLen === 16)) return invalidParamField(ten ? 6 : 3);
  if (h.headerLength + bdLen > plen) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  if (bdLen > 0) {
    const at = h.headerLength;
    const long = bdLen === 16;
    const blocks = long ? Number(data.readBigUInt64BE(at)) : data.readUInt32BE(at);
    const blockLen = long ? data.readUInt32BE(at + 12) : data.readUIntBE(at + 5, 3);
    if (blockLen !== lu.blockSize) return invalidParamField(at + (long ? 12 : 5));
    if (blocks !== 0 && blocks !== lu.capacityBlocks && !(blocks === 0xffffffff && !long && lu.capacityBlocks > 0xffffffff)) return invalidParamField(at);
  }
  const r = lu.modePages.select(data, h.headerLength + bdLen);
  if ('error' in r) return illegalRequest(r.error.asc, r.error.field ? { field: r.error.field } : undefined);
  if (r.changed.length > 0) lu.notifyOthers(ASC.MODE_PARAMETERS_CHANGED, cmd.nexusKey);
  return good();
}

/** RESERVE(6/10): SPC-2 reservation of the whole logical unit. */
export function reserve(cmd: Command): CommandResult {
  const cdb = cmd.cdb;
  if (cdb[0] === OP.RESERVE_10 && cdb[1]! & 0x12) return invalidCdbField(1, cdb[1]! & 0x10 ? 4 : 1); // third-party reservations
  const r = cmd.lu.reservations;
  if (r.reservation) return RESERVATION_CONFLICT; // a persistent reservation exists
  if (r.spc2Holder !== null && r.spc2Holder !== cmd.nexusKey) return RESERVATION_CONFLICT;
  r.spc2Holder = cmd.nexusKey;
  return good();
}

/** RELEASE(6/10): releases the nexus's own reservation; otherwise a no-op (GOOD). */
export function release(cmd: Command): CommandResult {
  const cdb = cmd.cdb;
  if (cdb[0] === OP.RELEASE_10 && cdb[1]! & 0x12) return invalidCdbField(1, cdb[1]! & 0x10 ? 4 : 1);
  const r = cmd.lu.reservations;
  if (r.reservation) return r.isRegistered(cmd.nexusKey) ? good() : RESERVATION_CONFLICT;
  if (r.spc2Holder === cmd.nexusKey) r.spc2Holder = null;
  return good();
}

export function preventAllowMediumRemoval(cmd: Command): CommandResult {
  const prevent = cmd.cdb[4]! & 0x03;
  if (prevent > 1) return invalidCdbField(4, 1); // persistent prevent (obsolete)
  const lu = cmd.lu;
  if (lu.removable) {
    if (prevent) lu.preventers.add(cmd.nexusKey);
    else lu.preventers.delete(cmd.nexusKey);
  }
  return good();
}
