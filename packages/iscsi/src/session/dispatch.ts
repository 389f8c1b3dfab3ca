/**
 * Full feature phase dispatch: which handler gets a PDU, and which PDUs wait for their CmdSN.
 *
 *   Data-Out                      -> data-out.ts (no CmdSN)
 *   NOP-Out, ITT reserved         -> keepalive answer (immediate, no CmdSN)
 *   NOP-Out, SCSI Command, Task Management, Text, Logout
 *                                 -> CmdSN window (immediate ones at once), then their handler
 *   SNACK                         -> Reject (SNACK reject: ErrorRecoveryLevel 0)
 *   Login in full feature phase   -> Reject (protocol error)
 *   target opcodes                -> Reject (protocol error)
 *   unknown opcodes               -> Reject (command not supported)
 *
 * A data digest error is answered with Reject (data digest error); a command discarded that way
 * still uses its CmdSN (ERL 0 initiators do not retry it), and Data-Out lost that way ends its
 * task with CHECK CONDITION, PROTOCOL SERVICE CRC ERROR (RFC 7143 7.8).
 */
import { F } from '../transport/fields.js';
import { OP, REJECT_REASON, TARGET_OPCODES } from '../transport/opcodes.js';
import { RESERVED_TAG, type Pdu } from '../transport/pdu.js';
import { SAM_STAT } from '../scsi/types.js';
import type { Connection } from './connection.js';
import { onDataOut } from './data-out.js';
import { handleLogout } from './logout.js';
import { nopInAnswer } from './nop.js';
import { failTask, startScsiCommand } from './scsi-command.js';
import { fixedSense, SENSE_KEY, TRANSPORT_ASC } from './sense.js';
import type { Session } from './session.js';
import { handleTaskManagement } from './task-management.js';

export function dispatchFullFeature(conn: Connection, session: Session, pdu: Pdu): void {
  switch (pdu.opcode) {
    case OP.DATA_OUT:
      return onDataOut(conn, session, pdu);
    case OP.NOP_OUT:
      if (pdu.itt === RESERVED_TAG) return; // our ping answered (activity already noted), or a no-reply ping
      return inOrder(conn, session, pdu, () => void conn.send([nopInAnswer(pdu, session.params.initiatorMaxRecvDataSegmentLength)]));
    case OP.SCSI_COMMAND:
      return inOrder(conn, session, pdu, () => startScsiCommand(conn, session, pdu));
    case OP.TASK_MGMT_REQUEST:
      return inOrder(conn, session, pdu, () => void handleTaskManagement(conn, session, pdu).catch((err) => conn.fail(err, pdu)));
    case OP.TEXT_REQUEST:
      return inOrder(conn, session, pdu, () => onText(conn, session, pdu));
    case OP.LOGOUT_REQUEST:
      return inOrder(conn, session, pdu, () => void handleLogout(conn, session, pdu).catch((err) => conn.fail(err, pdu)));
    case OP.SNACK_REQUEST:
      return conn.reject(REJECT_REASON.SNACK_REJECT, pdu, 'SNACK is not supported at ErrorRecoveryLevel 0');
    case OP.LOGIN_REQUEST:
      return conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, 'Login Request in full feature phase');
    default:
      if (TARGET_OPCODES.has(pdu.opcode)) return conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, `${pdu.opcodeName} is a target opcode`);
      return conn.reject(REJECT_REASON.COMMAND_NOT_SUPPORTED, pdu, `unknown opcode ${pdu.opcodeName}`);
  }
}

/** Deliver through the CmdSN window; commands outside it are ignored, as RFC 7143 4.2.2.1 says. */
function inOrder(conn: Connection, session: Session, pdu: Pdu, run: () => void): void {
  const cmdSN = pdu.u32(F.CMDSN);
  const verdict = session.window.submit(cmdSN, pdu.immediate, () => {
    if (conn.state !== 'fullFeature') return;
    try {
      run();
    } catch (err) {
      conn.fail(err, pdu);
    }
  });
  if (verdict === 'tooLow' || verdict === 'tooHigh' || verdict === 'duplicate') {
    session.log.warn({ pdu: pdu.toString(), cmdSN, expCmdSN: session.window.expCmdSN, maxCmdSN: session.maxCmdSN(), verdict }, 'command outside the CmdSN window: ignored');
  }
}

function onText(conn: Connection, session: Session, pdu: Pdu): void {
  const outcome = conn.text.handle(pdu, {
    session,
    settings: conn.settings,
    sendTargets: { directory: conn.env.directory, localPortal: conn.localPortal },
    newTag: () => conn.newTag(),
  });
  if (outcome.kind === 'reject') conn.reject(outcome.reason, pdu, outcome.why);
  else void conn.send([outcome.out]);
}

export function onDigestError(conn: Connection, session: Session, pdu: Pdu): void {
  conn.reject(REJECT_REASON.DATA_DIGEST_ERROR, pdu, `data digest error on ${pdu.opcodeName}`);
  switch (pdu.opcode) {
    case OP.DATA_OUT: {
      const task = session.tasks.get(pdu.itt);
      if (task) failTask(conn, session, task, SAM_STAT.CHECK_CONDITION, fixedSense(SENSE_KEY.ABORTED_COMMAND, TRANSPORT_ASC.PROTOCOL_SERVICE_CRC_ERROR), 'Data-Out lost to a data digest error');
      return;
    }
    case OP.SCSI_COMMAND:
    case OP.TEXT_REQUEST:
    case OP.NOP_OUT:
      if (!pdu.immediate && !(pdu.opcode === OP.NOP_OUT && pdu.itt === RESERVED_TAG)) session.window.consume(pdu.u32(F.CMDSN));
      return;
    default:
      return;
  }
}
