/**
 * The R2T PDU (RFC 7143 11.8): the target asks for one burst of a write's data. It carries the
 * next StatSN without consuming it.
 */
import { F, R2T } from '../transport/fields.js';
import { OP } from '../transport/opcodes.js';
import { Pdu } from '../transport/pdu.js';
import { peekStatus, type OutPdu } from './outbound.js';
import type { R2tRequest } from './write-collector.js';

export function r2tPdu(itt: number, lunField: Buffer, r: R2tRequest): OutPdu {
  const pdu = Pdu.create(OP.R2T);
  pdu.flags = 0x80;
  lunField.copy(pdu.bhs, F.LUN);
  pdu.itt = itt;
  pdu.setU32(F.TTT, r.ttt);
  pdu.setU32(R2T.R2TSN, r.r2tSN);
  pdu.setU32(R2T.BUFFER_OFFSET, r.offset);
  pdu.setU32(R2T.DESIRED_LENGTH, r.length);
  return peekStatus(pdu);
}
