/**
 * A SCSI Command PDU from delivery (CmdSN order) to its last response PDU (RFC 7143 11.3):
 *
 *   check the PDU -> task in the table -> collect write data (immediate, unsolicited, R2T'd)
 *     -> wait for its turn (task attribute) -> device.execute -> Data-In / SCSI Response
 *
 * Checks, each with the answer the RFC gives:
 * - immediate data without W bit, with ImmediateData=No, or beyond min(FirstBurstLength, EDTL)
 *   -> Reject (protocol error)
 * - an ITT already in use -> Reject (task in progress); the reserved ITT -> Reject (invalid field)
 * - a command in a discovery session -> Reject (protocol error)
 * - EDTL above the per-command cap -> CHECK CONDITION, INVALID FIELD IN CDB
 * - a LUN that is not in peripheral or flat addressing -> CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED
 * - task table full, or the session's write budget spent -> TASK SET FULL
 * The SCSI layer never sees a PDU: it gets a ScsiRequest with all the write data.
 */
import { dataBuffers } from '../backstore/buffer-pool.js';
import { AHS_TYPE, F, SCSI_CMD } from '../transport/fields.js';
import { REJECT_REASON } from '../transport/opcodes.js';
import { RESERVED_TAG, type Pdu } from '../transport/pdu.js';
import { SAM_STAT, type DataDirection, type ScsiRequest, type ScsiResponse, type TaskAttribute } from '../scsi/types.js';
import type { Connection } from './connection.js';
import { r2tPdu } from './r2t.js';
import { buildCompletion, transportStatus } from './scsi-response.js';
import { fixedSense, SENSE_KEY, TRANSPORT_ASC } from './sense.js';
import type { Session } from './session.js';
import { Task } from './task-table.js';
import type { Admission } from './task-order.js';
import { WriteCollector } from './write-collector.js';

const ATTRS: Record<number, TaskAttribute> = { 0: 'untagged', 1: 'simple', 2: 'ordered', 3: 'headOfQueue', 4: 'aca' };

/** Per-task bookkeeping of a running command that is not part of the task's identity. */
export interface CommandRun {
  task: Task;
  lunField: Buffer;
  admission: Admission;
  /** Resolves once all write data is in (immediately for other commands). */
  dataReady: Promise<void>;
  dataDone(): void;
  dataTimer: NodeJS.Timeout | null;
}

const runs = new WeakMap<Task, CommandRun>();

export function commandRunOf(task: Task): CommandRun | undefined {
  return runs.get(task);
}

/** Parse the CDB, with an extended CDB AHS if present. Null when the AHS is malformed. */
function parseCdb(pdu: Pdu): { cdb: Buffer; bidiReadLength: number | null } | null {
  let cdb = Buffer.from(pdu.bhs.subarray(SCSI_CMD.CDB, SCSI_CMD.CDB + SCSI_CMD.CDB_BYTES));
  let bidiReadLength: number | null = null;
  const ahs = pdu.ahs;
  let off = 0;
  while (off < ahs.length) {
    if (off + 4 > ahs.length) return null;
    const len = ahs.readUInt16BE(off);
    const type = ahs[off + 2]!;
    const body = off + 3;
    if (body + len > ahs.length) return null;
    if (type === AHS_TYPE.EXTENDED_CDB) {
      if (len < 2) return null;
      cdb = Buffer.concat([cdb, ahs.subarray(body + 1, body + len)]);
    } else if (type === AHS_TYPE.BIDI_READ_LENGTH) {
      if (len !== 5) return null;
      bidiReadLength = ahs.readUInt32BE(body + 1);
    }
    off = body + len;
    off += (4 - (off & 3)) & 3;
  }
  return { cdb, bidiReadLength };
}

/** A SCSI Command PDU delivered in CmdSN order. */
export function startScsiCommand(conn: Connection, session: Session, pdu: Pdu): void {
  const log = session.log;
  if (session.kind === 'Discovery' || !session.target || !session.nexus) {
    conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, 'SCSI command in a discovery session');
    return;
  }
  const p = session.params;
  const flags = pdu.flags;
  const reads = (flags & SCSI_CMD.FLAG_READ) !== 0;
  const writes = (flags & SCSI_CMD.FLAG_WRITE) !== 0;
  const edtl = pdu.u32(SCSI_CMD.EDTL);
  const itt = pdu.itt;
  const immediate = pdu.data;

  if (itt === RESERVED_TAG) return conn.reject(REJECT_REASON.INVALID_PDU_FIELD, pdu, 'SCSI command with the reserved Initiator Task Tag');
  if (session.tasks.has(itt)) return conn.reject(REJECT_REASON.TASK_IN_PROGRESS, pdu, `ITT 0x${itt.toString(16)} is already in use`);
  if (immediate.length > 0) {
    if (!writes) return conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, 'immediate data on a command without the W bit');
    if (!p.immediateData) return conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, 'immediate data while ImmediateData=No');
    if (immediate.length > Math.min(p.firstBurstLength, edtl)) {
      return conn.reject(REJECT_REASON.PROTOCOL_ERROR, pdu, `${immediate.length} bytes of immediate data, more than min(FirstBurstLength ${p.firstBurstLength}, EDTL ${edtl})`);
    }
  }
  const parsed = parseCdb(pdu);
  if (!parsed) return conn.reject(REJECT_REASON.INVALID_PDU_FIELD, pdu, 'malformed AHS');

  const direction: DataDirection = reads && writes ? 'bidi' : reads ? 'read' : writes ? 'write' : 'none';
  const expectedReadLength = direction === 'bidi' ? (parsed.bidiReadLength ?? 0) : direction === 'read' ? edtl : 0;
  const lunField = Buffer.from(pdu.bhs.subarray(F.LUN, F.LUN + 8));
  const task = new Task({
    itt,
    cmdSN: pdu.u32(F.CMDSN),
    lun: pdu.lun,
    cdb: parsed.cdb,
    direction,
    attr: ATTRS[flags & SCSI_CMD.ATTR_MASK] ?? 'simple',
    expectedLength: edtl,
    expectedReadLength,
    immediate: pdu.immediate,
  });

  // Failures the transport answers itself (no data was collected; later unsolicited Data-Out for
  // this ITT is discarded because the task is not in the table).
  const early = (status: number, sense: Buffer | null, why: string): void => {
    log.debug({ task: task.toString(), why }, 'command answered by the transport');
    void conn.send([transportStatus(itt, status, sense, edtl)]);
  };
  if (task.lun < 0) return early(SAM_STAT.CHECK_CONDITION, fixedSense(SENSE_KEY.ILLEGAL_REQUEST, TRANSPORT_ASC.LOGICAL_UNIT_NOT_SUPPORTED), 'LUN addressing method not supported');
  if (edtl > session.limits.maxCommandBytes || expectedReadLength > session.limits.maxCommandBytes) {
    return early(SAM_STAT.CHECK_CONDITION, fixedSense(SENSE_KEY.ILLEGAL_REQUEST, TRANSPORT_ASC.INVALID_FIELD_IN_CDB), `transfer of ${edtl} bytes exceeds the per-command cap ${session.limits.maxCommandBytes}`);
  }
  if (session.tasks.full) return early(SAM_STAT.TASK_SET_FULL, null, `task table full (${session.tasks.max})`);
  const writeLength = writes ? edtl : 0;
  if (writeLength > 0 && session.writeBytes + writeLength > session.limits.maxSessionWriteBytes) {
    return early(SAM_STAT.TASK_SET_FULL, null, `session write budget spent (${session.writeBytes} of ${session.limits.maxSessionWriteBytes} bytes in use)`);
  }

  session.tasks.add(task);
  const admission = session.order.admit(task.attr);
  let dataDone!: () => void;
  const run: CommandRun = { task, lunField, admission, dataReady: new Promise<void>((r) => (dataDone = r)), dataDone: () => dataDone(), dataTimer: null };
  runs.set(task, run);

  if (writeLength > 0) {
    task.writeBytes = writeLength;
    session.writeBytes += writeLength;
    task.write = new WriteCollector(edtl, immediate, pdu.final, p, () => conn.newTag());
    if (task.write.complete) run.dataDone();
    else {
      sendR2Ts(conn, run);
      armDataTimer(session, run);
    }
  } else {
    run.dataDone();
  }
  void runTask(conn, session, run).catch((err) => conn.fail(err, pdu));
}

/** Ask for as many bursts as MaxOutstandingR2T allows. */
export function sendR2Ts(conn: Connection, run: CommandRun): void {
  const r2ts = run.task.write?.takeR2Ts() ?? [];
  if (r2ts.length) void conn.send(r2ts.map((r) => r2tPdu(run.task.itt, run.lunField, r)));
}

/** (Re)arm the bound on waiting for Data-Out. */
export function armDataTimer(session: Session, run: CommandRun): void {
  if (run.dataTimer) {
    run.dataTimer.refresh();
    return;
  }
  run.dataTimer = setTimeout(() => {
    run.dataTimer = null;
    if (run.task.phase !== 'collecting') return;
    session.log.warn({ task: run.task.toString(), received: run.task.write?.receivedBytes }, `no Data-Out for ${session.limits.dataOutTimeoutMs} ms: task dropped`);
    run.task.markAborted();
  }, session.limits.dataOutTimeoutMs);
  run.dataTimer.unref();
}

async function runTask(conn: Connection, session: Session, run: CommandRun): Promise<void> {
  const { task } = run;
  try {
    if (task.write && !task.write.complete) await Promise.race([run.dataReady, task.whenAborted()]);
    if (task.aborted) return;
    if (run.dataTimer) clearTimeout(run.dataTimer);
    run.dataTimer = null;
    task.phase = 'waiting';
    if (!run.admission.now) await Promise.race([run.admission.ready, task.whenAborted()]);
    if (task.aborted) return;
    task.phase = 'running';
    const target = session.target!;
    const req: ScsiRequest = {
      nexus: session.nexus!,
      lun: task.lun,
      cdb: task.cdb,
      dataOut: task.write ? task.write.buffer : null,
      expectedLength: task.expectedLength,
      direction: task.direction,
      taskAttr: task.attr,
      taskTag: task.itt,
      signal: task.signal,
    };
    let rsp: ScsiResponse;
    try {
      rsp = await target.device.execute(req);
    } catch (err) {
      session.log.error({ task: task.toString(), err: (err as Error)?.message, stack: (err as Error)?.stack }, 'the SCSI layer threw; answering INTERNAL TARGET FAILURE');
      rsp = { status: SAM_STAT.CHECK_CONDITION, data: null, sense: fixedSense(SENSE_KEY.HARDWARE_ERROR, TRANSPORT_ASC.INTERNAL_TARGET_FAILURE) };
    }
    // The command has run: its Data-Out is in the backstore (or was refused) and nothing refers to
    // the collected buffer any more.
    if (task.write && rsp.data?.buffer !== task.write.buffer.buffer) dataBuffers.release(task.write.buffer);
    if (task.aborted) return;
    task.phase = 'responding';
    const pdus = buildCompletion(task, rsp, { lunField: run.lunField, maxSegment: session.params.initiatorMaxRecvDataSegmentLength, maxBurst: session.params.maxBurstLength });
    // The read data goes back to the pool once the socket has written the last PDU that refers
    // to it (PDUs leave in order, so every earlier Data-In is written by then).
    if (rsp.data && pdus.length) pdus[pdus.length - 1]!.pdu.onSent = () => dataBuffers.release(rsp.data);
    // Out of the table before the status leaves: MaxCmdSN in it already counts the slot as free.
    finish(session, run);
    await conn.send(pdus);
  } finally {
    finish(session, run);
    task.settle();
  }
}

/** Release everything the task holds (idempotent). */
function finish(session: Session, run: CommandRun): void {
  const { task } = run;
  if (run.dataTimer) clearTimeout(run.dataTimer);
  run.dataTimer = null;
  run.admission.release();
  if (task.writeBytes) {
    session.writeBytes -= task.writeBytes;
    task.writeBytes = 0;
  }
  session.tasks.remove(task);
}

/** End a task with a status decided by the transport (e.g. a Data-Out digest error, RFC 7143 7.8). */
export function failTask(conn: Connection, session: Session, task: Task, status: number, sense: Buffer | null, why: string): void {
  const run = runs.get(task);
  if (!run || task.phase !== 'collecting') return;
  session.log.warn({ task: task.toString(), why }, 'task ended by the transport');
  task.markAborted();
  void conn.send([transportStatus(task.itt, status, sense, task.expectedLength)]);
}
