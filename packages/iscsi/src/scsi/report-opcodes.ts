/**
 * REPORT SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS
 * (MAINTENANCE IN, SPC-4 6.35/6.36), built from the opcode table.
 */
import { be16, be32, truncateTo } from './cdb.js';
import { good, invalidCdbField, type Command, type CommandResult } from './command.js';
import type { OpcodeEntry } from './opcodes.js';

const SERVICE_ACTION_OPCODES = new Set([0x5e, 0x5f, 0x9e, 0xa3]);

/** Command timeouts descriptor: nominal and recommended timeouts, seconds. */
function timeouts(): Buffer {
  const t = Buffer.alloc(12);
  t.writeUInt16BE(0x0a, 0);
  t.writeUInt32BE(0, 4); // nominal: not specified
  t.writeUInt32BE(30, 8); // recommended
  return t;
}

export function reportSupportedOpcodes(cmd: Command, table: readonly OpcodeEntry[]): CommandResult {
  const cdb = cmd.cdb;
  const rctd = (cdb[2]! & 0x80) !== 0;
  const options = cdb[2]! & 0x07;
  const reqOp = cdb[3]!;
  const reqSa = be16(cdb, 4);
  const alloc = be32(cdb, 6);
  const supported = table.filter((e) => !e.supported || e.supported(cmd.lu)).sort((a, b) => a.opcode - b.opcode || (a.sa ?? 0) - (b.sa ?? 0));

  if (options === 0) {
    const descs = supported.map((e) => {
      const d = Buffer.alloc(8);
      d[0] = e.opcode;
      d.writeUInt16BE(e.sa ?? 0, 2);
      d[5] = (rctd ? 0x02 : 0) | (e.sa !== undefined ? 0x01 : 0); // CTDP, SERVACTV
      d.writeUInt16BE(e.cdbLength, 6);
      return rctd ? Buffer.concat([d, timeouts()]) : d;
    });
    const body = Buffer.concat(descs);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length, 0);
    return good(truncateTo(Buffer.concat([h, body]), alloc));
  }

  const hasSa = SERVICE_ACTION_OPCODES.has(reqOp);
  let entry: OpcodeEntry | undefined;
  if (options === 1) {
    if (hasSa) return invalidCdbField(2, 2);
    entry = supported.find((e) => e.opcode === reqOp);
  } else if (options === 2) {
    if (!hasSa) return invalidCdbField(2, 2);
    entry = supported.find((e) => e.opcode === reqOp && e.sa === reqSa);
  } else if (options === 3) {
    entry = supported.find((e) => e.opcode === reqOp && (!hasSa || e.sa === reqSa));
  } else {
    return invalidCdbField(2, 2);
  }
  if (!entry) {
    const d = Buffer.alloc(4);
    d[1] = 0x01; // SUPPORT: not supported
    return good(truncateTo(d, alloc));
  }
  const h = Buffer.alloc(4);
  h[1] = (rctd ? 0x80 : 0) | 0x03; // CTDP, SUPPORT: supported as in the standard
  h.writeUInt16BE(entry.cdbLength, 2);
  const parts: Buffer[] = [h, Buffer.from(entry.usage)];
  if (rctd) parts.push(timeouts());
  return good(truncateTo(Buffer.concat(parts), alloc));
}

/** ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET (no CLEAR ACA, no QUERY). */
export function reportSupportedTmfs(cmd: Command): CommandResult {
  const repd = (cmd.cdb[2]! & 0x80) !== 0;
  const alloc = be32(cmd.cdb, 6);
  if (alloc < 4) return invalidCdbField(6);
  const b = Buffer.alloc(repd ? 16 : 4);
  b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02; // ATS, ATSS, CTSS, LURS, TRS
  if (repd) b[3] = 0x0c; // ADDITIONAL DATA LENGTH
  return good(truncateTo(b, alloc));
}
