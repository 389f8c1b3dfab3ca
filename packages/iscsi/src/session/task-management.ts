/**
 * Task management (RFC 7143 11.5, 11.6; SAM-5 7): the session layer aborts the tasks the
 * function covers (their signals fire and no response is ever sent for them), tells the SCSI
 * layer (unit attentions, reservations, LUN existence), waits a bounded time for the aborted
 * tasks to wind down, then answers.
 *
 *   ABORT TASK          the referenced task of this session; none -> TASK DOES NOT EXIST
 *   ABORT TASK SET      this session's tasks on the LUN
 *   CLEAR TASK SET      every session's tasks on the LUN
 *   LUN RESET           every session's tasks on the LUN
 *   TARGET WARM RESET   every session's tasks on the target
 *   TARGET COLD RESET   the same, then every session of the target is closed
 *   CLEAR ACA           the SCSI layer's answer
 *   TASK REASSIGN       not supported at ErrorRecoveryLevel 0
 */
import { TMF_REQ, TMF_RSP } from '../transport/fields.js';
import { OP, REJECT_REASON } from '../transport/opcodes.js';
import { Pdu } from '../transport/pdu.js';
import { TMF_RESPONSE, type TmfFunction } from '../scsi/types.js';
import type { Connection } from './connection.js';
import { withStatus, type OutPdu } from './outbound.js';
import type { Session } from './session.js';
import type { Task } from './task-table.js';

const FUNCTIONS: Record<number, TmfFunction> = {
  [TMF_REQ.ABORT_TASK]: 'abortTask',
  [TMF_REQ.ABORT_TASK_SET]: 'abortTaskSet',
  [TMF_REQ.CLEAR_ACA]: 'clearAca',
  [TMF_REQ.CLEAR_TASK_SET]: 'clearTaskSet',
  [TMF_REQ.LOGICAL_UNIT_RESET]: 'lunReset',
  [TMF_REQ.TARGET_WARM_RESET]: 'targetWarmReset',
  [TMF_REQ.TARGET_COLD_RESET]: 'targetColdReset',
  [TMF_REQ.TASK_REASSIGN]: 'taskReassign',
};

export function tmfResponsePdu(itt: number, response: number): OutPdu {
  const pdu = Pdu.create(OP.TASK_MGMT_RESPONSE);
  pdu.flags = 0x80;
  pdu.setU8(TMF_RSP.RESPONSE, response);
  pdu.itt = itt;
  return withStatus(pdu);
}

/** Wait until the tasks are over, at most `ms`. */
export async function settle(tasks: readonly Task[], ms: number): Promise<boolean> {
  if (tasks.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  const all = Promise.all(tasks.map((t) => t.settled)).then(() => true);
  try {
    return await Promise.race([all, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export async function handleTaskManagement(conn: Connection, session: Session, pdu: Pdu): Promise<void> {
  const target = session.target;
  const nexus = session.nexus;
  if (!target || !nexus) {
    conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, 'task management in a discovery session');
    return;
  }
  const code = pdu.flags & TMF_REQ.FUNCTION_MASK;
  const fn = FUNCTIONS[code];
  const lun = pdu.lun;
  const log = session.log.child({ tmf: fn ?? code, lun });
  const respond = (response: number): Promise<void> => {
    log.info({ response }, 'task management done');
    return conn.send([tmfResponsePdu(pdu.itt, response)]);
  };
  if (!fn) return respond(TMF_RESPONSE.NOT_SUPPORTED);
  if (fn === 'taskReassign') return respond(TMF_RESPONSE.REASSIGNMENT_NOT_SUPPORTED);

  const peers = (): Session[] => conn.env.registry.forTarget(target.name);
  let aborted: Task[] = [];
  switch (fn) {
    case 'abortTask': {
      const rtt = pdu.u32(TMF_REQ.REFERENCED_TASK_TAG);
      const task = session.tasks.get(rtt);
      if (!task || task.phase === 'responding' || task.phase === 'done') return respond(TMF_RESPONSE.TASK_DOES_NOT_EXIST);
      aborted = session.abortTasks((t) => t === task);
      break;
    }
    case 'abortTaskSet':
      aborted = session.abortTasks((t) => t.lun === lun);
      break;
    case 'clearTaskSet':
    case 'lunReset':
      aborted = peers().flatMap((s) => s.abortTasks((t) => t.lun === lun));
      break;
    case 'targetWarmReset':
    case 'targetColdReset':
      aborted = peers().flatMap((s) => s.abortTasks(() => true));
      break;
    case 'clearAca':
      break;
  }
  if (aborted.length) log.info({ tasks: aborted.map((t) => t.toString()) }, 'tasks aborted');
  let response: number;
  try {
    response = target.device.taskManagement(nexus, fn, lun);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'the SCSI layer failed on task management');
    response = TMF_RESPONSE.REJECTED;
  }
  if (fn === 'abortTask') response = TMF_RESPONSE.COMPLETE;
  const settled = await settle(aborted, session.limits.settleWaitMs);
  if (!settled) log.warn(`aborted tasks still running after ${session.limits.settleWaitMs} ms; answering anyway (their responses are suppressed)`);
  await respond(response);
  if (fn === 'targetColdReset') {
    for (const s of peers()) s.close('TARGET COLD RESET');
  }
}
