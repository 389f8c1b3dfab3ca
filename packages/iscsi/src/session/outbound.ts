/**
 * A target PDU on its way out. StatSN, ExpCmdSN and MaxCmdSN are stamped by the connection when
 * the PDU is written, so they are in sending order and current:
 *   advance  the PDU carries the next StatSN and consumes it (responses, status-bearing Data-In)
 *   peek     the PDU carries the next StatSN without consuming it (R2T, target NOP-In, Async)
 *   none     no StatSN (Data-In without status)
 */
import type { Pdu } from '../transport/pdu.js';

export type StatSnMode = 'advance' | 'peek' | 'none';

export interface OutPdu {
  pdu: Pdu;
  statSN: StatSnMode;
}

export const withStatus = (pdu: Pdu): OutPdu => ({ pdu, statSN: 'advance' });
export const peekStatus = (pdu: Pdu): OutPdu => ({ pdu, statSN: 'peek' });
export const noStatus = (pdu: Pdu): OutPdu => ({ pdu, statSN: 'none' });
