/**
 * Discovery (RFC 7143 4.3, appendix C): a discovery session, `SendTargets=All` in a Text
 * Request, the target list in the Text Response (continued over several responses with a
 * Target Transfer Tag when it is long), then Logout.
 *
 *   Login (SessionType=Discovery) -> Text SendTargets=All -> Text Response(s) -> Logout
 *
 * The answer is `TargetName=` followed by its `TargetAddress=host:port,tpgt` lines.
 */
import { EsxError, type Logger } from '@esxemu/shared';
import { encodeText, F, LOGOUT_REQ, LOGOUT_RSP, MAX_TEXT_BYTES, OP, parseText, Pdu, RESERVED_TAG, TEXT, type TextPairs } from '../transport/index.js';
import type { ChapCredentials } from './chap.js';
import { parsePortal, portalString, type IscsiConnection, type Portal } from './connection.js';
import { loginToPortal, type LoginTimeouts } from './login.js';
import { DEFAULT_OFFER, type OperationalOffer } from './params.js';

export interface DiscoveredTarget {
  name: string;
  addresses: { portal: string; host: string; port: number; tpgt: number | null }[];
}

export interface DiscoverOptions {
  portal: string;
  initiatorName: string;
  isid: Buffer;
  chap?: ChapCredentials;
  offer?: OperationalOffer;
  timeouts: LoginTimeouts & { requestMs: number };
  logger: Logger;
}

const MAX_TEXT_ROUNDS = 64;

/** Turn SendTargets pairs into targets; addresses without a target name before them are errors. */
export function parseSendTargets(pairs: TextPairs, defaultPortal: Portal): DiscoveredTarget[] {
  const out: DiscoveredTarget[] = [];
  for (const [k, v] of pairs) {
    if (k === 'TargetName') out.push({ name: v, addresses: [] });
    else if (k === 'TargetAddress') {
      const t = out[out.length - 1];
      if (!t) throw new EsxError('PROTOCOL_ERROR', 'SendTargets answer has a TargetAddress before any TargetName', { reason: 'SENDTARGETS' });
      const comma = v.lastIndexOf(',');
      const tpgt = comma >= 0 && /^\d+$/.test(v.slice(comma + 1)) ? Number(v.slice(comma + 1)) : null;
      const p = parsePortal(comma >= 0 ? v.slice(0, comma) : v, defaultPortal.port);
      t.addresses.push({ portal: portalString(p), host: p.host, port: p.port, tpgt });
    }
  }
  // A target listed without an address is reachable at the portal we asked (RFC 7143 C.2).
  for (const t of out) if (t.addresses.length === 0) t.addresses.push({ portal: portalString(defaultPortal), host: defaultPortal.host, port: defaultPortal.port, tpgt: null });
  return out;
}

/** One request/response exchange at a time on a discovery connection, bounded in time. */
class DiscoveryChannel {
  private waiter: { resolve: (p: Pdu) => void; reject: (e: EsxError) => void } | null = null;
  private closed: EsxError | null = null;
  cmdSN: number;
  expStatSN: number;
  private itt = 1;

  constructor(
    private readonly conn: IscsiConnection,
    cmdSN: number,
    expStatSN: number,
    private readonly timeoutMs: number,
  ) {
    this.cmdSN = cmdSN;
    this.expStatSN = expStatSN;
    conn.setHandler({
      onPdu: (pdu) => {
        if (pdu.opcode === OP.NOP_IN && pdu.itt === RESERVED_TAG) return this.answerNop(pdu);
        const w = this.waiter;
        this.waiter = null;
        if (w) w.resolve(pdu);
      },
      onClose: (reason) => {
        this.closed = reason;
        const w = this.waiter;
        this.waiter = null;
        w?.reject(reason);
      },
    });
  }

  private answerNop(nop: Pdu): void {
    if (nop.u32(F.TTT) === RESERVED_TAG) return;
    const out = Pdu.create(OP.NOP_OUT, { immediate: true, final: true });
    out.itt = RESERVED_TAG;
    out.setU32(F.TTT, nop.u32(F.TTT));
    out.setU32(F.CMDSN, this.cmdSN);
    out.setU32(F.EXPSTATSN, this.expStatSN);
    this.conn.send([out]);
  }

  exchange(req: Pdu, advancesCmdSN: boolean): Promise<Pdu> {
    if (this.closed) return Promise.reject(this.closed);
    req.itt = this.itt++;
    req.setU32(F.CMDSN, this.cmdSN);
    req.setU32(F.EXPSTATSN, this.expStatSN);
    if (advancesCmdSN) this.cmdSN = (this.cmdSN + 1) >>> 0;
    return new Promise<Pdu>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new EsxError('TIMEOUT', `no answer to ${req.opcodeName} within ${this.timeoutMs} ms`, { reason: 'REQUEST_TIMEOUT' }));
      }, this.timeoutMs);
      this.waiter = {
        resolve: (p) => {
          clearTimeout(timer);
          if (p.itt !== req.itt) return reject(new EsxError('PROTOCOL_ERROR', `expected an answer to ITT ${req.itt}, got ${p.toString()}`, { reason: 'BAD_ITT' }));
          this.expStatSN = (p.u32(F.STATSN) + 1) >>> 0;
          resolve(p);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.conn.send([req]);
    });
  }
}

/** SendTargets on an established discovery session, following continuations (bounded). */
async function sendTargets(ch: DiscoveryChannel, what: string): Promise<TextPairs> {
  const parts: Buffer[] = [];
  let total = 0;
  let ttt = RESERVED_TAG;
  for (let round = 0; round < MAX_TEXT_ROUNDS; round++) {
    const req = Pdu.create(OP.TEXT_REQUEST, { final: true });
    req.setU32(F.TTT, ttt);
    req.data = round === 0 ? encodeText([['SendTargets', what]]) : Buffer.alloc(0);
    const rsp = await ch.exchange(req, round === 0);
    if (rsp.opcode === OP.REJECT) throw new EsxError('PROTOCOL_ERROR', 'target rejected SendTargets', { reason: 'REJECTED', rejectReason: rsp.u8(2) });
    if (rsp.opcode !== OP.TEXT_RESPONSE) throw new EsxError('PROTOCOL_ERROR', `expected a Text Response, got ${rsp.opcodeName}`, { reason: 'UNEXPECTED_PDU' });
    total += rsp.data.length;
    if (total > MAX_TEXT_BYTES) throw new EsxError('PAYLOAD_TOO_LARGE', `SendTargets answer longer than ${MAX_TEXT_BYTES} bytes`, { reason: 'TEXT_TOO_LONG' });
    parts.push(rsp.data);
    const final = rsp.final && (rsp.flags & TEXT.FLAG_CONTINUE) === 0;
    if (final) return parseText(Buffer.concat(parts));
    ttt = rsp.u32(F.TTT);
    if (ttt === RESERVED_TAG) throw new EsxError('PROTOCOL_ERROR', 'Text Response continues without a Target Transfer Tag', { reason: 'TEXT_CONTINUE' });
  }
  throw new EsxError('PROTOCOL_ERROR', `SendTargets answer did not end within ${MAX_TEXT_ROUNDS} responses`, { reason: 'TEXT_CONTINUE' });
}

async function logout(ch: DiscoveryChannel): Promise<void> {
  const req = Pdu.create(OP.LOGOUT_REQUEST, { immediate: true, final: true });
  req.flags = 0x80 | LOGOUT_REQ.CLOSE_SESSION;
  const rsp = await ch.exchange(req, false);
  if (rsp.opcode !== OP.LOGOUT_RESPONSE || rsp.u8(LOGOUT_RSP.RESPONSE) !== LOGOUT_RSP.CLOSED_SUCCESSFULLY) {
    throw new EsxError('PROTOCOL_ERROR', `logout not accepted (${rsp.toString()} response ${rsp.u8(2)})`, { reason: 'LOGOUT' });
  }
}

/** discover(portal) -> [{ name, addresses }]. */
export async function discover(o: DiscoverOptions): Promise<DiscoveredTarget[]> {
  const portal = parsePortal(o.portal);
  const log = o.logger.child({ portal: portalString(portal), session: 'discovery' });
  const { conn, result } = await loginToPortal(
    portal,
    { initiatorName: o.initiatorName, sessionType: 'Discovery', isid: o.isid, tsih: 0, cid: 0, cmdSN: 1, offer: o.offer ?? DEFAULT_OFFER, ...(o.chap ? { chap: o.chap } : {}) },
    o.timeouts,
    log,
  );
  const ch = new DiscoveryChannel(conn, result.cmdSN, result.expStatSN, o.timeouts.requestMs);
  try {
    const pairs = await sendTargets(ch, 'All');
    const targets = parseSendTargets(pairs, portal);
    log.info({ targets: targets.map((t) => t.name) }, 'iscsi discovery: SendTargets answered');
    try {
      await logout(ch);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'iscsi discovery: logout failed; closing');
    }
    return targets;
  } finally {
    conn.close();
  }
}
