/**
 * Operational parameters of a session as the initiator sees them (RFC 7143 chapter 13): what we
 * offer at login, and the values in force once the target has answered, computed by the RFC's
 * result functions:
 *
 *   HeaderDigest, DataDigest       list: the target picks one of ours      -> its answer
 *   MaxRecvDataSegmentLength       declarative, per direction               -> ours / theirs
 *   MaxBurstLength, FirstBurstLength, MaxOutstandingR2T, ErrorRecoveryLevel,
 *   DefaultTime2Retain, MaxConnections                                     -> min
 *   DefaultTime2Wait                                                       -> max
 *   ImmediateData                                                          -> AND
 *   InitialR2T, DataPDUInOrder, DataSequenceInOrder                        -> OR
 *
 * A key the target did not answer keeps its RFC default. An answer outside what we offered
 * (a digest we did not list, a number out of range, a min-function answer above our offer) is a
 * protocol error: a target that negotiates nonsense does not get a session.
 */
import { EsxError } from '@esxemu/shared';
import type { TextPairs } from '../transport/index.js';

export type DigestName = 'CRC32C' | 'None';

/** What the initiator offers; every field has the RFC default unless configured. */
export interface OperationalOffer {
  /** Preference order, e.g. ['CRC32C', 'None'] (digest if the target agrees) or ['None']. */
  headerDigest: DigestName[];
  dataDigest: DigestName[];
  /** What the target may send us in one PDU (bytes, 512..2^24-1). */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  immediateData: boolean;
  initialR2T: boolean;
  maxOutstandingR2T: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
}

/** The parameters in force in the full-feature phase. */
export interface SessionParams {
  headerDigest: boolean;
  dataDigest: boolean;
  /** Largest data segment the target accepts from us (its declared MaxRecvDataSegmentLength). */
  maxSendDataSegmentLength: number;
  /** Largest data segment we accept (our declared MaxRecvDataSegmentLength). */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  immediateData: boolean;
  initialR2T: boolean;
  maxOutstandingR2T: number;
  errorRecoveryLevel: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxConnections: number;
  dataPduInOrder: boolean;
  dataSequenceInOrder: boolean;
  targetPortalGroupTag: number | null;
  targetAlias: string | null;
}

export const RFC_DEFAULTS: SessionParams = {
  headerDigest: false,
  dataDigest: false,
  maxSendDataSegmentLength: 8192,
  maxRecvDataSegmentLength: 8192,
  maxBurstLength: 262144,
  firstBurstLength: 65536,
  immediateData: true,
  initialR2T: true,
  maxOutstandingR2T: 1,
  errorRecoveryLevel: 0,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  maxConnections: 1,
  dataPduInOrder: true,
  dataSequenceInOrder: true,
  targetPortalGroupTag: null,
  targetAlias: null,
};

export const DEFAULT_OFFER: OperationalOffer = {
  headerDigest: ['None', 'CRC32C'],
  dataDigest: ['None', 'CRC32C'],
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  immediateData: true,
  initialR2T: false,
  maxOutstandingR2T: 1,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
};

const MIN_SEGMENT = 512;
const MAX_SEGMENT = 0xffffff;

function protocolError(reason: string, message: string, details: Record<string, unknown> = {}): EsxError {
  return new EsxError('PROTOCOL_ERROR', message, { reason, ...details });
}

/** Check an offer given by a caller; throws INVALID_ARGUMENT. */
export function validateOffer(o: OperationalOffer): void {
  const bad = (what: string): never => {
    throw new EsxError('INVALID_ARGUMENT', `invalid iSCSI offer: ${what}`);
  };
  for (const [name, list] of [['headerDigest', o.headerDigest], ['dataDigest', o.dataDigest]] as const) {
    if (list.length === 0 || list.length > 2 || list.some((d) => d !== 'CRC32C' && d !== 'None') || new Set(list).size !== list.length) bad(`${name} must list CRC32C and/or None`);
  }
  for (const [name, v] of [['maxRecvDataSegmentLength', o.maxRecvDataSegmentLength], ['maxBurstLength', o.maxBurstLength], ['firstBurstLength', o.firstBurstLength]] as const) {
    if (!Number.isInteger(v) || v < MIN_SEGMENT || v > MAX_SEGMENT) bad(`${name} ${v} is not in ${MIN_SEGMENT}..${MAX_SEGMENT}`);
  }
  if (o.firstBurstLength > o.maxBurstLength) bad(`firstBurstLength ${o.firstBurstLength} exceeds maxBurstLength ${o.maxBurstLength}`);
  if (!Number.isInteger(o.maxOutstandingR2T) || o.maxOutstandingR2T < 1 || o.maxOutstandingR2T > 65535) bad('maxOutstandingR2T must be 1..65535');
  for (const [name, v] of [['defaultTime2Wait', o.defaultTime2Wait], ['defaultTime2Retain', o.defaultTime2Retain]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 3600) bad(`${name} must be 0..3600`);
  }
}

const yesNo = (b: boolean): string => (b ? 'Yes' : 'No');

/** The operational keys of the first operational-stage Login Request. */
export function offerKeys(o: OperationalOffer, sessionType: 'Normal' | 'Discovery'): TextPairs {
  const keys: TextPairs = [
    ['HeaderDigest', o.headerDigest.join(',')],
    ['DataDigest', o.dataDigest.join(',')],
    ['MaxRecvDataSegmentLength', String(o.maxRecvDataSegmentLength)],
  ];
  if (sessionType === 'Discovery') return keys;
  keys.push(
    ['MaxConnections', '1'],
    ['InitialR2T', yesNo(o.initialR2T)],
    ['ImmediateData', yesNo(o.immediateData)],
    ['MaxBurstLength', String(o.maxBurstLength)],
    ['FirstBurstLength', String(o.firstBurstLength)],
    ['DefaultTime2Wait', String(o.defaultTime2Wait)],
    ['DefaultTime2Retain', String(o.defaultTime2Retain)],
    ['MaxOutstandingR2T', String(o.maxOutstandingR2T)],
    ['DataPDUInOrder', 'Yes'],
    ['DataSequenceInOrder', 'Yes'],
    ['ErrorRecoveryLevel', '0'],
  );
  return keys;
}

/** Keys we offered and expect the target to answer (not declarative ones). */
const NEGOTIATED_KEYS = new Set(['HeaderDigest', 'DataDigest', 'MaxConnections', 'InitialR2T', 'ImmediateData', 'MaxBurstLength', 'FirstBurstLength', 'DefaultTime2Wait', 'DefaultTime2Retain', 'MaxOutstandingR2T', 'DataPDUInOrder', 'DataSequenceInOrder', 'ErrorRecoveryLevel']);
/** Declarative keys a target may send. */
const DECLARATIVE_KEYS = new Set(['MaxRecvDataSegmentLength', 'TargetAlias', 'TargetPortalGroupTag', 'TargetAddress']);

/**
 * Incremental negotiation state: fed the target's keys of every operational-stage Login
 * Response; returns what we must answer (keys the target proposed on its own initiative).
 */
export class Negotiation {
  readonly params: SessionParams;
  private readonly offer: OperationalOffer;
  private readonly offered: Set<string>;
  /** Keys the target answered (for the log and tests). */
  readonly answered = new Map<string, string>();

  constructor(offer: OperationalOffer, sessionType: 'Normal' | 'Discovery') {
    this.offer = offer;
    this.offered = new Set(offerKeys(offer, sessionType).map(([k]) => k));
    this.params = { ...RFC_DEFAULTS, maxRecvDataSegmentLength: offer.maxRecvDataSegmentLength };
  }

  /**
   * Apply the target's keys. Returns the pairs to send back for keys the target proposed that we
   * did not offer (so that the target gets an answer, RFC 7143 6.2).
   */
  apply(pairs: TextPairs): TextPairs {
    const replies: TextPairs = [];
    for (const [key, value] of pairs) {
      this.answered.set(key, value);
      if (value === 'NotUnderstood' || value === 'Irrelevant' || value === 'Reject') {
        // The default stays in force; a rejected digest list means no digest.
        continue;
      }
      if (DECLARATIVE_KEYS.has(key)) {
        this.declarative(key, value);
        continue;
      }
      if (this.offered.has(key) && NEGOTIATED_KEYS.has(key)) {
        this.answer(key, value);
        continue;
      }
      // The target proposes a key we did not offer: answer it by the same rules.
      const reply = this.respond(key, value);
      if (reply !== null) replies.push([key, reply]);
    }
    return replies;
  }

  private declarative(key: string, value: string): void {
    switch (key) {
      case 'MaxRecvDataSegmentLength':
        this.params.maxSendDataSegmentLength = numberIn(key, value, MIN_SEGMENT, MAX_SEGMENT);
        return;
      case 'TargetPortalGroupTag':
        this.params.targetPortalGroupTag = numberIn(key, value, 0, 65535);
        return;
      case 'TargetAlias':
        this.params.targetAlias = value;
        return;
      default:
        return; // TargetAddress: only meaningful with a redirection status
    }
  }

  /** The target's answer to a key we offered. */
  private answer(key: string, value: string): void {
    const o = this.offer;
    const p = this.params;
    switch (key) {
      case 'HeaderDigest':
      case 'DataDigest': {
        const list = key === 'HeaderDigest' ? o.headerDigest : o.dataDigest;
        if (value !== 'CRC32C' && value !== 'None') throw protocolError('NEGOTIATION', `target answered ${key}=${value}, not one of ${list.join(',')}`);
        if (!list.includes(value)) throw protocolError('NEGOTIATION', `target chose ${key}=${value}, which we did not offer`);
        if (key === 'HeaderDigest') p.headerDigest = value === 'CRC32C';
        else p.dataDigest = value === 'CRC32C';
        return;
      }
      case 'MaxBurstLength':
        p.maxBurstLength = minAnswer(key, value, o.maxBurstLength, MIN_SEGMENT, MAX_SEGMENT);
        return;
      case 'FirstBurstLength':
        p.firstBurstLength = minAnswer(key, value, o.firstBurstLength, MIN_SEGMENT, MAX_SEGMENT);
        return;
      case 'MaxOutstandingR2T':
        p.maxOutstandingR2T = minAnswer(key, value, o.maxOutstandingR2T, 1, 65535);
        return;
      case 'ErrorRecoveryLevel':
        p.errorRecoveryLevel = minAnswer(key, value, 0, 0, 2);
        return;
      case 'MaxConnections':
        p.maxConnections = minAnswer(key, value, 1, 1, 65535);
        return;
      case 'DefaultTime2Retain':
        p.defaultTime2Retain = minAnswer(key, value, o.defaultTime2Retain, 0, 3600);
        return;
      case 'DefaultTime2Wait': {
        const v = numberIn(key, value, 0, 3600);
        if (v < o.defaultTime2Wait) throw protocolError('NEGOTIATION', `target answered DefaultTime2Wait=${v}, below our offer ${o.defaultTime2Wait} (max function)`);
        p.defaultTime2Wait = v;
        return;
      }
      case 'ImmediateData': {
        const v = bool(key, value);
        if (v && !o.immediateData) throw protocolError('NEGOTIATION', 'target answered ImmediateData=Yes to our No (AND function)');
        p.immediateData = v;
        return;
      }
      case 'InitialR2T': {
        const v = bool(key, value);
        if (!v && o.initialR2T) throw protocolError('NEGOTIATION', 'target answered InitialR2T=No to our Yes (OR function)');
        p.initialR2T = v;
        return;
      }
      case 'DataPDUInOrder':
      case 'DataSequenceInOrder': {
        // We offered Yes; OR makes the result Yes whatever the answer.
        bool(key, value);
        return;
      }
      default:
        return;
    }
  }

  /** A key proposed by the target that we did not offer: compute and apply our answer. */
  private respond(key: string, value: string): string | null {
    const p = this.params;
    switch (key) {
      case 'HeaderDigest':
      case 'DataDigest': {
        const theirs = value.split(',');
        const ours = key === 'HeaderDigest' ? this.offer.headerDigest : this.offer.dataDigest;
        const pick = ours.find((d) => theirs.includes(d));
        if (!pick) return 'Reject';
        if (key === 'HeaderDigest') p.headerDigest = pick === 'CRC32C';
        else p.dataDigest = pick === 'CRC32C';
        return pick;
      }
      case 'ErrorRecoveryLevel':
        numberIn(key, value, 0, 2);
        p.errorRecoveryLevel = 0;
        return '0';
      case 'MaxConnections':
        numberIn(key, value, 1, 65535);
        p.maxConnections = 1;
        return '1';
      case 'OFMarker':
      case 'IFMarker':
        return 'No';
      case 'SessionType':
      case 'TargetName':
      case 'InitiatorName':
      case 'InitiatorAlias':
        return null;
      default:
        return 'NotUnderstood';
    }
  }

  /** Final consistency checks once the target moved to the full-feature phase. */
  finish(): SessionParams {
    const p = this.params;
    if (p.firstBurstLength > p.maxBurstLength) p.firstBurstLength = p.maxBurstLength;
    if (p.errorRecoveryLevel !== 0) throw protocolError('NEGOTIATION', `ErrorRecoveryLevel ${p.errorRecoveryLevel} negotiated; this initiator runs level 0`);
    return { ...p };
  }
}

function numberIn(key: string, value: string, min: number, max: number): number {
  if (!/^[0-9]{1,10}$/.test(value)) throw protocolError('NEGOTIATION', `target sent ${key}=${value.slice(0, 32)}, not a number`);
  const v = Number(value);
  if (v < min || v > max) throw protocolError('NEGOTIATION', `target sent ${key}=${v}, outside ${min}..${max}`);
  return v;
}

function minAnswer(key: string, value: string, offered: number, min: number, max: number): number {
  const v = numberIn(key, value, min, max);
  if (v > offered) throw protocolError('NEGOTIATION', `target answered ${key}=${v}, above our offer ${offered} (min function)`);
  return v;
}

function bool(key: string, value: string): boolean {
  if (value === 'Yes') return true;
  if (value === 'No') return false;
  throw protocolError('NEGOTIATION', `target sent ${key}=${value.slice(0, 32)}, not Yes or No`);
}
