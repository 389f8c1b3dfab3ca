/**
 * Collecting the data of one write command (RFC 7143 4.2.5.1 and 11.7, 11.8): immediate data in
 * the command PDU, then the unsolicited Data-Out sequence (when InitialR2T=No and the command's
 * F bit is 0), then solicited bursts, each opened by an R2T of at most MaxBurstLength bytes,
 * with at most MaxOutstandingR2T open at once.
 *
 *   unsolicited --F bit or FirstBurstLength reached--> solicited --all bytes in--> complete
 *
 * DataPDUInOrder and DataSequenceInOrder are always Yes with this target (our offer is Yes and
 * the result function is OR), so every sequence must arrive in order: DataSN counts from 0 in
 * each sequence and each PDU starts where the previous one ended. A PDU that breaks these rules
 * is refused with the Reject reason to send; the collector's state does not change.
 *
 * The buffer comes from the shared data pool; the session gives it back once the SCSI layer has
 * executed the command (it keeps no reference to Data-Out past execute()).
 */
import { dataBuffers } from '../backstore/buffer-pool.js';
import { REJECT_REASON } from '../transport/opcodes.js';
import { RESERVED_TAG } from '../transport/pdu.js';

export interface WriteParams {
  initialR2T: boolean;
  firstBurstLength: number;
  maxBurstLength: number;
  maxOutstandingR2T: number;
}

export interface R2tRequest {
  ttt: number;
  r2tSN: number;
  offset: number;
  length: number;
}

export type DataOutVerdict = { kind: 'accepted' } | { kind: 'complete' } | { kind: 'reject'; reason: number; why: string };

interface Sequence {
  /** The R2T's tag; RESERVED_TAG for the unsolicited sequence. */
  ttt: number;
  end: number;
  nextOffset: number;
  nextDataSN: number;
}

export type WritePhase = 'unsolicited' | 'solicited' | 'complete';

export class WriteCollector {
  readonly buffer: Buffer;
  private p: WriteParams;
  private phaseName: WritePhase;
  private unsolicited: Sequence | null = null;
  private readonly bursts = new Map<number, Sequence>();
  private nextR2TOffset: number;
  private nextR2TSN = 0;
  private received: number;
  private readonly newTag: () => number;

  /**
   * @param total    Expected Data Transfer Length
   * @param immediate data segment of the command PDU (already checked against FirstBurstLength)
   * @param finalBit the command's F bit: 1 = no unsolicited Data-Out follows
   */
  constructor(total: number, immediate: Buffer, finalBit: boolean, p: WriteParams, newTag: () => number) {
    this.buffer = dataBuffers.take(total);
    this.p = p;
    this.newTag = newTag;
    immediate.copy(this.buffer, 0);
    this.received = immediate.length;
    this.nextR2TOffset = immediate.length;
    const unsolicitedEnd = Math.min(p.firstBurstLength, total);
    if (!finalBit && !p.initialR2T && immediate.length < unsolicitedEnd) {
      this.unsolicited = { ttt: RESERVED_TAG, end: unsolicitedEnd, nextOffset: immediate.length, nextDataSN: 0 };
      this.phaseName = 'unsolicited';
    } else {
      this.phaseName = this.received >= total ? 'complete' : 'solicited';
    }
  }

  get phase(): WritePhase {
    return this.phaseName;
  }

  get complete(): boolean {
    return this.phaseName === 'complete';
  }

  get receivedBytes(): number {
    return this.received;
  }

  get outstandingR2Ts(): number {
    return this.bursts.size;
  }

  /** R2Ts to send now: as many new bursts as MaxOutstandingR2T allows. */
  takeR2Ts(): R2tRequest[] {
    const out: R2tRequest[] = [];
    if (this.phaseName !== 'solicited') return out;
    while (this.bursts.size < this.p.maxOutstandingR2T && this.nextR2TOffset < this.buffer.length) {
      const offset = this.nextR2TOffset;
      const length = Math.min(this.p.maxBurstLength, this.buffer.length - offset);
      const ttt = this.newTag();
      const r2tSN = this.nextR2TSN++;
      this.bursts.set(ttt, { ttt, end: offset + length, nextOffset: offset, nextDataSN: 0 });
      this.nextR2TOffset += length;
      out.push({ ttt, r2tSN, offset, length });
    }
    return out;
  }

  /** One Data-Out PDU for this task. */
  onDataOut(ttt: number, dataSN: number, offset: number, data: Buffer, finalBit: boolean): DataOutVerdict {
    if (this.phaseName === 'complete') return reject(REJECT_REASON.PROTOCOL_ERROR, 'Data-Out after all the data of the command arrived');
    let seq: Sequence | undefined;
    if (ttt === RESERVED_TAG) {
      if (!this.unsolicited) return reject(REJECT_REASON.PROTOCOL_ERROR, 'unsolicited Data-Out not allowed here (InitialR2T=Yes, the command had F=1, or the first burst is over)');
      seq = this.unsolicited;
    } else {
      seq = this.bursts.get(ttt);
      if (!seq) return reject(REJECT_REASON.INVALID_PDU_FIELD, `Data-Out for unknown Target Transfer Tag 0x${ttt.toString(16)}`);
    }
    if (dataSN !== seq.nextDataSN) return reject(REJECT_REASON.PROTOCOL_ERROR, `DataSN ${dataSN}, expected ${seq.nextDataSN}`);
    if (offset !== seq.nextOffset) return reject(REJECT_REASON.PROTOCOL_ERROR, `Buffer Offset ${offset}, expected ${seq.nextOffset}`);
    if (offset + data.length > seq.end) return reject(REJECT_REASON.PROTOCOL_ERROR, `Data-Out [${offset}, ${offset + data.length}) runs past the end of its sequence at ${seq.end}`);
    const last = offset + data.length === seq.end;
    if (finalBit && !last && seq.ttt !== RESERVED_TAG) return reject(REJECT_REASON.PROTOCOL_ERROR, `F bit at ${offset + data.length}, before the end of the burst at ${seq.end}`);

    data.copy(this.buffer, offset);
    seq.nextOffset += data.length;
    seq.nextDataSN++;
    this.received += data.length;

    if (seq.ttt === RESERVED_TAG) {
      if (last || finalBit) {
        // The initiator may send less than FirstBurstLength: solicit the rest from where it stopped.
        this.unsolicited = null;
        this.nextR2TOffset = seq.nextOffset;
        this.phaseName = this.received >= this.buffer.length ? 'complete' : 'solicited';
      }
    } else if (last) {
      this.bursts.delete(seq.ttt);
      if (this.bursts.size === 0 && this.nextR2TOffset >= this.buffer.length) this.phaseName = 'complete';
    }
    return this.phaseName === 'complete' ? { kind: 'complete' } : { kind: 'accepted' };
  }
}

function reject(reason: number, why: string): DataOutVerdict {
  return { kind: 'reject', reason, why };
}
