/**
 * Reservation state of one logical unit and the conflict rules:
 *  - SPC-2 RESERVE/RELEASE: one I_T nexus holds the LU; every other nexus gets RESERVATION
 *    CONFLICT except for the commands SPC-2 exempts (INQUIRY, REPORT LUNS, REQUEST SENSE,
 *    RELEASE, REPORT SUPPORTED OPERATION CODES/TMFs, PREVENT ALLOW with PREVENT 0). Released by
 *    RELEASE, I_T nexus loss, logical unit reset and target reset.
 *  - SPC-4 persistent reservations: registrations (a key per I_T nexus) and at most one
 *    reservation of type WE, EA, WERO, EARO, WEAR or EAAR (LU scope). Conflicts follow the
 *    SPC-4 5.13.1 table by access class: 'read' commands (READ, VERIFY, MODE SENSE, ...),
 *    'write' commands (WRITE, UNMAP, SYNCHRONIZE CACHE, MODE SELECT, ...), and 'none' (INQUIRY,
 *    REPORT LUNS, READ CAPACITY, PERSISTENT RESERVE IN/OUT, ...) which never conflict.
 *  - The two kinds exclude each other (SPC-4 5.13.3, CRH=1): RESERVE(6/10) conflicts with a
 *    persistent reservation, and PERSISTENT RESERVE IN/OUT conflict with an SPC-2 reservation.
 * Registrations survive I_T nexus loss and resets. APTPL (persist through power loss) is not
 * implemented: PTPL_C is 0 and APTPL=1 is refused.
 */
import { EsxError } from '@esxemu/shared';

export const PR_TYPE = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;

export const MAX_REGISTRATIONS = 256;

export type AccessClass = 'none' | 'read' | 'write';

export function isValidPrType(t: number): boolean {
  return t === 1 || t === 3 || t === 5 || t === 6 || t === 7 || t === 8;
}

/** All-registrants types: every registrant is a reservation holder. */
export function isAllRegistrants(t: number): boolean {
  return t === PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS || t === PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

/** Registrants-only and all-registrants types (release notifies the other registrants). */
export function isRegistrantsType(t: number): boolean {
  return t >= PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
}

export interface Registration {
  key: bigint;
  /** iSCSI initiator port name: `${initiatorName},i,0x${isid}` (for READ FULL STATUS). */
  initiatorPortName: string;
  /** Relative target port identifier (TPGT). */
  tpgt: number;
}

export interface PersistentReservation {
  /** Holder nexus key; null for all-registrants types (every registrant holds it). */
  holder: string | null;
  type: number;
  scope: number;
}

/** The nexus key used for reservations and unit attentions. */
export function nexusKeyOf(initiatorPortName: string, tpgt: number): string {
  return `${initiatorPortName.toLowerCase()}|${tpgt}`;
}

export class Reservations {
  /** SPC-2 reservation holder. */
  spc2Holder: string | null = null;
  readonly registrations = new Map<string, Registration>();
  reservation: PersistentReservation | null = null;
  /** PRGENERATION, u32 wrapping. */
  generation = 0;

  isRegistered(nexusKey: string): boolean {
    return this.registrations.has(nexusKey);
  }

  isHolder(nexusKey: string): boolean {
    const r = this.reservation;
    if (!r) return false;
    return isAllRegistrants(r.type) ? this.registrations.has(nexusKey) : r.holder === nexusKey;
  }

  bumpGeneration(): void {
    this.generation = (this.generation + 1) >>> 0;
  }

  /** Does a command of this access class from this nexus conflict with a reservation? */
  conflicts(nexusKey: string, access: AccessClass, spc2Exempt: boolean): boolean {
    if (this.spc2Holder !== null && this.spc2Holder !== nexusKey && !spc2Exempt) return true;
    return this.prConflicts(nexusKey, access);
  }

  prConflicts(nexusKey: string, access: AccessClass): boolean {
    const r = this.reservation;
    if (!r || access === 'none' || this.isHolder(nexusKey)) return false;
    const registered = this.registrations.has(nexusKey);
    switch (r.type) {
      case PR_TYPE.WRITE_EXCLUSIVE:
        return access === 'write';
      case PR_TYPE.EXCLUSIVE_ACCESS:
        return true;
      case PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY:
      case PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS:
        return !registered && access === 'write';
      case PR_TYPE.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY:
      case PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS:
        return !registered;
      default:
        throw new EsxError('INTERNAL', `reservation of unknown type ${r.type}`);
    }
  }

  /**
   * Remove a registration; releases the reservation when its holder goes (or the last
   * registrant of an all-registrants reservation). Returns the nexus keys to notify with
   * RESERVATIONS RELEASED (registrants-only reservation released by its holder unregistering).
   */
  unregister(nexusKey: string): string[] {
    if (!this.registrations.delete(nexusKey)) return [];
    const r = this.reservation;
    if (!r) return [];
    if (isAllRegistrants(r.type)) {
      if (this.registrations.size === 0) this.reservation = null;
      return [];
    }
    if (r.holder !== nexusKey) return [];
    this.reservation = null;
    return r.type === PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || r.type === PR_TYPE.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY ? [...this.registrations.keys()] : [];
  }

  /** SPC-2 reservations end with the nexus; persistent ones do not. */
  nexusLost(nexusKey: string): void {
    if (this.spc2Holder === nexusKey) this.spc2Holder = null;
  }

  /** Logical unit reset and target resets release the SPC-2 reservation only. */
  reset(): void {
    this.spc2Holder = null;
  }
}
