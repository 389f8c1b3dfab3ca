/**
 * The table of every text key an iSCSI target negotiates (RFC 7143 chapters 12 and 13, plus the
 * RFC 3720 marker keys that initiators still send). One row per key: how its result is
 * computed, when it may be used, who may send it, its range and its RFC default. The pure
 * negotiation in `negotiation.ts` reads only this table.
 *
 *   kind         result                                          examples
 *   declarative  no negotiation; the sender states its value     InitiatorName, MaxRecvDataSegmentLength
 *   list         first value of the offer we support             HeaderDigest, AuthMethod
 *   and / or     boolean AND / OR of both sides                  ImmediateData / InitialR2T
 *   min / max    numeric minimum / maximum of both sides         MaxBurstLength / DefaultTime2Wait
 *   auth         handled by the authentication exchange          CHAP_A, CHAP_I, CHAP_C, CHAP_N, CHAP_R
 *   ignored      obsolete or declarative keys we accept silently X#NodeArchitecture
 *
 *   use   IO: login only (any stage); LO: login of the leading connection only; ALL: login and
 *         full feature phase; FFPO: full feature phase only; SEC: security stage only
 */

export type KeyKind = 'declarative' | 'list' | 'and' | 'or' | 'min' | 'max' | 'auth' | 'ignored';
export type KeyUse = 'IO' | 'LO' | 'ALL' | 'FFPO' | 'SEC';
export type KeySender = 'initiator' | 'target' | 'both';

export interface KeyDef {
  readonly name: string;
  readonly kind: KeyKind;
  readonly use: KeyUse;
  readonly sender: KeySender;
  /** Numeric keys: inclusive range. */
  readonly min?: number;
  readonly max?: number;
  /** List and enumerated declarative keys: the values the RFC defines. */
  readonly values?: readonly string[];
  /** RFC default, as the text value. */
  readonly defaultValue?: string;
  /** The RFC marks the key "Irrelevant when: SessionType=Discovery". */
  readonly irrelevantInDiscovery?: boolean;
}

/** The largest value of a 24-bit length key (MaxRecvDataSegmentLength, burst lengths). */
export const MAX_24BIT = 0xffffff;

const YES_NO = ['Yes', 'No'] as const;

const DEFS: KeyDef[] = [
  // 13.1 digests
  { name: 'HeaderDigest', kind: 'list', use: 'IO', sender: 'both', values: ['CRC32C', 'None'], defaultValue: 'None' },
  { name: 'DataDigest', kind: 'list', use: 'IO', sender: 'both', values: ['CRC32C', 'None'], defaultValue: 'None' },
  // 13.2 - 13.10 session identity and addressing
  { name: 'MaxConnections', kind: 'min', use: 'LO', sender: 'both', min: 1, max: 65535, defaultValue: '1', irrelevantInDiscovery: true },
  { name: 'SendTargets', kind: 'declarative', use: 'FFPO', sender: 'initiator' },
  { name: 'TargetName', kind: 'declarative', use: 'IO', sender: 'initiator' },
  { name: 'InitiatorName', kind: 'declarative', use: 'IO', sender: 'initiator' },
  { name: 'TargetAlias', kind: 'declarative', use: 'ALL', sender: 'target' },
  { name: 'InitiatorAlias', kind: 'declarative', use: 'ALL', sender: 'initiator' },
  { name: 'TargetAddress', kind: 'declarative', use: 'ALL', sender: 'target' },
  { name: 'TargetPortalGroupTag', kind: 'declarative', use: 'IO', sender: 'target', min: 0, max: 65535 },
  // 13.10 - 13.20 operational
  { name: 'InitialR2T', kind: 'or', use: 'LO', sender: 'both', values: YES_NO, defaultValue: 'Yes', irrelevantInDiscovery: true },
  { name: 'ImmediateData', kind: 'and', use: 'LO', sender: 'both', values: YES_NO, defaultValue: 'Yes', irrelevantInDiscovery: true },
  { name: 'MaxRecvDataSegmentLength', kind: 'declarative', use: 'ALL', sender: 'both', min: 512, max: MAX_24BIT, defaultValue: '8192' },
  { name: 'MaxBurstLength', kind: 'min', use: 'LO', sender: 'both', min: 512, max: MAX_24BIT, defaultValue: '262144', irrelevantInDiscovery: true },
  { name: 'FirstBurstLength', kind: 'min', use: 'LO', sender: 'both', min: 512, max: MAX_24BIT, defaultValue: '65536', irrelevantInDiscovery: true },
  { name: 'DefaultTime2Wait', kind: 'max', use: 'LO', sender: 'both', min: 0, max: 3600, defaultValue: '2' },
  { name: 'DefaultTime2Retain', kind: 'min', use: 'LO', sender: 'both', min: 0, max: 3600, defaultValue: '20' },
  { name: 'MaxOutstandingR2T', kind: 'min', use: 'LO', sender: 'both', min: 1, max: 65535, defaultValue: '1', irrelevantInDiscovery: true },
  { name: 'DataPDUInOrder', kind: 'or', use: 'LO', sender: 'both', values: YES_NO, defaultValue: 'Yes', irrelevantInDiscovery: true },
  { name: 'DataSequenceInOrder', kind: 'or', use: 'LO', sender: 'both', values: YES_NO, defaultValue: 'Yes', irrelevantInDiscovery: true },
  { name: 'ErrorRecoveryLevel', kind: 'min', use: 'LO', sender: 'both', min: 0, max: 2, defaultValue: '0' },
  { name: 'SessionType', kind: 'declarative', use: 'LO', sender: 'initiator', values: ['Discovery', 'Normal'], defaultValue: 'Normal' },
  // 13.23 - 13.24 (RFC 7143 additions)
  { name: 'TaskReporting', kind: 'list', use: 'LO', sender: 'both', values: ['RFC3720', 'ResponseFence', 'FastAbort'], defaultValue: 'RFC3720', irrelevantInDiscovery: true },
  { name: 'iSCSIProtocolLevel', kind: 'min', use: 'LO', sender: 'both', min: 0, max: 31, defaultValue: '1' },
  // 13.26 X#NodeArchitecture: declarative, informational only
  { name: 'X#NodeArchitecture', kind: 'ignored', use: 'LO', sender: 'both' },
  // RFC 3720 markers, obsoleted by RFC 7143 but still offered by some initiators: we never use markers
  { name: 'IFMarker', kind: 'and', use: 'IO', sender: 'both', values: YES_NO, defaultValue: 'No' },
  { name: 'OFMarker', kind: 'and', use: 'IO', sender: 'both', values: YES_NO, defaultValue: 'No' },
  { name: 'IFMarkInt', kind: 'ignored', use: 'IO', sender: 'both' },
  { name: 'OFMarkInt', kind: 'ignored', use: 'IO', sender: 'both' },
  // chapter 12: security
  { name: 'AuthMethod', kind: 'list', use: 'SEC', sender: 'both', values: ['KRB5', 'SPKM1', 'SPKM2', 'SRP', 'CHAP', 'None'], defaultValue: 'None' },
  { name: 'CHAP_A', kind: 'auth', use: 'SEC', sender: 'both' },
  { name: 'CHAP_I', kind: 'auth', use: 'SEC', sender: 'both' },
  { name: 'CHAP_C', kind: 'auth', use: 'SEC', sender: 'both' },
  { name: 'CHAP_N', kind: 'auth', use: 'SEC', sender: 'both' },
  { name: 'CHAP_R', kind: 'auth', use: 'SEC', sender: 'both' },
];

export const KEYS: ReadonlyMap<string, KeyDef> = new Map(DEFS.map((d) => [d.name, d]));

export function keyDef(name: string): KeyDef | undefined {
  return KEYS.get(name);
}

/** Markers answered "Irrelevant": the interval keys only matter when markers are on, and they never are. */
export const MARKER_INTERVAL_KEYS: ReadonlySet<string> = new Set(['IFMarkInt', 'OFMarkInt']);

/**
 * Parse a numerical value (RFC 7143 6.1: decimal, or 0x hex). Returns null when malformed or
 * outside [min, max].
 */
export function parseNumber(value: string, min: number, max: number): number | null {
  let n: number;
  if (/^0[xX][0-9a-fA-F]{1,8}$/.test(value)) n = parseInt(value.slice(2), 16);
  else if (/^[0-9]{1,10}$/.test(value)) n = Number(value);
  else return null;
  return n >= min && n <= max ? n : null;
}

/** "Yes" / "No" -> boolean; anything else null. */
export function parseBoolean(value: string): boolean | null {
  if (value === 'Yes') return true;
  if (value === 'No') return false;
  return null;
}

export function yesNo(v: boolean): string {
  return v ? 'Yes' : 'No';
}

/** iSCSI names (RFC 7143 4.2.7): iqn., eui. or naa. forms, at most 223 bytes. */
const ISCSI_NAME_RE = /^(iqn\.\d{4}-\d{2}\.[^\s,]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16}([0-9A-Fa-f]{16})?)$/;

export function isIscsiName(name: string): boolean {
  return Buffer.byteLength(name) <= 223 && ISCSI_NAME_RE.test(name);
}
