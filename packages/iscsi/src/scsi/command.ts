/**
 * What a command handler gets and returns. Handlers (spc.ts, sbc.ts, ...) are plain functions
 * of a Command; they return status, data and a SenseInfo, never throw for a SCSI condition.
 */
import type { LogicalUnit } from './logical-unit.js';
import { ASC, senseInfo, SENSE_KEY, type AscPair, type SenseInfo } from './sense.js';
import { SAM_STAT, type Nexus, type ScsiRequest } from './types.js';

export interface Command {
  req: ScsiRequest;
  cdb: Buffer;
  nexus: Nexus;
  /** Reservation/UA key of the I_T nexus (initiator port + relative target port). */
  nexusKey: string;
  lu: LogicalUnit;
  /** LUNs this initiator may see (REPORT LUNS). */
  visibleLuns(): number[];
  /** The task was aborted (task management, or PREEMPT AND ABORT): stop between I/Os. */
  aborted(): boolean;
}

export interface CommandResult {
  status: number;
  data?: Buffer | null;
  sense?: SenseInfo;
}

export type Handler = (cmd: Command) => CommandResult | Promise<CommandResult>;

export function good(data: Buffer | null = null): CommandResult {
  return { status: SAM_STAT.GOOD, data };
}

export function checkCondition(key: number, asc: AscPair, extra?: Omit<SenseInfo, 'key' | 'asc' | 'ascq'>): CommandResult {
  return { status: SAM_STAT.CHECK_CONDITION, sense: senseInfo(key, asc, extra) };
}

export function illegalRequest(asc: AscPair, extra?: Omit<SenseInfo, 'key' | 'asc' | 'ascq'>): CommandResult {
  return checkCondition(SENSE_KEY.ILLEGAL_REQUEST, asc, extra);
}

/** ILLEGAL REQUEST, INVALID FIELD IN CDB, pointing at the byte (and bit) at fault. */
export function invalidCdbField(byte: number, bit?: number): CommandResult {
  return illegalRequest(ASC.INVALID_FIELD_IN_CDB, { field: bit === undefined ? { cdb: true, byte } : { cdb: true, byte, bit } });
}

/** ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, pointing at the parameter byte at fault. */
export function invalidParamField(byte: number, bit?: number): CommandResult {
  return illegalRequest(ASC.INVALID_FIELD_IN_PARAMETER_LIST, { field: bit === undefined ? { cdb: false, byte } : { cdb: false, byte, bit } });
}

export function lbaOutOfRange(): CommandResult {
  return illegalRequest(ASC.LBA_OUT_OF_RANGE);
}

export function invalidOpcode(): CommandResult {
  return illegalRequest(ASC.INVALID_COMMAND_OPERATION_CODE, { field: { cdb: true, byte: 0 } });
}

export const RESERVATION_CONFLICT: CommandResult = { status: SAM_STAT.RESERVATION_CONFLICT };
export const TASK_ABORTED: CommandResult = { status: SAM_STAT.TASK_ABORTED };
