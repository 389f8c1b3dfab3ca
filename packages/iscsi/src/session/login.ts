/**
 * The target's login state machine (RFC 7143 6.3, 11.12, 11.13): one instance per connection,
 * fed every Login Request until the connection reaches full feature phase or the login fails.
 *
 *   start --first PDU, CSG=0--> security --T=1, authenticated--> operational --T=1, NSG=3--> fullFeature
 *     |                            |                                                 ^
 *     +--first PDU, CSG=1----------)--> operational                                  |
 *                                  +--T=1, NSG=3, authenticated----------------------+
 *   any state --error--> failed   (a Login Response with the status, then the connection closes)
 *
 * - The first Login Request must carry InitiatorName, and TargetName for a normal session
 *   (MISSING_PARAMETER 0x0207); an unknown target is NOT_FOUND 0x0203; an initiator outside the
 *   target's ACL is AUTHORIZATION_FAILURE 0x0202; a target with CHAP configured requires
 *   AuthMethod=CHAP and a correct response (AUTHENTICATION_FAILURE 0x0201); Version-min above 0
 *   is UNSUPPORTED_VERSION 0x0205; anything malformed (flags, stages, ISID or TSIH changing,
 *   renegotiated keys) is INITIATOR_ERROR 0x0200.
 * - Text split across PDUs (C bit) is collected, bounded by MAX_TEXT_BYTES, and each partial PDU
 *   is answered with an empty Login Response.
 * - The target moves to the next stage only when the initiator asks (T=1) and, in the security
 *   stage, only once authentication is complete.
 * - On the transition to full feature phase, `env.establish` creates the session (or reinstates
 *   it) and returns the TSIH that the final Login Response carries.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '@esxemu/shared';
import { toEsxError } from '@esxemu/shared';
import { F, LOGIN } from '../transport/fields.js';
import { LOGIN_STATUS, OP } from '../transport/opcodes.js';
import { Pdu } from '../transport/pdu.js';
import { encodeText, MAX_TEXT_BYTES, parseText, type TextPairs } from '../transport/text.js';
import { ChapAuthenticator, type ChapSecrets } from './chap.js';
import { isIscsiName } from './keys.js';
import { initialNegotiationState, negotiate, type NegotiationState, type OperationalParams, type SessionKind, type TargetKeySettings } from './negotiation.js';
import type { TargetDirectory, TargetNode } from './target-node.js';

/** The data segment limit during login (RFC 7143 13.12: MaxRecvDataSegmentLength default). */
export const LOGIN_MAX_DATA_SEGMENT = 8192;

export interface LoginResult {
  initiatorName: string;
  initiatorAlias?: string;
  /** ISID (6 bytes) as the initiator sent it. */
  isid: Buffer;
  /** TSIH of the request: 0 for a new session (or a reinstatement). */
  requestTsih: number;
  cid: number;
  sessionType: SessionKind;
  /** The target of a normal session; null for discovery. */
  target: TargetNode | null;
  params: OperationalParams;
  /** CmdSN of the login: the first CmdSN the session expects. */
  cmdSN: number;
  /** The CHAP user that authenticated, if any. */
  authUser?: string;
}

export type EstablishOutcome = { ok: true; tsih: number } | { ok: false; status: number; reason: string };

export interface LoginEnv {
  directory: TargetDirectory;
  settings: TargetKeySettings;
  queueDepth: number;
  maxLoginPdus: number;
  log: Logger;
  /** Consume the next StatSN of the connection. */
  nextStatSN(): number;
  /** Create or reinstate the session; called once, when the login completes. */
  establish(result: LoginResult): EstablishOutcome;
  random?: (n: number) => Buffer;
}

export type LoginStep =
  | { kind: 'respond'; pdu: Pdu }
  | { kind: 'complete'; pdu: Pdu; result: LoginResult; tsih: number }
  | { kind: 'fail'; pdu: Pdu; status: number; reason: string };

type AuthMethod = 'undecided' | 'none' | 'chap';

export type LoginState =
  | { kind: 'start' }
  | { kind: 'security'; method: AuthMethod }
  | { kind: 'operational' }
  | { kind: 'fullFeature'; tsih: number }
  | { kind: 'failed'; status: number };

interface LeadingInfo {
  isid: Buffer;
  tsih: number;
  cid: number;
  cmdSN: number;
  initiatorName: string;
  initiatorAlias?: string;
  sessionType: SessionKind;
  target: TargetNode | null;
  chapSecrets: ChapSecrets | undefined;
}

class LoginFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class LoginMachine {
  private st: LoginState = { kind: 'start' };
  private readonly env: LoginEnv;
  private leading: LeadingInfo | null = null;
  private negotiation: NegotiationState = initialNegotiationState();
  private chap: ChapAuthenticator | null = null;
  private authUser: string | undefined;
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private pdus = 0;
  /** First request's header fields, to answer a failure even before parsing. */
  private lastRequest: Pdu | null = null;

  constructor(env: LoginEnv) {
    this.env = env;
  }

  get state(): LoginState {
    return this.st;
  }

  private transition(next: LoginState, why: string): void {
    this.env.log.debug({ from: this.st.kind, to: next.kind, why }, 'login state');
    this.st = next;
  }

  /** Handle one Login Request. Never throws for protocol errors: they become a 'fail' step. */
  step(pdu: Pdu): LoginStep {
    this.lastRequest = pdu;
    try {
      return this.handle(pdu);
    } catch (err) {
      const status = err instanceof LoginFailure ? err.status : LOGIN_STATUS.TARGET_ERROR;
      const reason = err instanceof LoginFailure ? err.message : `internal error: ${toEsxError(err).message}`;
      if (!(err instanceof LoginFailure)) this.env.log.error({ err: toEsxError(err).message }, 'login failed on an internal error');
      this.transition({ kind: 'failed', status }, reason);
      return { kind: 'fail', pdu: this.response(pdu, { status, transit: false, csg: 0, nsg: 0, text: [] }), status, reason };
    }
  }

  /** A failure not caused by a PDU (e.g. the login timed out): the response to send, if any. */
  failNow(status: number, reason: string): Pdu | null {
    this.transition({ kind: 'failed', status }, reason);
    return this.lastRequest ? this.response(this.lastRequest, { status, transit: false, csg: 0, nsg: 0, text: [] }) : null;
  }

  private handle(pdu: Pdu): LoginStep {
    if (this.st.kind === 'failed' || this.st.kind === 'fullFeature') throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `Login Request in state ${this.st.kind}`);
    if (pdu.opcode !== OP.LOGIN_REQUEST) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `${pdu.opcodeName} during login`);
    if (++this.pdus > this.env.maxLoginPdus) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `more than ${this.env.maxLoginPdus} Login Requests`);

    const flags = pdu.flags;
    const transit = (flags & LOGIN.FLAG_TRANSIT) !== 0;
    const cont = (flags & LOGIN.FLAG_CONTINUE) !== 0;
    const csg = (flags & LOGIN.CSG_MASK) >> LOGIN.CSG_SHIFT;
    const nsg = flags & LOGIN.NSG_MASK;
    const isid = Buffer.from(pdu.bhs.subarray(LOGIN.ISID, LOGIN.ISID + LOGIN.ISID_BYTES));
    const tsih = pdu.u16(LOGIN.TSIH);
    const cid = pdu.u16(LOGIN.CID);

    if (this.st.kind === 'start' && this.partialBytes === 0) {
      const versionMin = pdu.u8(LOGIN.VERSION_MIN);
      if (versionMin > 0) throw new LoginFailure(LOGIN_STATUS.UNSUPPORTED_VERSION, `Version-min ${versionMin} is not supported (only 0)`);
    }
    if (this.leading && (!this.leading.isid.equals(isid) || this.leading.tsih !== tsih || this.leading.cid !== cid)) {
      throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, 'ISID, TSIH or CID changed during the login');
    }
    if (cont && transit) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, 'C and T bits both set');
    if (csg !== LOGIN.STAGE_SECURITY && csg !== LOGIN.STAGE_OPERATIONAL) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `invalid CSG ${csg}`);
    if (transit && !((nsg === LOGIN.STAGE_OPERATIONAL || nsg === LOGIN.STAGE_FULL_FEATURE) && nsg > csg)) {
      throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `invalid transition from stage ${csg} to ${nsg}`);
    }
    const current = this.st.kind === 'security' ? LOGIN.STAGE_SECURITY : this.st.kind === 'operational' ? LOGIN.STAGE_OPERATIONAL : csg;
    if (csg !== current) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `CSG ${csg} does not match the current stage ${current}`);

    // Continued text: collect, answer with an empty response, parse once complete.
    this.partialBytes += pdu.data.length;
    if (this.partialBytes > MAX_TEXT_BYTES) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `login text longer than ${MAX_TEXT_BYTES} bytes`);
    this.partial.push(pdu.data);
    if (cont) return { kind: 'respond', pdu: this.response(pdu, { status: 0, transit: false, csg, nsg: 0, text: [] }) };
    const data = Buffer.concat(this.partial);
    this.partial = [];
    this.partialBytes = 0;

    let pairs: TextPairs;
    try {
      pairs = parseText(data);
    } catch (err) {
      throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `malformed login text: ${toEsxError(err).message}`);
    }

    this.env.log.debug({ csg, nsg, transit, keys: pairs.map(([k, v]) => `${k}=${k === 'CHAP_R' || k === 'CHAP_C' ? '...' : v}`) }, 'Login Request');
    const extra: TextPairs = [];
    if (this.st.kind === 'start') {
      this.leading = this.identify(pairs, isid, tsih, cid, pdu.u32(F.CMDSN));
      if (this.leading.target) {
        extra.push(['TargetPortalGroupTag', String(this.leading.target.tpgt)]);
        if (this.leading.target.alias) extra.push(['TargetAlias', this.leading.target.alias]);
      }
      if (csg === LOGIN.STAGE_SECURITY) this.transition({ kind: 'security', method: 'undecided' }, 'first Login Request in the security stage');
      else {
        if (this.leading.chapSecrets) throw new LoginFailure(LOGIN_STATUS.AUTHENTICATION_FAILURE, 'this target requires CHAP but the initiator skipped the security stage');
        this.transition({ kind: 'operational' }, 'first Login Request in the operational stage (no authentication)');
      }
    }
    const leading = this.leading!;

    const outcome = negotiate({
      offered: pairs,
      phase: this.st.kind === 'security' ? 'security' : 'operational',
      sessionType: leading.sessionType,
      settings: this.env.settings,
      state: this.negotiation,
    });
    if (!outcome.ok) throw new LoginFailure(outcome.status, outcome.reason);
    this.negotiation = outcome.state;
    const alias = outcome.state.declared.get('InitiatorAlias');
    if (alias !== undefined) leading.initiatorAlias = alias;

    const text: TextPairs = [...extra, ...outcome.response];
    let ready = true;
    if (this.st.kind === 'security') ready = this.authenticate(outcome.auth, text, transit, leading);
    else if (outcome.auth.some(([k]) => k !== 'AuthMethod')) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, 'CHAP keys outside the security stage');

    if (!transit || !ready) return { kind: 'respond', pdu: this.response(pdu, { status: 0, transit: false, csg, nsg: 0, text }) };

    if (nsg === LOGIN.STAGE_OPERATIONAL) {
      this.transition({ kind: 'operational' }, 'security negotiation complete');
      return { kind: 'respond', pdu: this.response(pdu, { status: 0, transit: true, csg, nsg, text }) };
    }
    // nsg === full feature
    const result: LoginResult = {
      initiatorName: leading.initiatorName,
      ...(leading.initiatorAlias !== undefined ? { initiatorAlias: leading.initiatorAlias } : {}),
      isid: leading.isid,
      requestTsih: leading.tsih,
      cid: leading.cid,
      sessionType: leading.sessionType,
      target: leading.target,
      params: this.negotiation.params,
      cmdSN: leading.cmdSN,
      ...(this.authUser !== undefined ? { authUser: this.authUser } : {}),
    };
    const est = this.env.establish(result);
    if (!est.ok) throw new LoginFailure(est.status, est.reason);
    this.transition({ kind: 'fullFeature', tsih: est.tsih }, `login complete (TSIH ${est.tsih})`);
    return { kind: 'complete', pdu: this.response(pdu, { status: 0, transit: true, csg, nsg, text, tsih: est.tsih }), result, tsih: est.tsih };
  }

  /** The checks on the first complete Login Request: who is logging in, to what. */
  private identify(pairs: TextPairs, isid: Buffer, tsih: number, cid: number, cmdSN: number): LeadingInfo {
    const get = (k: string): string | undefined => pairs.find(([key]) => key === k)?.[1];
    const initiatorName = get('InitiatorName');
    if (initiatorName === undefined) throw new LoginFailure(LOGIN_STATUS.MISSING_PARAMETER, 'the first Login Request has no InitiatorName');
    if (!isIscsiName(initiatorName)) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, `'${initiatorName.slice(0, 64)}' is not an iSCSI name (iqn., eui. or naa.)`);
    const type = get('SessionType') ?? 'Normal';
    if (type !== 'Normal' && type !== 'Discovery') throw new LoginFailure(LOGIN_STATUS.SESSION_TYPE_NOT_SUPPORTED, `SessionType ${type.slice(0, 32)} is not supported`);
    if (type === 'Discovery') {
      return { isid, tsih, cid, cmdSN, initiatorName, sessionType: 'Discovery', target: null, chapSecrets: this.env.directory.discoveryChap };
    }
    const targetName = get('TargetName');
    if (targetName === undefined) throw new LoginFailure(LOGIN_STATUS.MISSING_PARAMETER, 'a normal session needs TargetName');
    const target = this.env.directory.find(targetName);
    if (!target) throw new LoginFailure(LOGIN_STATUS.NOT_FOUND, `no target named ${targetName.slice(0, 224)}`);
    if (!target.allows(initiatorName)) throw new LoginFailure(LOGIN_STATUS.AUTHORIZATION_FAILURE, `initiator ${initiatorName} is not in the ACL of ${target.name}`);
    return { isid, tsih, cid, cmdSN, initiatorName, sessionType: 'Normal', target, chapSecrets: target.chap };
  }

  /**
   * Security stage: select the AuthMethod and run CHAP. Appends answers to `text`; returns
   * whether the stage may end now.
   */
  private authenticate(auth: TextPairs, text: TextPairs, transit: boolean, leading: LeadingInfo): boolean {
    if (this.st.kind !== 'security') return true;
    const required = leading.chapSecrets !== undefined;
    const offer = auth.find(([k]) => k === 'AuthMethod');
    const chapKeys = new Map(auth.filter(([k]) => k.startsWith('CHAP_')));
    let method = this.st.method;
    if (offer) {
      if (method !== 'undecided') throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, 'AuthMethod offered twice');
      const offered = offer[1].split(',');
      if (required) {
        if (!offered.includes('CHAP')) throw new LoginFailure(LOGIN_STATUS.AUTHENTICATION_FAILURE, `this target requires CHAP; the initiator offered ${offer[1].slice(0, 64)}`);
        method = 'chap';
        this.chap = new ChapAuthenticator(leading.chapSecrets!, this.env.random ?? randomBytes);
      } else if (offered.includes('None')) {
        method = 'none';
      } else {
        throw new LoginFailure(LOGIN_STATUS.AUTHENTICATION_FAILURE, `no CHAP secret is configured and the initiator does not accept AuthMethod=None (offered ${offer[1].slice(0, 64)})`);
      }
      text.push(['AuthMethod', method === 'chap' ? 'CHAP' : 'None']);
      this.transition({ kind: 'security', method }, `AuthMethod=${method === 'chap' ? 'CHAP' : 'None'}`);
    }
    if (method === 'chap') {
      const step = this.chap!.step(chapKeys);
      if (!step.ok) throw new LoginFailure(LOGIN_STATUS.AUTHENTICATION_FAILURE, `CHAP: ${step.reason}`);
      text.push(...step.response);
      if (step.done) {
        const st = this.chap!.state;
        if (st.phase === 'done') this.authUser = st.user;
        return true;
      }
      return false;
    }
    if (chapKeys.size > 0) throw new LoginFailure(LOGIN_STATUS.INITIATOR_ERROR, 'CHAP keys without AuthMethod=CHAP');
    if (method === 'undecided' && transit) {
      if (required) throw new LoginFailure(LOGIN_STATUS.AUTHENTICATION_FAILURE, 'this target requires CHAP but the initiator did not negotiate AuthMethod');
      this.transition({ kind: 'security', method: 'none' }, 'no AuthMethod offered: none');
    }
    return true;
  }

  private response(req: Pdu, o: { status: number; transit: boolean; csg: number; nsg: number; text: TextPairs; tsih?: number }): Pdu {
    const rsp = Pdu.create(OP.LOGIN_RESPONSE);
    let flags = (o.csg << LOGIN.CSG_SHIFT) & LOGIN.CSG_MASK;
    if (o.transit) flags |= LOGIN.FLAG_TRANSIT | (o.nsg & LOGIN.NSG_MASK);
    rsp.flags = flags;
    rsp.setU8(LOGIN.VERSION_MAX, 0);
    rsp.setU8(LOGIN.VERSION_ACTIVE, 0);
    req.bhs.copy(rsp.bhs, LOGIN.ISID, LOGIN.ISID, LOGIN.ISID + LOGIN.ISID_BYTES);
    rsp.setU16(LOGIN.TSIH, o.tsih ?? req.u16(LOGIN.TSIH));
    rsp.itt = req.itt;
    const cmdSN = this.leading?.cmdSN ?? req.u32(F.CMDSN);
    rsp.setU32(F.STATSN, this.env.nextStatSN());
    rsp.setU32(F.EXPCMDSN, cmdSN);
    rsp.setU32(F.MAXCMDSN, (cmdSN + Math.max(1, this.env.queueDepth) - 1) >>> 0);
    rsp.setU8(LOGIN.STATUS_CLASS, (o.status >> 8) & 0xff);
    rsp.setU8(LOGIN.STATUS_DETAIL, o.status & 0xff);
    if (o.status === 0 && o.text.length) {
      const data = encodeText(o.text);
      if (data.length > LOGIN_MAX_DATA_SEGMENT) throw new Error(`login response text of ${data.length} bytes exceeds ${LOGIN_MAX_DATA_SEGMENT}`);
      rsp.data = data;
    }
    return rsp;
  }
}
