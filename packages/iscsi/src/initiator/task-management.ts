/**
 * Task Management Function requests (RFC 7143 11.5) and the names of their responses (11.6).
 * The session sends them as immediate PDUs and waits, bounded, for the response.
 */
import { F, OP, Pdu, RESERVED_TAG, TMF_REQ } from '../transport/index.js';
import { TMF_RESPONSE } from '../scsi/types.js';

export type InitiatorTmf = 'abortTask' | 'abortTaskSet' | 'lunReset' | 'targetWarmReset';

const FUNCTION: Record<InitiatorTmf, number> = {
  abortTask: TMF_REQ.ABORT_TASK,
  abortTaskSet: TMF_REQ.ABORT_TASK_SET,
  lunReset: TMF_REQ.LOGICAL_UNIT_RESET,
  targetWarmReset: TMF_REQ.TARGET_WARM_RESET,
};

const RESPONSE_NAMES = new Map<number, string>(Object.entries(TMF_RESPONSE).map(([k, v]) => [v, k]));

export function tmfResponseName(code: number): string {
  return RESPONSE_NAMES.get(code) ?? `0x${code.toString(16)}`;
}

export interface TmfNumbers {
  itt: number;
  cmdSN: number;
  expStatSN: number;
}

/** ABORT TASK needs the referenced task's ITT and CmdSN; the others ignore them. */
export function tmfRequest(fn: InitiatorTmf, lun: number, n: TmfNumbers, ref?: { itt: number; cmdSN: number }): Pdu {
  const p = Pdu.create(OP.TASK_MGMT_REQUEST, { immediate: true });
  p.flags = 0x80 | FUNCTION[fn];
  if (fn !== 'targetWarmReset') p.lun = lun;
  p.itt = n.itt;
  p.setU32(TMF_REQ.REFERENCED_TASK_TAG, ref ? ref.itt : RESERVED_TAG);
  p.setU32(F.CMDSN, n.cmdSN);
  p.setU32(F.EXPSTATSN, n.expStatSN);
  p.setU32(TMF_REQ.REFCMDSN, ref ? ref.cmdSN : n.cmdSN);
  return p;
}
