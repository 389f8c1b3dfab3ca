/**
 * Text key negotiation on the target side (RFC 7143 6.2 and chapter 13), as one pure function:
 *
 *   negotiate({ offered, phase, sessionType, settings, state })
 *     -> { ok: true, response, auth, state }       the keys to answer, in the order offered,
 *                                                  the security keys for the authenticator, and
 *                                                  the new negotiation state
 *     -> { ok: false, status, reason }             the login must fail with this status
 *
 * Rules, per key (see the table in keys.ts):
 * - unknown key                                   -> key=NotUnderstood
 * - key the initiator may not send (TargetAlias)  -> key=Reject
 * - key used in the wrong phase                   -> key=Irrelevant (login) / key=Reject (full feature)
 * - key irrelevant to a discovery session         -> key=Irrelevant
 * - malformed or out-of-range value               -> key=Reject (the parameter keeps its value)
 * - the same key twice in one exchange, or a key
 *   renegotiated later in the login               -> login fails, initiator error (0x0200);
 *   a declarative key repeated with the same value is tolerated (initiators re-declare
 *   InitiatorName, TargetName and SessionType when they move to the operational stage), and
 *   MaxRecvDataSegmentLength may be re-declared with a new value (the last one counts)
 * - numeric min/max, boolean AND/OR, lists: the RFC result function of our setting and the offer
 */
import type { TextPairs } from '../transport/text.js';
import { LOGIN_STATUS } from '../transport/opcodes.js';
import { keyDef, MARKER_INTERVAL_KEYS, parseBoolean, parseNumber, yesNo, type KeyDef } from './keys.js';

export type DigestName = 'CRC32C' | 'None';
export type SessionKind = 'Discovery' | 'Normal';
export type NegotiationPhase = 'security' | 'operational' | 'fullFeature';

/** The target's side of every negotiated key: what it offers or accepts. */
export interface TargetKeySettings {
  /** Digests we accept, in no particular order (the initiator's order decides). */
  headerDigest: readonly DigestName[];
  dataDigest: readonly DigestName[];
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** Our MaxRecvDataSegmentLength: the largest data segment we accept. */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPduInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
}

/** What this target offers unless configured otherwise (ERL 0, one connection per session). */
export const DEFAULT_TARGET_KEY_SETTINGS: TargetKeySettings = {
  headerDigest: ['CRC32C', 'None'],
  dataDigest: ['CRC32C', 'None'],
  maxConnections: 1,
  initialR2T: false,
  immediateData: true,
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  defaultTime2Wait: 2,
  defaultTime2Retain: 0,
  maxOutstandingR2T: 8,
  dataPduInOrder: true,
  dataSequenceInOrder: true,
  errorRecoveryLevel: 0,
};

/** The operational parameters in force for a session and its connection. */
export interface OperationalParams {
  headerDigest: boolean;
  dataDigest: boolean;
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  /** Largest data segment the target accepts (what we declared). */
  targetMaxRecvDataSegmentLength: number;
  /** Largest data segment the initiator accepts: our Data-In, Text and NOP-In segments. */
  initiatorMaxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPduInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
}

/** RFC 7143 defaults: what is in force for every key nobody negotiated. */
export const RFC_DEFAULT_PARAMS: OperationalParams = {
  headerDigest: false,
  dataDigest: false,
  maxConnections: 1,
  initialR2T: true,
  immediateData: true,
  targetMaxRecvDataSegmentLength: 8192,
  initiatorMaxRecvDataSegmentLength: 8192,
  maxBurstLength: 262144,
  firstBurstLength: 65536,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  maxOutstandingR2T: 1,
  dataPduInOrder: true,
  dataSequenceInOrder: true,
  errorRecoveryLevel: 0,
};

export interface NegotiationState {
  params: OperationalParams;
  /** Every key received so far in this login, with its value (to detect renegotiation). */
  seen: ReadonlyMap<string, string>;
  /** Declarations received from the initiator (InitiatorName, TargetName, SessionType, ...). */
  declared: ReadonlyMap<string, string>;
  /** Whether we already declared our MaxRecvDataSegmentLength. */
  declaredOurMrdsl: boolean;
}

export function initialNegotiationState(): NegotiationState {
  return { params: { ...RFC_DEFAULT_PARAMS }, seen: new Map(), declared: new Map(), declaredOurMrdsl: false };
}

export interface NegotiationInput {
  offered: TextPairs;
  phase: NegotiationPhase;
  sessionType: SessionKind;
  settings: TargetKeySettings;
  state: NegotiationState;
}

export type NegotiationOutcome =
  | { ok: true; response: TextPairs; auth: TextPairs; state: NegotiationState }
  | { ok: false; status: number; reason: string; key?: string };

/** Keys whose values are handled by the login state machine or the authenticator, not here. */
const DECLARED_BY_INITIATOR = new Set(['InitiatorName', 'InitiatorAlias', 'TargetName', 'SessionType', 'SendTargets', 'X#NodeArchitecture']);

export function negotiate(input: NegotiationInput): NegotiationOutcome {
  const { offered, phase, sessionType, settings } = input;
  const params: OperationalParams = { ...input.state.params };
  const seen = new Map(input.state.seen);
  const declared = new Map(input.state.declared);
  const response: TextPairs = [];
  const auth: TextPairs = [];
  const inThisOffer = new Set<string>();
  const fail = (reason: string, key?: string): NegotiationOutcome => ({ ok: false, status: LOGIN_STATUS.INITIATOR_ERROR, reason, ...(key ? { key } : {}) });

  for (const [key, value] of offered) {
    if (inThisOffer.has(key)) return fail(`key ${key} sent twice in one exchange`, key);
    inThisOffer.add(key);
    const def = keyDef(key);
    if (!def) {
      response.push([key, 'NotUnderstood']);
      continue;
    }
    const before = seen.get(key);
    if (before !== undefined && key !== 'MaxRecvDataSegmentLength') {
      if (def.kind === 'declarative' && before === value) continue;
      return fail(`key ${key} renegotiated during the login (was '${before}', now '${value}')`, key);
    }
    seen.set(key, value);

    if (def.sender === 'target') {
      response.push([key, 'Reject']);
      continue;
    }
    const misplaced = phaseVerdict(def, phase);
    if (misplaced) {
      response.push([key, misplaced]);
      continue;
    }
    if (sessionType === 'Discovery' && def.irrelevantInDiscovery) {
      response.push([key, 'Irrelevant']);
      continue;
    }
    if (def.kind === 'auth' || key === 'AuthMethod') {
      auth.push([key, value]);
      continue;
    }
    if (DECLARED_BY_INITIATOR.has(key)) {
      if (def.values && !def.values.includes(value)) {
        response.push([key, 'Reject']);
        continue;
      }
      declared.set(key, value);
      continue;
    }
    const answer = negotiateValue(def, value, settings, params);
    if (answer !== null) response.push([key, answer]);
  }

  // FirstBurstLength never exceeds MaxBurstLength (13.14).
  if (params.firstBurstLength > params.maxBurstLength) {
    params.firstBurstLength = params.maxBurstLength;
    const fbl = response.find(([k]) => k === 'FirstBurstLength');
    if (fbl && fbl[1] !== 'Reject' && fbl[1] !== 'Irrelevant') fbl[1] = String(params.firstBurstLength);
  }
  // FirstBurstLength is irrelevant when no unsolicited data can be sent at all.
  if (params.initialR2T && !params.immediateData) {
    const fbl = response.find(([k]) => k === 'FirstBurstLength');
    if (fbl && fbl[1] !== 'Reject') fbl[1] = 'Irrelevant';
  }

  let declaredOurMrdsl = input.state.declaredOurMrdsl;
  // Declare ours once in the operational stage (not in a PDU that already answers the key).
  if (phase === 'operational' && !declaredOurMrdsl && !response.some(([k]) => k === 'MaxRecvDataSegmentLength')) {
    params.targetMaxRecvDataSegmentLength = settings.maxRecvDataSegmentLength;
    response.push(['MaxRecvDataSegmentLength', String(settings.maxRecvDataSegmentLength)]);
    declaredOurMrdsl = true;
  }
  return { ok: true, response, auth, state: { params, seen, declared, declaredOurMrdsl } };
}

/** null when the key may be used in this phase, else the answer to give. */
function phaseVerdict(def: KeyDef, phase: NegotiationPhase): string | null {
  if (phase === 'fullFeature') return def.use === 'ALL' || def.use === 'FFPO' ? null : 'Reject';
  if (def.use === 'FFPO') return 'Irrelevant';
  if (def.use === 'SEC' && phase !== 'security') return 'Irrelevant';
  return null;
}

/** Compute the answer for one negotiated key and record the result in `params`. null = no answer. */
function negotiateValue(def: KeyDef, value: string, s: TargetKeySettings, p: OperationalParams): string | null {
  switch (def.kind) {
    case 'ignored':
      return MARKER_INTERVAL_KEYS.has(def.name) ? 'Irrelevant' : null;
    case 'declarative': {
      // MaxRecvDataSegmentLength is the only declarative operational key an initiator sends.
      const n = parseNumber(value, def.min ?? 0, def.max ?? 0);
      if (n === null) return 'Reject';
      if (def.name === 'MaxRecvDataSegmentLength') p.initiatorMaxRecvDataSegmentLength = n;
      return null;
    }
    case 'list':
      return negotiateList(def, value, s, p);
    case 'and':
    case 'or': {
      const offered = parseBoolean(value);
      if (offered === null) return 'Reject';
      const ours = ourBoolean(def.name, s);
      const result = def.kind === 'and' ? offered && ours : offered || ours;
      setBoolean(def.name, result, p);
      return yesNo(result);
    }
    case 'min':
    case 'max': {
      const offered = parseNumber(value, def.min ?? 0, def.max ?? 0);
      if (offered === null) return 'Reject';
      const ours = ourNumber(def.name, s);
      const result = def.kind === 'min' ? Math.min(offered, ours) : Math.max(offered, ours);
      setNumber(def.name, result, p);
      return String(result);
    }
    case 'auth':
      return null;
  }
}

function negotiateList(def: KeyDef, value: string, s: TargetKeySettings, p: OperationalParams): string {
  const offered = value.split(',');
  if (offered.some((v) => v.length === 0)) return 'Reject';
  let supported: readonly string[];
  if (def.name === 'HeaderDigest') supported = s.headerDigest;
  else if (def.name === 'DataDigest') supported = s.dataDigest;
  else if (def.name === 'TaskReporting') supported = ['RFC3720'];
  else supported = def.values ?? [];
  const pick = offered.find((v) => supported.includes(v));
  if (pick === undefined) return 'Reject';
  if (def.name === 'HeaderDigest') p.headerDigest = pick === 'CRC32C';
  if (def.name === 'DataDigest') p.dataDigest = pick === 'CRC32C';
  return pick;
}

function ourBoolean(name: string, s: TargetKeySettings): boolean {
  switch (name) {
    case 'InitialR2T':
      return s.initialR2T;
    case 'ImmediateData':
      return s.immediateData;
    case 'DataPDUInOrder':
      return s.dataPduInOrder;
    case 'DataSequenceInOrder':
      return s.dataSequenceInOrder;
    default:
      return false; // IFMarker, OFMarker: never
  }
}

function setBoolean(name: string, v: boolean, p: OperationalParams): void {
  if (name === 'InitialR2T') p.initialR2T = v;
  else if (name === 'ImmediateData') p.immediateData = v;
  else if (name === 'DataPDUInOrder') p.dataPduInOrder = v;
  else if (name === 'DataSequenceInOrder') p.dataSequenceInOrder = v;
}

function ourNumber(name: string, s: TargetKeySettings): number {
  switch (name) {
    case 'MaxConnections':
      return s.maxConnections;
    case 'MaxBurstLength':
      return s.maxBurstLength;
    case 'FirstBurstLength':
      return s.firstBurstLength;
    case 'DefaultTime2Wait':
      return s.defaultTime2Wait;
    case 'DefaultTime2Retain':
      return s.defaultTime2Retain;
    case 'MaxOutstandingR2T':
      return s.maxOutstandingR2T;
    case 'ErrorRecoveryLevel':
      return s.errorRecoveryLevel;
    case 'iSCSIProtocolLevel':
      return 1;
    default:
      return 0;
  }
}

function setNumber(name: string, v: number, p: OperationalParams): void {
  switch (name) {
    case 'MaxConnections':
      p.maxConnections = v;
      break;
    case 'MaxBurstLength':
      p.maxBurstLength = v;
      break;
    case 'FirstBurstLength':
      p.firstBurstLength = v;
      break;
    case 'DefaultTime2Wait':
      p.defaultTime2Wait = v;
      break;
    case 'DefaultTime2Retain':
      p.defaultTime2Retain = v;
      break;
    case 'MaxOutstandingR2T':
      p.maxOutstandingR2T = v;
      break;
    case 'ErrorRecoveryLevel':
      p.errorRecoveryLevel = v;
      break;
    default:
      break;
  }
}

/** Check a settings object against the key ranges (config validation uses it). */
export function validateTargetKeySettings(s: TargetKeySettings): string | null {
  const range = (name: string, v: number): string | null => {
    const def = keyDef(name)!;
    return Number.isInteger(v) && v >= (def.min ?? 0) && v <= (def.max ?? 0) ? null : `${name} must be an integer from ${def.min} to ${def.max}, got ${v}`;
  };
  return (
    range('MaxRecvDataSegmentLength', s.maxRecvDataSegmentLength) ??
    range('MaxBurstLength', s.maxBurstLength) ??
    range('FirstBurstLength', s.firstBurstLength) ??
    range('DefaultTime2Wait', s.defaultTime2Wait) ??
    range('DefaultTime2Retain', s.defaultTime2Retain) ??
    range('MaxOutstandingR2T', s.maxOutstandingR2T) ??
    (s.firstBurstLength > s.maxBurstLength ? `FirstBurstLength ${s.firstBurstLength} exceeds MaxBurstLength ${s.maxBurstLength}` : null) ??
    (s.maxConnections !== 1 ? 'MaxConnections must be 1 (one connection per session)' : null) ??
    (s.errorRecoveryLevel !== 0 ? 'ErrorRecoveryLevel must be 0 (the only level supported)' : null) ??
    (s.headerDigest.length === 0 || s.dataDigest.length === 0 ? 'HeaderDigest and DataDigest need at least one accepted value' : null)
  );
}
