/**
 * The interface between the iSCSI transport/session layer and the SCSI layer (tgt's split:
 * the transport delivers complete commands, with all their Data-Out already collected, and sends
 * back status, sense and Data-In; the SCSI layer never sees a PDU).
 *
 * A SCSI failure is data, not an exception: handlers return a status and sense. Only bugs throw.
 */

/** SAM status codes. */
export const SAM_STAT = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

/**
 * The I_T nexus: which initiator port talks through which target port. Reservations, unit
 * attentions and REPORT LUNS masking are per nexus.
 */
export interface Nexus {
  /** Stable key: `${initiatorPortName}|${targetName},t,0x${tpgt}`. */
  id: string;
  /** iSCSI initiator name (IQN / EUI / NAA), as sent at login. */
  initiatorName: string;
  /** ISID as 12 hex digits. */
  isid: string;
  /** iSCSI initiator port name: `${initiatorName},i,0x${isid}` (the PR TransportID). */
  initiatorPortName: string;
  targetName: string;
  /** Target portal group tag (relative target port identifier). */
  tpgt: number;
}

export type DataDirection = 'none' | 'read' | 'write' | 'bidi';
export type TaskAttribute = 'untagged' | 'simple' | 'ordered' | 'headOfQueue' | 'aca';

export interface ScsiRequest {
  nexus: Nexus;
  /** LUN as the initiator addressed it (0..16383, flat/peripheral addressing decoded). */
  lun: number;
  /** The CDB (6 to 16 bytes; longer with an extended CDB AHS). */
  cdb: Buffer;
  /** Write data the initiator sent (immediate + unsolicited + solicited), or null. */
  dataOut: Buffer | null;
  /** Expected Data Transfer Length from the iSCSI header: what the initiator will move. */
  expectedLength: number;
  direction: DataDirection;
  taskAttr: TaskAttribute;
  /** Initiator Task Tag. */
  taskTag: number;
  /** Set when the task is aborted by task management; a handler checks it between I/Os. */
  signal: AbortSignal;
}

export interface ScsiResponse {
  status: number;
  /**
   * Data-In for read-type commands: what the device produced. The transport sends at most
   * expectedLength bytes of it and reports the residual (over/underflow) itself.
   */
  data: Buffer | null;
  /** Sense data when status is CHECK CONDITION, formatted (fixed or descriptor) by the LU. */
  sense: Buffer | null;
  /**
   * For commands with Data-Out: how many bytes the CDB calls for (the SCSI transfer length),
   * so the transport can report the residual against the Expected Data Transfer Length
   * (RFC 7143 11.4.5). Absent when the command takes no Data-Out.
   */
  dataOutLength?: number;
}

/** Task management functions (RFC 7143 11.5.1). */
export type TmfFunction = 'abortTask' | 'abortTaskSet' | 'clearAca' | 'clearTaskSet' | 'lunReset' | 'targetWarmReset' | 'targetColdReset' | 'taskReassign';

/** Task management responses (RFC 7143 11.6.1). */
export const TMF_RESPONSE = {
  COMPLETE: 0,
  TASK_DOES_NOT_EXIST: 1,
  LUN_DOES_NOT_EXIST: 2,
  TASK_STILL_ALLEGIANT: 3,
  REASSIGNMENT_NOT_SUPPORTED: 4,
  NOT_SUPPORTED: 5,
  AUTHORIZATION_FAILED: 6,
  REJECTED: 255,
} as const;

/**
 * What a target's SCSI side offers the session layer: every LU of one iSCSI target, with its
 * LUN masking per initiator.
 */
export interface ScsiTargetDevice {
  /** Execute one command; resolves with status (never rejects for a SCSI-level failure). */
  execute(req: ScsiRequest): Promise<ScsiResponse>;
  /** An I_T nexus came into existence (login of a normal session). */
  nexusAdded(nexus: Nexus): void;
  /**
   * An I_T nexus ended (logout, or connection loss at ErrorRecoveryLevel 0): its SPC-2
   * reservations are released and an I_T NEXUS LOSS unit attention is set for it; persistent
   * reservation registrations survive (SPC-4 5.13.2).
   */
  nexusLost(nexus: Nexus): void;
  /**
   * Task management on behalf of `nexus`. The session layer aborts the matching tasks' signals
   * itself; this tells the SCSI side so it can establish unit attentions, clear reservations
   * (LUN RESET / target reset release SPC-2 reservations) and report LUN existence.
   */
  taskManagement(nexus: Nexus, fn: TmfFunction, lun: number): number;
  /** LUNs this initiator may see (LUN masking). */
  lunsFor(initiatorName: string): number[];
}
