/**
 * Login as an initiator (RFC 7143 6.3, 11.12, 11.13): the security stage (AuthMethod None or
 * CHAP, one-way or mutual) then the operational stage (our offer, the target's answers) then the
 * full-feature phase. One Login Request is outstanding at a time; the machine is a pure step:
 *
 *   start() -> request
 *   step(response) -> { send: request } | { done: result } | { redirect: address } (or throws)
 *
 *   SECURITY ──AuthMethod=None──────────────────────────────┐
 *      │ AuthMethod=CHAP                                    │
 *   CHAP_ALGORITHM (sent CHAP_A=5)                          │
 *      │ CHAP_I, CHAP_C                                     │
 *   CHAP_RESPONSE (sent CHAP_N, CHAP_R [, CHAP_I, CHAP_C])  │
 *      │ [mutual: CHAP_N, CHAP_R checked]                   │
 *   OPERATIONAL (sent our keys, T=1 NSG=3) <────────────────┘
 *      │ T=1 NSG=3            (T=0: answer the target's keys, again; bounded rounds)
 *   DONE
 *
 * A response with the C bit (text continues) is acknowledged with an empty request and its text
 * assembled, bounded by MAX_TEXT_BYTES. The driver `runLogin` feeds a connection's Login
 * Responses to the machine synchronously, so digests switch on exactly after the final response.
 */
import { EsxError, type Logger } from '@esxemu/shared';
import { encodeText, F, LOGIN, MAX_TEXT_BYTES, OP, parseText, Pdu, type TextPairs } from '../transport/index.js';
import { chapResponse, CHAP_MD5, decodeBinary, encodeBinary, newChallenge, verifyTargetResponse, type ChapCredentials, type OurChallenge } from './chap.js';
import { IscsiConnection, parsePortal, portalString, type Portal } from './connection.js';
import { loginStatusError } from './login-status.js';
import { Negotiation, offerKeys, type OperationalOffer, type SessionParams } from './params.js';

export interface LoginOptions {
  initiatorName: string;
  initiatorAlias?: string;
  /** Absent for a discovery session. */
  targetName?: string;
  sessionType: 'Normal' | 'Discovery';
  /** 6 bytes. */
  isid: Buffer;
  /** 0 for a new session (or to reinstate one with the same ISID). */
  tsih: number;
  cid: number;
  /** CmdSN of the login, which is also the first CmdSN of the full-feature phase. */
  cmdSN: number;
  chap?: ChapCredentials;
  offer: OperationalOffer;
}

export interface LoginResult {
  tsih: number;
  params: SessionParams;
  /** Next CmdSN to use. */
  cmdSN: number;
  expStatSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  authenticated: 'None' | 'CHAP' | 'CHAP-mutual';
}

export type LoginStep = { send: Pdu } | { done: LoginResult } | { redirect: string; permanent: boolean };

type LoginState =
  | { kind: 'SECURITY' }
  | { kind: 'CHAP_ALGORITHM' }
  | { kind: 'CHAP_RESPONSE'; ours: OurChallenge | null }
  | { kind: 'OPERATIONAL'; rounds: number }
  | { kind: 'DONE' };

/** Bound on operational-stage exchanges (the target may propose keys of its own). */
const MAX_OPERATIONAL_ROUNDS = 8;
/** Bound on C-bit continuations of one response. */
const MAX_CONTINUATIONS = 16;
const LOGIN_ITT = 0x4c4f4731; // 'LOG1': one task tag for the whole login

function fail(reason: string, message: string, details: Record<string, unknown> = {}): never {
  throw new EsxError('PROTOCOL_ERROR', message, { reason, ...details });
}

export class LoginMachine {
  state: LoginState = { kind: 'SECURITY' };
  private readonly o: LoginOptions;
  private readonly log: Logger;
  private readonly negotiation: Negotiation;
  private expStatSN = 0;
  private statSNKnown = false;
  private csg: number = LOGIN.STAGE_SECURITY;
  private pendingText: Buffer[] = [];
  private pendingTextBytes = 0;
  private continuations = 0;
  private authenticated: LoginResult['authenticated'] = 'None';
  private securityRounds = 0;

  constructor(o: LoginOptions, log: Logger) {
    if (o.isid.length !== LOGIN.ISID_BYTES) throw new EsxError('INVALID_ARGUMENT', 'ISID must be 6 bytes');
    if (o.sessionType === 'Normal' && !o.targetName) throw new EsxError('INVALID_ARGUMENT', 'a normal session needs a target name');
    this.o = o;
    this.log = log;
    this.negotiation = new Negotiation(o.offer, o.sessionType);
  }

  private transition(next: LoginState, why: string): void {
    this.log.debug({ from: this.state.kind, to: next.kind, why }, 'iscsi login: state');
    this.state = next;
  }

  start(): Pdu {
    const keys: TextPairs = [['InitiatorName', this.o.initiatorName]];
    if (this.o.initiatorAlias) keys.push(['InitiatorAlias', this.o.initiatorAlias]);
    keys.push(['SessionType', this.o.sessionType]);
    if (this.o.targetName) keys.push(['TargetName', this.o.targetName]);
    if (this.o.chap) {
      // With mutual CHAP we insist on CHAP: a target that would pick None proves nothing.
      keys.push(['AuthMethod', this.o.chap.mutual ? 'CHAP' : 'CHAP,None']);
      return this.request(LOGIN.STAGE_SECURITY, LOGIN.STAGE_OPERATIONAL, false, keys);
    }
    keys.push(['AuthMethod', 'None']);
    return this.request(LOGIN.STAGE_SECURITY, LOGIN.STAGE_OPERATIONAL, true, keys);
  }

  step(rsp: Pdu): LoginStep {
    if (rsp.opcode !== OP.LOGIN_RESPONSE) fail('UNEXPECTED_PDU', `target sent ${rsp.opcodeName} during login`);
    if (this.state.kind === 'DONE') fail('UNEXPECTED_PDU', 'Login Response after the login completed');
    const statusClass = rsp.u8(LOGIN.STATUS_CLASS);
    const statusDetail = rsp.u8(LOGIN.STATUS_DETAIL);
    const statSN = rsp.u32(F.STATSN);
    this.expStatSN = (statSN + 1) >>> 0;
    this.statSNKnown = true;
    if (statusClass === 1) {
      const pairs = safeParse(rsp.data);
      const address = pairs.find(([k]) => k === 'TargetAddress')?.[1];
      if (!address) fail('REDIRECT_WITHOUT_ADDRESS', 'target redirected the login without a TargetAddress');
      this.transition({ kind: 'DONE' }, `redirected to ${address}`);
      return { redirect: address, permanent: statusDetail === 2 };
    }
    // A rejection is believed before the header is checked: some targets (tgt) do not echo the
    // ISID in the Login Response that refuses the login.
    if (statusClass !== 0) throw loginStatusError(statusClass, statusDetail, { targetName: this.o.targetName ?? null, stage: this.state.kind });
    if (rsp.itt !== LOGIN_ITT) fail('BAD_ITT', `Login Response carries ITT 0x${rsp.itt.toString(16)}, not ours`);
    if (!rsp.bhs.subarray(LOGIN.ISID, LOGIN.ISID + LOGIN.ISID_BYTES).equals(this.o.isid)) fail('BAD_ISID', 'Login Response carries another ISID');
    if (rsp.u8(LOGIN.VERSION_ACTIVE) !== 0) fail('UNSUPPORTED_VERSION', `target chose version ${rsp.u8(LOGIN.VERSION_ACTIVE)}`);
    const flags = rsp.flags;
    const transit = (flags & LOGIN.FLAG_TRANSIT) !== 0;
    const cont = (flags & LOGIN.FLAG_CONTINUE) !== 0;
    const csg = (flags & LOGIN.CSG_MASK) >> LOGIN.CSG_SHIFT;
    const nsg = flags & LOGIN.NSG_MASK;
    if (csg !== this.csg) fail('BAD_STAGE', `target answered in stage ${csg}, we are in ${this.csg}`);
    if (transit && cont) fail('BAD_FLAGS', 'Login Response has both T and C bits');

    // Text continued over several responses: acknowledge with an empty request, bounded.
    this.pendingTextBytes += rsp.data.length;
    if (this.pendingTextBytes > MAX_TEXT_BYTES) fail('TEXT_TOO_LONG', `login text longer than ${MAX_TEXT_BYTES} bytes`);
    this.pendingText.push(rsp.data);
    if (cont) {
      if (++this.continuations > MAX_CONTINUATIONS) fail('TOO_MANY_CONTINUATIONS', 'target continued its login text too many times');
      return { send: this.request(this.csg, nsg, false, []) };
    }
    const pairs = parseText(Buffer.concat(this.pendingText));
    this.pendingText = [];
    this.pendingTextBytes = 0;
    this.continuations = 0;

    switch (this.state.kind) {
      case 'SECURITY':
        return this.onSecurity(pairs, transit, nsg);
      case 'CHAP_ALGORITHM':
        return this.onChapChallenge(pairs);
      case 'CHAP_RESPONSE':
        return this.onChapResult(pairs, transit, nsg, this.state.ours);
      case 'OPERATIONAL':
        return this.onOperational(rsp, pairs, transit, nsg, this.state.rounds);
    }
  }

  private onSecurity(pairs: TextPairs, transit: boolean, nsg: number): LoginStep {
    const method = value(pairs, 'AuthMethod');
    this.declaratives(pairs);
    if (method === 'CHAP') {
      if (!this.o.chap) fail('AUTH_METHOD', 'target chose CHAP, which we did not offer');
      this.transition({ kind: 'CHAP_ALGORITHM' }, 'target chose AuthMethod=CHAP');
      return { send: this.request(LOGIN.STAGE_SECURITY, LOGIN.STAGE_OPERATIONAL, false, [['CHAP_A', CHAP_MD5]]) };
    }
    if (method !== undefined && method !== 'None') throw new EsxError('UNAUTHORIZED', `target answered AuthMethod=${method}`, { reason: 'AUTH_METHOD', authMethod: method });
    if (this.o.chap?.mutual) throw new EsxError('UNAUTHORIZED', 'target declined CHAP; mutual authentication was required', { reason: 'MUTUAL_CHAP_REFUSED' });
    return this.afterSecurity(transit, nsg, 'AuthMethod=None');
  }

  private onChapChallenge(pairs: TextPairs): LoginStep {
    const chap = this.o.chap!;
    const alg = value(pairs, 'CHAP_A');
    if (alg !== CHAP_MD5) throw new EsxError('UNAUTHORIZED', `target chose CHAP_A=${alg ?? '(none)'}; only MD5 (5) is supported`, { reason: 'CHAP_ALGORITHM' });
    const idText = value(pairs, 'CHAP_I');
    const cText = value(pairs, 'CHAP_C');
    if (idText === undefined || !/^\d{1,3}$/.test(idText) || Number(idText) > 255) fail('CHAP_BAD_VALUE', `bad CHAP_I ${idText ?? '(missing)'}`);
    if (cText === undefined) fail('CHAP_BAD_VALUE', 'CHAP_C missing');
    const challenge = decodeBinary('CHAP_C', cText);
    const keys: TextPairs = [
      ['CHAP_N', chap.username],
      ['CHAP_R', encodeBinary(chapResponse(Number(idText), chap.secret, challenge))],
    ];
    let ours: OurChallenge | null = null;
    if (chap.mutual) {
      ours = newChallenge(challenge);
      keys.push(['CHAP_I', String(ours.id)], ['CHAP_C', encodeBinary(ours.challenge)]);
    }
    this.transition({ kind: 'CHAP_RESPONSE', ours }, 'answered the target challenge');
    return { send: this.request(LOGIN.STAGE_SECURITY, LOGIN.STAGE_OPERATIONAL, true, keys) };
  }

  private onChapResult(pairs: TextPairs, transit: boolean, nsg: number, ours: OurChallenge | null): LoginStep {
    this.declaratives(pairs);
    if (ours) {
      const mutual = this.o.chap!.mutual!;
      const name = value(pairs, 'CHAP_N');
      const r = value(pairs, 'CHAP_R');
      if (name !== mutual.username || r === undefined) throw new EsxError('UNAUTHORIZED', `target did not authenticate itself as ${mutual.username}`, { reason: 'MUTUAL_CHAP_FAILED', targetChapName: name ?? null });
      if (!verifyTargetResponse(ours, mutual.secret, decodeBinary('CHAP_R', r))) throw new EsxError('UNAUTHORIZED', 'target answered our CHAP challenge wrongly', { reason: 'MUTUAL_CHAP_FAILED' });
      this.authenticated = 'CHAP-mutual';
    } else {
      this.authenticated = 'CHAP';
    }
    if (!transit) fail('BAD_FLAGS', 'target did not leave the security stage after CHAP');
    return this.afterSecurity(transit, nsg, this.authenticated);
  }

  private afterSecurity(transit: boolean, nsg: number, why: string): LoginStep {
    if (!transit) {
      // The target accepted but stays in the stage: tell it again that we want to move on.
      if (++this.securityRounds > MAX_OPERATIONAL_ROUNDS) fail('BAD_STAGE', 'target does not leave the security stage');
      return { send: this.request(LOGIN.STAGE_SECURITY, LOGIN.STAGE_OPERATIONAL, true, []) };
    }
    if (nsg !== LOGIN.STAGE_OPERATIONAL) fail('BAD_STAGE', `target moved from security to stage ${nsg}, we asked for operational`);
    this.csg = LOGIN.STAGE_OPERATIONAL;
    this.transition({ kind: 'OPERATIONAL', rounds: 1 }, why);
    return { send: this.request(LOGIN.STAGE_OPERATIONAL, LOGIN.STAGE_FULL_FEATURE, true, offerKeys(this.o.offer, this.o.sessionType)) };
  }

  private onOperational(rsp: Pdu, pairs: TextPairs, transit: boolean, nsg: number, rounds: number): LoginStep {
    const replies = this.negotiation.apply(pairs);
    if (transit) {
      if (nsg !== LOGIN.STAGE_FULL_FEATURE) fail('BAD_STAGE', `target moved to stage ${nsg}, we asked for full feature`);
      if (replies.length) this.log.warn({ keys: replies.map(([k]) => k) }, 'iscsi login: target proposed keys in its final response; ignored');
      const tsih = rsp.u16(LOGIN.TSIH);
      if (this.o.sessionType === 'Normal' && tsih === 0) fail('BAD_TSIH', 'final Login Response carries TSIH 0');
      const params = this.negotiation.finish();
      this.transition({ kind: 'DONE' }, 'target moved to full feature phase');
      return {
        done: {
          tsih,
          params,
          cmdSN: this.o.cmdSN,
          expStatSN: this.expStatSN,
          expCmdSN: rsp.u32(F.EXPCMDSN),
          maxCmdSN: rsp.u32(F.MAXCMDSN),
          authenticated: this.authenticated,
        },
      };
    }
    if (rounds >= MAX_OPERATIONAL_ROUNDS) fail('NEGOTIATION', `operational negotiation did not end within ${MAX_OPERATIONAL_ROUNDS} exchanges`);
    this.state = { kind: 'OPERATIONAL', rounds: rounds + 1 };
    return { send: this.request(LOGIN.STAGE_OPERATIONAL, LOGIN.STAGE_FULL_FEATURE, true, replies) };
  }

  /** TargetPortalGroupTag / TargetAlias may come in any stage. */
  private declaratives(pairs: TextPairs): void {
    const decl = pairs.filter(([k]) => k === 'TargetPortalGroupTag' || k === 'TargetAlias');
    if (decl.length) this.negotiation.apply(decl);
  }

  private request(csg: number, nsg: number, transit: boolean, keys: TextPairs): Pdu {
    const p = Pdu.create(OP.LOGIN_REQUEST, { immediate: true });
    p.flags = (transit ? LOGIN.FLAG_TRANSIT : 0) | (csg << LOGIN.CSG_SHIFT) | (transit ? nsg : 0);
    p.setU8(LOGIN.VERSION_MAX, 0);
    p.setU8(LOGIN.VERSION_MIN, 0);
    this.o.isid.copy(p.bhs, LOGIN.ISID);
    p.setU16(LOGIN.TSIH, this.o.tsih);
    p.itt = LOGIN_ITT;
    p.setU16(LOGIN.CID, this.o.cid);
    p.setU32(F.CMDSN, this.o.cmdSN);
    p.setU32(F.EXPSTATSN, this.statSNKnown ? this.expStatSN : 0);
    p.data = encodeText(keys);
    this.csg = csg;
    return p;
  }
}

function value(pairs: TextPairs, key: string): string | undefined {
  let v: string | undefined;
  for (const [k, val] of pairs) if (k === key) v = val;
  return v;
}

function safeParse(data: Buffer): TextPairs {
  try {
    return parseText(data);
  } catch {
    return [];
  }
}

/**
 * Run a login on an open connection, bounded by `timeoutMs`. On success the connection's digests
 * and receive limit are those negotiated and it has no handler (PDUs wait in its inbox until the
 * session installs one). On failure the connection is closed and the error thrown.
 */
export function runLogin(conn: IscsiConnection, opts: LoginOptions, timeoutMs: number, log: Logger): Promise<LoginResult | { redirect: string; permanent: boolean }> {
  return new Promise((resolve, reject) => {
    let machine: LoginMachine;
    try {
      machine = new LoginMachine(opts, log);
    } catch (err) {
      reject(err);
      return;
    }
    let settled = false;
    const finish = (err: EsxError | null, result?: LoginResult | { redirect: string; permanent: boolean }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.setHandler(null);
      if (err) {
        conn.close(err);
        reject(err);
      } else resolve(result!);
    };
    const timer = setTimeout(() => finish(new EsxError('TIMEOUT', `iSCSI login did not complete within ${timeoutMs} ms`, { reason: 'LOGIN_TIMEOUT', stage: machine.state.kind })), timeoutMs);
    conn.setHandler({
      onPdu: (pdu) => {
        if (settled) return;
        let next: LoginStep;
        try {
          next = machine.step(pdu);
        } catch (err) {
          finish(err instanceof EsxError ? err : new EsxError('PROTOCOL_ERROR', String(err), { reason: 'LOGIN' }));
          return;
        }
        if ('send' in next) conn.send([next.send]);
        else if ('done' in next) {
          // Synchronously, before the next PDU is parsed (RFC 7143 13.12).
          conn.enterFullFeature({ headerDigest: next.done.params.headerDigest, dataDigest: next.done.params.dataDigest }, next.done.params.maxRecvDataSegmentLength);
          finish(null, next.done);
        } else {
          finish(null, next);
          conn.close(new EsxError('CANCELLED', 'login redirected', { reason: 'REDIRECTED' }));
        }
      },
      onClose: (reason) => finish(new EsxError(reason.code, `connection lost during login: ${reason.message}`, { ...reason.details, stage: machine.state.kind })),
    });
    conn.send([machine.start()]);
  });
}

export interface LoginTimeouts {
  connectMs: number;
  loginMs: number;
}

/** Redirections followed by one login attempt (RFC 7143 11.13.5, status class 1). */
const MAX_REDIRECTS = 3;

/**
 * Open a connection to `portal` and log in, following target redirections (bounded). Returns
 * the connection in the full-feature phase (no handler installed yet) and the login result.
 */
export async function loginToPortal(portal: Portal, opts: LoginOptions, t: LoginTimeouts, log: Logger): Promise<{ conn: IscsiConnection; result: LoginResult }> {
  let where = portal;
  for (let redirects = 0; ; redirects++) {
    const conn = await IscsiConnection.open(where, t.connectMs, log);
    const r = await runLogin(conn, opts, t.loginMs, log);
    if (!('redirect' in r)) {
      log.info({ portal: portalString(where), target: opts.targetName, tsih: r.tsih, auth: r.authenticated, params: r.params }, 'iscsi login: full feature phase');
      return { conn, result: r };
    }
    if (redirects >= MAX_REDIRECTS) throw new EsxError('PROTOCOL_ERROR', `target redirected the login more than ${MAX_REDIRECTS} times`, { reason: 'TOO_MANY_REDIRECTS' });
    where = parsePortal(r.redirect);
    log.info({ to: portalString(where), permanent: r.permanent }, 'iscsi login: redirected');
  }
}
