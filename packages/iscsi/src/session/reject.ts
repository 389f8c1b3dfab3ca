/**
 * The Reject PDU (RFC 7143 11.17): the target refuses a PDU it cannot or will not process. The
 * data segment carries the complete header of the rejected PDU; the Initiator Task Tag is the
 * reserved tag. Reasons are in transport/opcodes.ts (REJECT_REASON).
 */
import { F, REJECT } from '../transport/fields.js';
import { OP, REJECT_REASON } from '../transport/opcodes.js';
import { Pdu, RESERVED_TAG } from '../transport/pdu.js';
import { withStatus, type OutPdu } from './outbound.js';

export function rejectPdu(reason: number, rejected: Pdu): OutPdu {
  const pdu = Pdu.create(OP.REJECT);
  pdu.flags = 0x80;
  pdu.setU8(REJECT.REASON, reason);
  pdu.itt = RESERVED_TAG;
  pdu.setU32(F.TTT, 0);
  pdu.setU32(REJECT.DATASN, 0);
  pdu.data = Buffer.from(rejected.bhs);
  return withStatus(pdu);
}

const NAMES = new Map<number, string>(Object.entries(REJECT_REASON).map(([k, v]) => [v, k]));

export function rejectReasonName(reason: number): string {
  return NAMES.get(reason) ?? `0x${reason.toString(16)}`;
}
