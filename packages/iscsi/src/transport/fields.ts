/**
 * Byte offsets and flag bits of the opcode-specific BHS fields (RFC 7143 chapter 11), one block
 * per PDU type. Multi-byte fields are big-endian.
 */

/** Fields that sit at the same offset in most PDUs. */
export const F = {
  LUN: 8,
  ITT: 16,
  TTT: 20,
  /** initiator PDUs */
  CMDSN: 24,
  EXPSTATSN: 28,
  /** target PDUs */
  STATSN: 24,
  EXPCMDSN: 28,
  MAXCMDSN: 32,
} as const;

export const SCSI_CMD = {
  FLAG_READ: 0x40,
  FLAG_WRITE: 0x20,
  ATTR_MASK: 0x07,
  EDTL: 20,
  CDB: 32,
  CDB_BYTES: 16,
} as const;

/** Task attributes in the SCSI Command PDU (byte 1, low 3 bits). */
export const TASK_ATTR = { UNTAGGED: 0, SIMPLE: 1, ORDERED: 2, HEAD_OF_QUEUE: 3, ACA: 4 } as const;

export const SCSI_RSP = {
  FLAG_BIDI_OVERFLOW: 0x10,
  FLAG_BIDI_UNDERFLOW: 0x08,
  FLAG_OVERFLOW: 0x04,
  FLAG_UNDERFLOW: 0x02,
  RESPONSE: 2,
  STATUS: 3,
  SNACK_TAG: 20,
  EXPDATASN: 36,
  BIDI_RESIDUAL: 40,
  RESIDUAL: 44,
  /** iSCSI response codes (byte 2) */
  COMMAND_COMPLETED: 0x00,
  TARGET_FAILURE: 0x01,
} as const;

export const DATA_IN = {
  FLAG_ACK: 0x40,
  FLAG_OVERFLOW: 0x04,
  FLAG_UNDERFLOW: 0x02,
  FLAG_STATUS: 0x01,
  STATUS: 3,
  DATASN: 36,
  BUFFER_OFFSET: 40,
  RESIDUAL: 44,
} as const;

export const DATA_OUT = {
  DATASN: 36,
  BUFFER_OFFSET: 40,
} as const;

export const R2T = {
  R2TSN: 36,
  BUFFER_OFFSET: 40,
  DESIRED_LENGTH: 44,
} as const;

export const TMF_REQ = {
  FUNCTION_MASK: 0x7f,
  REFERENCED_TASK_TAG: 20,
  REFCMDSN: 32,
  EXPDATASN: 36,
  /** function codes (byte 1 & 0x7f) */
  ABORT_TASK: 1,
  ABORT_TASK_SET: 2,
  CLEAR_ACA: 3,
  CLEAR_TASK_SET: 4,
  LOGICAL_UNIT_RESET: 5,
  TARGET_WARM_RESET: 6,
  TARGET_COLD_RESET: 7,
  TASK_REASSIGN: 8,
} as const;

export const TMF_RSP = { RESPONSE: 2 } as const;

export const LOGIN = {
  FLAG_TRANSIT: 0x80,
  FLAG_CONTINUE: 0x40,
  CSG_MASK: 0x0c,
  CSG_SHIFT: 2,
  NSG_MASK: 0x03,
  VERSION_MAX: 2,
  /** request: Version-min; response: Version-active */
  VERSION_MIN: 3,
  VERSION_ACTIVE: 3,
  ISID: 8,
  ISID_BYTES: 6,
  TSIH: 14,
  CID: 20,
  STATUS_CLASS: 36,
  STATUS_DETAIL: 37,
  /** stages */
  STAGE_SECURITY: 0,
  STAGE_OPERATIONAL: 1,
  STAGE_FULL_FEATURE: 3,
} as const;

export const TEXT = { FLAG_CONTINUE: 0x40 } as const;

export const LOGOUT_REQ = {
  REASON_MASK: 0x7f,
  CID: 20,
  CLOSE_SESSION: 0,
  CLOSE_CONNECTION: 1,
  REMOVE_CONNECTION_FOR_RECOVERY: 2,
} as const;

export const LOGOUT_RSP = {
  RESPONSE: 2,
  TIME2WAIT: 40,
  TIME2RETAIN: 42,
  CLOSED_SUCCESSFULLY: 0,
  CID_NOT_FOUND: 1,
  RECOVERY_NOT_SUPPORTED: 2,
  CLEANUP_FAILED: 3,
} as const;

export const REJECT = { REASON: 2, DATASN: 36 } as const;

export const ASYNC = {
  EVENT: 36,
  VCODE: 37,
  PARAM1: 38,
  PARAM2: 40,
  PARAM3: 42,
  /** events */
  SCSI_EVENT: 0,
  LOGOUT_REQUEST: 1,
  DROP_CONNECTION: 2,
  DROP_ALL_CONNECTIONS: 3,
  NEGOTIATION_REQUEST: 4,
} as const;

/** AHS types (RFC 7143 11.2.2). */
export const AHS_TYPE = { EXTENDED_CDB: 1, BIDI_READ_LENGTH: 2 } as const;
