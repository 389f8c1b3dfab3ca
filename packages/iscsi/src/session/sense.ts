/**
 * Fixed-format sense data (SPC-4 4.5.3) for the few failures the transport itself reports
 * (a command larger than the per-command cap, a LUN it cannot decode, a data digest error on
 * Data-Out, a SCSI layer that threw). Everything else is the SCSI layer's business.
 */
export const SENSE_KEY = { HARDWARE_ERROR: 0x04, ILLEGAL_REQUEST: 0x05, ABORTED_COMMAND: 0x0b } as const;

/** ASC/ASCQ pairs the transport uses. */
export const TRANSPORT_ASC = {
  INVALID_FIELD_IN_CDB: [0x24, 0x00],
  LOGICAL_UNIT_NOT_SUPPORTED: [0x25, 0x00],
  PROTOCOL_SERVICE_CRC_ERROR: [0x47, 0x05],
  INTERNAL_TARGET_FAILURE: [0x44, 0x00],
  DATA_PHASE_ERROR: [0x4b, 0x00],
} as const;

export function fixedSense(key: number, asc: readonly [number, number]): Buffer {
  const b = Buffer.alloc(18);
  b[0] = 0x70; // current error, fixed format
  b[2] = key & 0x0f;
  b[7] = 10; // additional sense length
  b[12] = asc[0];
  b[13] = asc[1];
  return b;
}
