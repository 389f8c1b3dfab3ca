/**
 * PERSISTENT RESERVE IN (READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS)
 * and PERSISTENT RESERVE OUT (REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE,
 * CLEAR, PREEMPT, PREEMPT AND ABORT, REGISTER AND MOVE), SPC-4 6.15/6.16 and 5.13. Every check
 * runs before any state changes; unit attentions go to the nexuses the change affects.
 */
import { be16, be32, truncateTo } from './cdb.js';
import { good, illegalRequest, invalidCdbField, invalidParamField, RESERVATION_CONFLICT, type Command, type CommandResult } from './command.js';
import { isAllRegistrants, isRegistrantsType, isValidPrType, MAX_REGISTRATIONS, nexusKeyOf, type Reservations } from './reservations.js';
import { ASC } from './sense.js';

export const PRIN_SA = { READ_KEYS: 0, READ_RESERVATION: 1, REPORT_CAPABILITIES: 2, READ_FULL_STATUS: 3 } as const;
export const PROUT_SA = { REGISTER: 0, RESERVE: 1, RELEASE: 2, CLEAR: 3, PREEMPT: 4, PREEMPT_AND_ABORT: 5, REGISTER_AND_IGNORE: 6, REGISTER_AND_MOVE: 7 } as const;

const MAX_PROUT_PARAMETER_BYTES = 24 + 4 + 256; // basic list, or REGISTER AND MOVE with an iSCSI TransportID

export function persistentReserveIn(cmd: Command): CommandResult {
  const r = cmd.lu.reservations;
  if (r.spc2Holder !== null) return RESERVATION_CONFLICT;
  const sa = cmd.cdb[1]! & 0x1f;
  const alloc = be16(cmd.cdb, 7);
  let data: Buffer;
  switch (sa) {
    case PRIN_SA.READ_KEYS: {
      const keys = [...r.registrations.values()];
      data = Buffer.alloc(8 + 8 * keys.length);
      data.writeUInt32BE(r.generation, 0);
      data.writeUInt32BE(8 * keys.length, 4);
      keys.forEach((k, i) => data.writeBigUInt64BE(k.key, 8 + 8 * i));
      break;
    }
    case PRIN_SA.READ_RESERVATION: {
      const res = r.reservation;
      data = Buffer.alloc(res ? 24 : 8);
      data.writeUInt32BE(r.generation, 0);
      if (res) {
        data.writeUInt32BE(16, 4);
        const holderKey = res.holder !== null ? (r.registrations.get(res.holder)?.key ?? 0n) : 0n;
        data.writeBigUInt64BE(isAllRegistrants(res.type) ? 0n : holderKey, 8);
        data[21] = (res.scope << 4) | res.type;
      }
      break;
    }
    case PRIN_SA.REPORT_CAPABILITIES: {
      data = Buffer.alloc(8);
      data.writeUInt16BE(8, 0);
      data[2] = 0x10; // CRH; SIP_C 0, ATP_C 0, PTPL_C 0
      data[3] = 0x80 | 0x10; // TMV; ALLOW COMMANDS 001b (TEST UNIT READY allowed under WE/EA); PTPL_A 0
      data[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
      data[5] = 0x01; // EX_AC_AR
      break;
    }
    case PRIN_SA.READ_FULL_STATUS: {
      const descs: Buffer[] = [];
      for (const [nk, reg] of r.registrations) {
        const tid = transportId(reg.initiatorPortName);
        const d = Buffer.alloc(24 + tid.length);
        d.writeBigUInt64BE(reg.key, 0);
        if (r.isHolder(nk)) {
          d[12] = 0x01; // R_HOLDER
          d[13] = (r.reservation!.scope << 4) | r.reservation!.type;
        }
        d.writeUInt16BE(reg.tpgt & 0xffff, 18);
        d.writeUInt32BE(tid.length, 20);
        tid.copy(d, 24);
        descs.push(d);
      }
      const body = Buffer.concat(descs);
      data = Buffer.alloc(8);
      data.writeUInt32BE(r.generation, 0);
      data.writeUInt32BE(body.length, 4);
      data = Buffer.concat([data, body]);
      break;
    }
    default:
      return invalidCdbField(1, 4);
  }
  return good(truncateTo(data, alloc));
}

/** iSCSI TransportID, format 01b (initiator port name with ISID), padded to a multiple of 4. */
export function transportId(initiatorPortName: string): Buffer {
  const name = Buffer.from(initiatorPortName, 'utf8');
  const nameLen = (name.length + 1 + 3) & ~3;
  const b = Buffer.alloc(4 + nameLen);
  b[0] = 0x40 | 0x05; // FORMAT CODE 01b, PROTOCOL IDENTIFIER iSCSI
  b.writeUInt16BE(nameLen, 2);
  name.copy(b, 4);
  return b;
}

export function persistentReserveOut(cmd: Command): CommandResult {
  const r = cmd.lu.reservations;
  if (r.spc2Holder !== null) return RESERVATION_CONFLICT;
  const cdb = cmd.cdb;
  const sa = cdb[1]! & 0x1f;
  const scope = cdb[2]! >> 4;
  const type = cdb[2]! & 0x0f;
  const plen = be32(cdb, 5);
  if (sa > PROUT_SA.REGISTER_AND_MOVE) return invalidCdbField(1, 4);
  if (plen > MAX_PROUT_PARAMETER_BYTES) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const data = (cmd.req.dataOut ?? Buffer.alloc(0)).subarray(0, plen);
  if (sa === PROUT_SA.REGISTER_AND_MOVE) return registerAndMove(cmd, r, data, plen);
  if (plen !== 24 || data.length < 24) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const key = data.readBigUInt64BE(0);
  const sark = data.readBigUInt64BE(8);
  const flags = data[20]!;
  if (flags & 0x08) return invalidParamField(20, 3); // SPEC_I_PT: not supported (SIP_C 0)
  if (flags & 0x04) return invalidParamField(20, 2); // ALL_TG_PT: not supported (ATP_C 0)
  const registering = sa === PROUT_SA.REGISTER || sa === PROUT_SA.REGISTER_AND_IGNORE;
  if (registering && flags & 0x01) return invalidParamField(20, 0); // APTPL: not supported (PTPL_C 0)
  const me = cmd.nexusKey;
  const mine = r.registrations.get(me);

  if (registering) {
    if (sa === PROUT_SA.REGISTER && (mine ? key !== mine.key : key !== 0n)) return RESERVATION_CONFLICT;
    if (!mine) {
      if (sark !== 0n) {
        if (r.registrations.size >= MAX_REGISTRATIONS) return illegalRequest(ASC.INSUFFICIENT_REGISTRATION_RESOURCES);
        r.registrations.set(me, { key: sark, initiatorPortName: cmd.nexus.initiatorPortName, tpgt: cmd.nexus.tpgt });
      }
    } else if (sark === 0n) {
      cmd.lu.ua.establishFor(r.unregister(me), ASC.RESERVATIONS_RELEASED, me);
    } else {
      mine.key = sark;
    }
    r.bumpGeneration();
    return good();
  }

  // every other service action needs a registered nexus presenting its key
  if (!mine || key !== mine.key) return RESERVATION_CONFLICT;
  const res = r.reservation;
  switch (sa) {
    case PROUT_SA.RESERVE: {
      if (scope !== 0) return invalidCdbField(2, 7);
      if (!isValidPrType(type)) return invalidCdbField(2, 3);
      if (res) return r.isHolder(me) && res.type === type && res.scope === scope ? good() : RESERVATION_CONFLICT;
      r.reservation = { holder: isAllRegistrants(type) ? null : me, type, scope };
      return good();
    }
    case PROUT_SA.RELEASE: {
      if (!res || !r.isHolder(me)) return good();
      if (res.type !== type || res.scope !== scope) return illegalRequest(ASC.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
      r.reservation = null;
      if (isRegistrantsType(res.type)) cmd.lu.ua.establishFor(r.registrations.keys(), ASC.RESERVATIONS_RELEASED, me);
      return good();
    }
    case PROUT_SA.CLEAR: {
      const others = [...r.registrations.keys()].filter((k) => k !== me);
      r.registrations.clear();
      r.reservation = null;
      r.bumpGeneration();
      cmd.lu.ua.establishFor(others, ASC.RESERVATIONS_PREEMPTED);
      return good();
    }
    default:
      return preempt(cmd, r, sark, scope, type, sa === PROUT_SA.PREEMPT_AND_ABORT);
  }
}

function preempt(cmd: Command, r: Reservations, sark: bigint, scope: number, type: number, abort: boolean): CommandResult {
  const me = cmd.nexusKey;
  const res = r.reservation;
  const withKey = (k: bigint) => [...r.registrations].filter(([nk, reg]) => nk !== me && reg.key === k).map(([nk]) => nk);
  let victims: string[];
  let takeReservation = false;
  if (!res) {
    if (sark === 0n) return invalidParamField(8);
    victims = withKey(sark);
    if (victims.length === 0) return RESERVATION_CONFLICT;
  } else if (isAllRegistrants(res.type)) {
    if (sark === 0n) {
      victims = [...r.registrations.keys()].filter((k) => k !== me);
      takeReservation = true;
    } else {
      victims = withKey(sark);
      if (victims.length === 0) return RESERVATION_CONFLICT;
    }
  } else {
    const holderKey = res.holder !== null ? r.registrations.get(res.holder)?.key : undefined;
    if (holderKey !== undefined && sark === holderKey) {
      victims = withKey(sark);
      takeReservation = true;
    } else {
      if (sark === 0n) return invalidParamField(8);
      victims = withKey(sark);
      if (victims.length === 0) return RESERVATION_CONFLICT;
    }
  }
  if (takeReservation) {
    if (scope !== 0) return invalidCdbField(2, 7);
    if (!isValidPrType(type)) return invalidCdbField(2, 3);
  }
  // no more checks: apply
  for (const v of victims) r.registrations.delete(v);
  cmd.lu.ua.establishFor(victims, ASC.REGISTRATIONS_PREEMPTED);
  if (takeReservation) {
    const changed = !res || res.type !== type || res.scope !== scope;
    r.reservation = { holder: isAllRegistrants(type) ? null : me, type, scope };
    if (changed) cmd.lu.ua.establishFor(r.registrations.keys(), ASC.RESERVATIONS_RELEASED, me);
  } else if (res && !isAllRegistrants(res.type) && res.holder !== null && !r.registrations.has(res.holder)) {
    r.reservation = null; // its holder was preempted
  } else if (res && isAllRegistrants(res.type) && r.registrations.size === 0) {
    r.reservation = null;
  }
  r.bumpGeneration();
  if (abort) cmd.lu.abortTasksOf(victims);
  return good();
}

function registerAndMove(cmd: Command, r: Reservations, data: Buffer, plen: number): CommandResult {
  if (plen < 24 || data.length < plen) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const key = data.readBigUInt64BE(0);
  const sark = data.readBigUInt64BE(8);
  const unreg = (data[17]! & 0x02) !== 0;
  if (data[17]! & 0x01) return invalidParamField(17, 0); // APTPL not supported
  const relTgtPort = be16(data, 18);
  const tidLen = be32(data, 20);
  if (24 + tidLen > plen || tidLen < 24) return illegalRequest(ASC.PARAMETER_LIST_LENGTH_ERROR);
  const me = cmd.nexusKey;
  const mine = r.registrations.get(me);
  if (!mine || key !== mine.key) return RESERVATION_CONFLICT;
  const res = r.reservation;
  if (!res || !r.isHolder(me) || isAllRegistrants(res.type)) return RESERVATION_CONFLICT;
  if (sark === 0n) return invalidParamField(8);
  const tid = data.subarray(24, 24 + tidLen);
  if ((tid[0]! & 0x0f) !== 0x05 || tid[0]! >> 6 !== 0x01) return invalidParamField(24);
  const nameLen = Math.min(be16(tid, 2), tid.length - 4);
  const raw = tid.subarray(4, 4 + nameLen);
  const nul = raw.indexOf(0);
  const portName = raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
  if (!/,i,0x[0-9a-f]{12}$/i.test(portName)) return invalidParamField(28);
  const dest = nexusKeyOf(portName, relTgtPort);
  if (dest === me) return invalidParamField(24);
  const existing = r.registrations.get(dest);
  if (!existing && r.registrations.size >= MAX_REGISTRATIONS) return illegalRequest(ASC.INSUFFICIENT_REGISTRATION_RESOURCES);
  if (existing) existing.key = sark;
  else r.registrations.set(dest, { key: sark, initiatorPortName: portName, tpgt: relTgtPort });
  r.reservation = { holder: dest, type: res.type, scope: res.scope };
  if (unreg) r.registrations.delete(me);
  r.bumpGeneration();
  return good();
}
