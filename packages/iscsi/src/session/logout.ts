/**
 * Logout (RFC 7143 11.14, 11.15). With one connection per session and ErrorRecoveryLevel 0,
 * closing the connection and closing the session are the same thing:
 *
 *   reason 0 close the session          -> tasks aborted, response 0, session and connection closed
 *   reason 1 close this connection      -> the same (CID of another connection: CID NOT FOUND)
 *   reason 2 remove for recovery        -> CONNECTION RECOVERY NOT SUPPORTED (ERL 0)
 *
 * The Logout Response is the last PDU of the connection; what arrives after the request is
 * ignored.
 */
import { LOGOUT_REQ, LOGOUT_RSP } from '../transport/fields.js';
import { OP, REJECT_REASON } from '../transport/opcodes.js';
import { Pdu } from '../transport/pdu.js';
import type { Connection } from './connection.js';
import { withStatus, type OutPdu } from './outbound.js';
import type { Session } from './session.js';
import { settle } from './task-management.js';

export function logoutResponsePdu(itt: number, response: number): OutPdu {
  const pdu = Pdu.create(OP.LOGOUT_RESPONSE);
  pdu.flags = 0x80;
  pdu.setU8(LOGOUT_RSP.RESPONSE, response);
  pdu.itt = itt;
  pdu.setU16(LOGOUT_RSP.TIME2WAIT, 0);
  pdu.setU16(LOGOUT_RSP.TIME2RETAIN, 0);
  return withStatus(pdu);
}

export async function handleLogout(conn: Connection, session: Session, pdu: Pdu): Promise<void> {
  const reason = pdu.flags & LOGOUT_REQ.REASON_MASK;
  const cid = pdu.u16(LOGOUT_REQ.CID);
  if (reason === LOGOUT_REQ.REMOVE_CONNECTION_FOR_RECOVERY) {
    await conn.send([logoutResponsePdu(pdu.itt, LOGOUT_RSP.RECOVERY_NOT_SUPPORTED)]);
    return;
  }
  if (reason !== LOGOUT_REQ.CLOSE_SESSION && reason !== LOGOUT_REQ.CLOSE_CONNECTION) {
    conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, `Logout reason ${reason} is not defined`);
    return;
  }
  if (reason === LOGOUT_REQ.CLOSE_CONNECTION && cid !== conn.cid) {
    await conn.send([logoutResponsePdu(pdu.itt, LOGOUT_RSP.CID_NOT_FOUND)]);
    return;
  }
  conn.beginLogout();
  const tasks = session.abortTasks(() => true);
  if (!(await settle(tasks, session.limits.settleWaitMs))) session.log.warn('tasks still running at logout; closing anyway');
  await conn.send([logoutResponsePdu(pdu.itt, LOGOUT_RSP.CLOSED_SUCCESSFULLY)]);
  conn.close(reason === LOGOUT_REQ.CLOSE_SESSION ? 'logout (close session)' : 'logout (close connection)', { graceful: true });
}
