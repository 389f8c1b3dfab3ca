/**
 * Building a SCSI Command PDU and the write data that goes with it (RFC 7143 11.3, 11.7, 13.x):
 *
 *   immediate data   in the command PDU itself, if ImmediateData=Yes:
 *                    min(FirstBurstLength, MaxRecvDataSegmentLength of the target, length)
 *   unsolicited      Data-Out PDUs (TTT 0xffffffff) right after the command, if InitialR2T=No,
 *                    up to FirstBurstLength in total (immediate data included)
 *   solicited        Data-Out PDUs answering each R2T (its TTT, offset, desired length)
 *
 * Every Data-Out carries at most the target's MaxRecvDataSegmentLength; DataSN restarts at 0 in
 * each sequence; the last PDU of a sequence has the F bit. Data segments are views of the
 * caller's buffer (no copy).
 */
import { DATA_OUT, encodeLun, F, OP, Pdu, RESERVED_TAG, SCSI_CMD, TASK_ATTR } from '../transport/index.js';
import type { SessionParams } from './params.js';
import type { Task, TaskAttribute } from './task.js';

const ATTR: Record<TaskAttribute, number> = { simple: TASK_ATTR.SIMPLE, ordered: TASK_ATTR.ORDERED, headOfQueue: TASK_ATTR.HEAD_OF_QUEUE };

export interface SendNumbers {
  itt: number;
  cmdSN: number;
  expStatSN: number;
}

/** The command PDU and its unsolicited Data-Out PDUs. */
export function commandPdus(task: Task, p: SessionParams, n: SendNumbers): Pdu[] {
  const { lun, cdb, dataOut, expectedLength, attr } = task.spec;
  const writeLength = dataOut?.length ?? 0;
  const cmd = Pdu.create(OP.SCSI_COMMAND);
  cmd.lun = lun;
  cmd.itt = n.itt;
  cmd.setU32(F.CMDSN, n.cmdSN);
  cmd.setU32(F.EXPSTATSN, n.expStatSN);
  cmd.setU32(SCSI_CMD.EDTL, writeLength || expectedLength);
  cdb.copy(cmd.bhs, SCSI_CMD.CDB);
  let flags = ATTR[attr];
  if (expectedLength > 0) flags |= SCSI_CMD.FLAG_READ;
  if (writeLength > 0) flags |= SCSI_CMD.FLAG_WRITE;

  const pdus = [cmd];
  if (dataOut && writeLength > 0) {
    const firstBurst = Math.min(p.firstBurstLength, writeLength);
    let sent = 0;
    if (p.immediateData) {
      sent = Math.min(firstBurst, p.maxSendDataSegmentLength);
      cmd.data = dataOut.subarray(0, sent);
    }
    if (!p.initialR2T && sent < firstBurst) {
      pdus.push(...dataOutSequence(task, p, lun, n.itt, RESERVED_TAG, sent, firstBurst - sent, n.expStatSN));
    }
  }
  // F: no unsolicited Data-Out follows this PDU.
  if (pdus.length === 1) flags |= 0x80;
  cmd.flags = flags;
  return pdus;
}

/** One Data-Out sequence: `length` bytes from `offset`, split by the target's segment limit. */
export function dataOutSequence(task: Task, p: SessionParams, lun: number, itt: number, ttt: number, offset: number, length: number, expStatSN: number): Pdu[] {
  const data = task.spec.dataOut!;
  const out: Pdu[] = [];
  const lunBytes = encodeLun(lun);
  let dataSN = 0;
  for (let off = offset, end = offset + length; off < end; ) {
    const n = Math.min(p.maxSendDataSegmentLength, end - off);
    const pdu = Pdu.create(OP.DATA_OUT);
    lunBytes.copy(pdu.bhs, F.LUN);
    pdu.itt = itt;
    pdu.setU32(F.TTT, ttt);
    pdu.setU32(F.EXPSTATSN, expStatSN);
    pdu.setU32(DATA_OUT.DATASN, dataSN++);
    pdu.setU32(DATA_OUT.BUFFER_OFFSET, off);
    pdu.data = data.subarray(off, off + n);
    off += n;
    if (off === end) pdu.final = true;
    out.push(pdu);
  }
  return out;
}
