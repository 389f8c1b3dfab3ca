/**
 * A Data-Out PDU (RFC 7143 11.7): write data for a task, unsolicited (TTT reserved) or answering
 * an R2T (TTT = the R2T's tag). The task's WriteCollector checks DataSN, Buffer Offset and the
 * burst bounds; a PDU that breaks them gets a Reject and is dropped (ErrorRecoveryLevel 0 offers
 * no recovery R2T), the task keeps waiting within its data timeout. Unsolicited data for a task
 * that is already over (answered early, or aborted) is discarded silently.
 */
import { DATA_OUT, F } from '../transport/fields.js';
import { REJECT_REASON } from '../transport/opcodes.js';
import { RESERVED_TAG, type Pdu } from '../transport/pdu.js';
import type { Connection } from './connection.js';
import { armDataTimer, commandRunOf, sendR2Ts } from './scsi-command.js';
import type { Session } from './session.js';

export function onDataOut(conn: Connection, session: Session, pdu: Pdu): void {
  const ttt = pdu.u32(F.TTT);
  const task = session.tasks.get(pdu.itt);
  const run = task ? commandRunOf(task) : undefined;
  if (!task || !run || !task.write || task.phase !== 'collecting') {
    if (ttt === RESERVED_TAG || task?.aborted) {
      session.log.debug({ itt: pdu.itt, ttt }, 'Data-Out for a task that is over: discarded');
      return;
    }
    conn.reject(REJECT_REASON.INVALID_PDU_FIELD, pdu, `Data-Out for unknown task ITT 0x${pdu.itt.toString(16)}`);
    return;
  }
  const v = task.write.onDataOut(ttt, pdu.u32(DATA_OUT.DATASN), pdu.u32(DATA_OUT.BUFFER_OFFSET), pdu.data, pdu.final);
  switch (v.kind) {
    case 'reject':
      conn.reject(v.reason, pdu, `${task.toString()}: ${v.why}`);
      return;
    case 'accepted':
      armDataTimer(session, run);
      sendR2Ts(conn, run);
      return;
    case 'complete':
      run.dataDone();
      return;
  }
}
