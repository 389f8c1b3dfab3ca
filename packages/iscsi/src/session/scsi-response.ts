/**
 * The end of a SCSI command on the wire (RFC 7143 11.4): Data-In for what the device produced
 * (at most what the initiator expects), then the status, either in the last Data-In (no sense
 * data) or in a SCSI Response PDU carrying the sense data, with the residual:
 *
 *   expected = what the initiator said it would move (EDTL, or the bidi read length)
 *   actual   = what the command moved or wanted to move
 *   actual > expected -> overflow (O bit), residual = actual - expected
 *   actual < expected -> underflow (U bit), residual = expected - actual
 *
 * For reads `actual` is the length of the data the device produced. For writes the transport
 * cannot know the length the CDB asked for: the SCSI layer reports it as `dataOutLength`;
 * without it no write residual is reported.
 */
import { SCSI_RSP } from '../transport/fields.js';
import { OP } from '../transport/opcodes.js';
import { Pdu } from '../transport/pdu.js';
import { SAM_STAT, type ScsiResponse } from '../scsi/types.js';
import { dataInPdus } from './data-in.js';
import { withStatus, type OutPdu } from './outbound.js';
import type { Task } from './task-table.js';

export interface Residual {
  flags: number;
  residual: number;
}

export function residualOf(expected: number, actual: number): Residual {
  if (actual > expected) return { flags: SCSI_RSP.FLAG_OVERFLOW, residual: actual - expected };
  if (actual < expected) return { flags: SCSI_RSP.FLAG_UNDERFLOW, residual: expected - actual };
  return { flags: 0, residual: 0 };
}

export interface CompletionOptions {
  lunField: Buffer;
  /** The initiator's MaxRecvDataSegmentLength. */
  maxSegment: number;
  maxBurst: number;
}

/** Every PDU that ends `task` with `rsp`. */
export function buildCompletion(task: Task, rsp: ScsiResponse, o: CompletionOptions): OutPdu[] {
  const produced = rsp.data ?? Buffer.alloc(0);
  const reads = task.direction === 'read' || task.direction === 'bidi';
  const toSend = reads ? produced.subarray(0, Math.min(produced.length, task.expectedReadLength)) : produced.subarray(0, 0);

  let main: Residual;
  let bidi: Residual = { flags: 0, residual: 0 };
  switch (task.direction) {
    case 'read':
      main = residualOf(task.expectedReadLength, produced.length);
      break;
    case 'write':
      main = rsp.dataOutLength !== undefined ? residualOf(task.expectedLength, rsp.dataOutLength) : { flags: 0, residual: 0 };
      break;
    case 'bidi':
      main = rsp.dataOutLength !== undefined ? residualOf(task.expectedLength, rsp.dataOutLength) : { flags: 0, residual: 0 };
      bidi = residualOf(task.expectedReadLength, produced.length);
      break;
    case 'none':
      main = residualOf(task.expectedLength, produced.length);
      break;
  }

  const sense = rsp.sense && rsp.sense.length > 0 ? rsp.sense : null;
  const statusInDataIn = toSend.length > 0 && sense === null && task.direction === 'read' && rsp.status !== SAM_STAT.CHECK_CONDITION;
  const dataIns = toSend.length
    ? dataInPdus({
        itt: task.itt,
        lunField: o.lunField,
        data: toSend,
        maxSegment: o.maxSegment,
        maxBurst: o.maxBurst,
        ...(statusInDataIn ? { status: { status: rsp.status, residualFlags: main.flags, residual: main.residual } } : {}),
      })
    : [];
  if (statusInDataIn) return dataIns;
  return [...dataIns, scsiResponsePdu(task.itt, rsp.status, sense, main, bidi, dataIns.length)];
}

export function scsiResponsePdu(itt: number, status: number, sense: Buffer | null, main: Residual, bidi: Residual, expDataSN: number): OutPdu {
  const pdu = Pdu.create(OP.SCSI_RESPONSE);
  pdu.flags = 0x80 | main.flags | (bidi.flags === SCSI_RSP.FLAG_OVERFLOW ? SCSI_RSP.FLAG_BIDI_OVERFLOW : 0) | (bidi.flags === SCSI_RSP.FLAG_UNDERFLOW ? SCSI_RSP.FLAG_BIDI_UNDERFLOW : 0);
  pdu.setU8(SCSI_RSP.RESPONSE, SCSI_RSP.COMMAND_COMPLETED);
  pdu.setU8(SCSI_RSP.STATUS, status);
  pdu.itt = itt;
  pdu.setU32(SCSI_RSP.SNACK_TAG, 0);
  pdu.setU32(SCSI_RSP.EXPDATASN, expDataSN);
  pdu.setU32(SCSI_RSP.BIDI_RESIDUAL, bidi.residual);
  pdu.setU32(SCSI_RSP.RESIDUAL, main.residual);
  if (sense) {
    const data = Buffer.allocUnsafe(2 + sense.length);
    data.writeUInt16BE(sense.length, 0);
    sense.copy(data, 2);
    pdu.data = data;
  }
  return withStatus(pdu);
}

/** A status the transport decides itself (no Data-In), e.g. TASK SET FULL or a transport failure. */
export function transportStatus(itt: number, status: number, sense: Buffer | null, expectedLength: number): OutPdu {
  return scsiResponsePdu(itt, status, sense, residualOf(expectedLength, 0), { flags: 0, residual: 0 }, 0);
}
