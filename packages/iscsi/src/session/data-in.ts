/**
 * Data-In segmentation (RFC 7143 11.7): the read data of one command, cut into PDUs of at most
 * the initiator's MaxRecvDataSegmentLength, grouped in sequences of at most MaxBurstLength with
 * the F bit on the last PDU of each sequence. DataSN counts PDUs from 0; Buffer Offset is the
 * position in the command's data. When the command ends with a status that needs no sense data,
 * the status rides in the last Data-In (S bit, with the residual); otherwise a SCSI Response
 * follows. The PDUs refer to slices of `data`: nothing is copied.
 */
import { DATA_IN, F } from '../transport/fields.js';
import { OP } from '../transport/opcodes.js';
import { Pdu, RESERVED_TAG } from '../transport/pdu.js';
import { noStatus, withStatus, type OutPdu } from './outbound.js';

export interface DataInStatus {
  status: number;
  /** DATA_IN.FLAG_OVERFLOW / FLAG_UNDERFLOW or 0. */
  residualFlags: number;
  residual: number;
}

export interface DataInOptions {
  itt: number;
  /** The command's 8-byte LUN field, echoed. */
  lunField: Buffer;
  data: Buffer;
  maxSegment: number;
  maxBurst: number;
  /** Status to send in the last Data-In (S bit); omit when a SCSI Response follows. */
  status?: DataInStatus;
}

export function dataInPdus(o: DataInOptions): OutPdu[] {
  const out: OutPdu[] = [];
  const total = o.data.length;
  const segment = Math.max(1, Math.min(o.maxSegment, o.maxBurst));
  let offset = 0;
  let dataSN = 0;
  while (offset < total) {
    const burstEnd = Math.min(total, (Math.floor(offset / o.maxBurst) + 1) * o.maxBurst);
    const len = Math.min(segment, burstEnd - offset);
    const end = offset + len;
    const pdu = Pdu.create(OP.DATA_IN);
    let flags = 0;
    if (end === burstEnd) flags |= 0x80;
    const last = end === total;
    o.lunField.copy(pdu.bhs, F.LUN);
    pdu.itt = o.itt;
    pdu.setU32(F.TTT, RESERVED_TAG);
    pdu.setU32(DATA_IN.DATASN, dataSN++);
    pdu.setU32(DATA_IN.BUFFER_OFFSET, offset);
    pdu.data = o.data.subarray(offset, end);
    if (last && o.status) {
      flags |= 0x80 | DATA_IN.FLAG_STATUS | o.status.residualFlags;
      pdu.setU8(DATA_IN.STATUS, o.status.status);
      pdu.setU32(DATA_IN.RESIDUAL, o.status.residual);
      pdu.flags = flags;
      out.push(withStatus(pdu));
    } else {
      pdu.flags = flags;
      out.push(noStatus(pdu));
    }
    offset = end;
  }
  return out;
}
