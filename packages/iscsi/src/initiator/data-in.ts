/**
 * Data-In reassembly for one read command (RFC 7143 11.7): each Data-In PDU carries a DataSN
 * and a Buffer Offset; its data lands at that offset of a buffer of Expected Data Transfer
 * Length bytes (allocated once, bounded by the session's maximum transfer size). We negotiate
 * DataPDUInOrder=Yes and DataSequenceInOrder=Yes, so PDUs must come in order with contiguous
 * offsets: anything else (a DataSN gap, an overlap, data past the buffer) is a protocol error,
 * which at ErrorRecoveryLevel 0 ends the connection. The last Data-In may carry the status (S
 * bit) and the residual count.
 */
import { EsxError } from '@esxemu/shared';
import { DATA_IN, type Pdu } from '../transport/index.js';

export interface DataInStatus {
  status: number;
  underflow: boolean;
  overflow: boolean;
  residual: number;
}

export class DataInAssembler {
  readonly expectedLength: number;
  private buffer: Buffer | null = null;
  private expDataSN = 0;
  /** Bytes received so far (contiguous from offset 0). */
  received = 0;

  constructor(expectedLength: number) {
    this.expectedLength = expectedLength;
  }

  /** Take one Data-In PDU; returns its status if it carries one (S bit). Throws PROTOCOL_ERROR. */
  accept(pdu: Pdu): DataInStatus | null {
    const dataSN = pdu.u32(DATA_IN.DATASN);
    const offset = pdu.u32(DATA_IN.BUFFER_OFFSET);
    const n = pdu.data.length;
    if (dataSN !== this.expDataSN) throw this.err('DATASN_GAP', `Data-In DataSN ${dataSN}, expected ${this.expDataSN}`);
    if (offset !== this.received) throw this.err('DATA_OUT_OF_ORDER', `Data-In at offset ${offset}, expected ${this.received} (DataPDUInOrder=Yes)`);
    if (offset + n > this.expectedLength) throw this.err('DATA_OVERRUN', `Data-In of ${n} bytes at offset ${offset} overruns the ${this.expectedLength}-byte buffer`);
    if (n > 0) {
      this.buffer ??= Buffer.allocUnsafe(this.expectedLength);
      pdu.data.copy(this.buffer, offset);
    }
    this.received += n;
    this.expDataSN = (this.expDataSN + 1) >>> 0;
    const flags = pdu.flags;
    if ((flags & DATA_IN.FLAG_STATUS) === 0) return null;
    if (!pdu.final) throw this.err('BAD_FLAGS', 'Data-In with the S bit but not the F bit');
    return {
      status: pdu.u8(DATA_IN.STATUS),
      underflow: (flags & DATA_IN.FLAG_UNDERFLOW) !== 0,
      overflow: (flags & DATA_IN.FLAG_OVERFLOW) !== 0,
      residual: pdu.u32(DATA_IN.RESIDUAL),
    };
  }

  /** The bytes delivered (a view of the buffer; a fresh buffer when nothing came). */
  data(): Buffer {
    return this.buffer ? this.buffer.subarray(0, this.received) : Buffer.alloc(0);
  }

  private err(reason: string, message: string): EsxError {
    return new EsxError('PROTOCOL_ERROR', message, { reason });
  }
}
