/**
 * Text Request / Text Response in full feature phase (RFC 7143 11.10, 11.11), with continuation
 * both ways:
 *
 *   idle --request C=1--> collecting --request C=0--> answer
 *   answer fits in one PDU                -> Text Response F=1, TTT reserved -> idle
 *   answer larger than the initiator's MaxRecvDataSegmentLength
 *                                         -> Text Response C=1, F=0, TTT=tag -> answering
 *   answering --empty request with TTT=tag--> next part ... last part F=1 -> idle
 *
 * A request with the reserved TTT starts a new exchange (dropping any pending one). Keys go
 * through the same negotiation as at login, in the full feature phase (only ALL and FFPO keys are
 * accepted); SendTargets is answered by discovery.ts. Both directions are bounded.
 */
import { toEsxError } from '@esxemu/shared';
import { F, TEXT } from '../transport/fields.js';
import { OP, REJECT_REASON } from '../transport/opcodes.js';
import { Pdu, RESERVED_TAG } from '../transport/pdu.js';
import { encodeText, MAX_TEXT_BYTES, parseText, type TextPairs } from '../transport/text.js';
import { sendTargets, type SendTargetsContext } from './discovery.js';
import { initialNegotiationState, negotiate, type TargetKeySettings } from './negotiation.js';
import { withStatus, type OutPdu } from './outbound.js';
import type { Session } from './session.js';

/** Cap on one text answer (a SendTargets listing of many targets). */
export const MAX_TEXT_ANSWER_BYTES = 1024 * 1024;

type ExchangeState =
  | { kind: 'idle' }
  | { kind: 'collecting'; itt: number; ttt: number; parts: Buffer[]; bytes: number }
  | { kind: 'answering'; itt: number; ttt: number; rest: Buffer };

export type TextOutcome = { kind: 'respond'; out: OutPdu } | { kind: 'reject'; reason: number; why: string };

export interface TextContext {
  session: Session;
  settings: TargetKeySettings;
  sendTargets: Omit<SendTargetsContext, 'sessionType' | 'currentTarget' | 'initiatorName'>;
  newTag(): number;
}

export class TextExchange {
  private st: ExchangeState = { kind: 'idle' };

  get state(): ExchangeState['kind'] {
    return this.st.kind;
  }

  handle(req: Pdu, ctx: TextContext): TextOutcome {
    const cont = (req.flags & TEXT.FLAG_CONTINUE) !== 0;
    const final = req.final;
    if (cont && final) return { kind: 'reject', reason: REJECT_REASON.PROTOCOL_ERROR, why: 'Text Request with both F and C set' };
    const ttt = req.u32(F.TTT);
    if (ttt === RESERVED_TAG) this.st = { kind: 'idle' };
    else if (this.st.kind === 'idle' || this.st.ttt !== ttt || this.st.itt !== req.itt) {
      return { kind: 'reject', reason: REJECT_REASON.INVALID_PDU_FIELD, why: `Text Request with unknown Target Transfer Tag 0x${ttt.toString(16)}` };
    }

    if (this.st.kind === 'answering') {
      if (req.data.length) return { kind: 'reject', reason: REJECT_REASON.PROTOCOL_ERROR, why: 'keys sent while the target is still answering' };
      return { kind: 'respond', out: this.nextPart(req, ctx) };
    }

    const parts = this.st.kind === 'collecting' ? this.st.parts : [];
    const bytes = (this.st.kind === 'collecting' ? this.st.bytes : 0) + req.data.length;
    if (bytes > MAX_TEXT_BYTES) {
      this.st = { kind: 'idle' };
      return { kind: 'reject', reason: REJECT_REASON.PROTOCOL_ERROR, why: `text request longer than ${MAX_TEXT_BYTES} bytes` };
    }
    parts.push(req.data);
    if (cont) {
      const tag = this.st.kind === 'collecting' ? this.st.ttt : ctx.newTag();
      this.st = { kind: 'collecting', itt: req.itt, ttt: tag, parts, bytes };
      return { kind: 'respond', out: textResponse(req, { final: false, cont: false, ttt: tag, data: Buffer.alloc(0) }) };
    }
    this.st = { kind: 'idle' };

    let pairs: TextPairs;
    try {
      pairs = parseText(Buffer.concat(parts));
    } catch (err) {
      return { kind: 'reject', reason: REJECT_REASON.PROTOCOL_ERROR, why: `malformed text: ${toEsxError(err).message}` };
    }
    const s = ctx.session;
    const outcome = negotiate({ offered: pairs, phase: 'fullFeature', sessionType: s.kind, settings: ctx.settings, state: { ...initialNegotiationState(), params: { ...s.params } } });
    if (!outcome.ok) return { kind: 'reject', reason: REJECT_REASON.PROTOCOL_ERROR, why: outcome.reason };
    s.params.initiatorMaxRecvDataSegmentLength = outcome.state.params.initiatorMaxRecvDataSegmentLength;

    const answer: TextPairs = [];
    for (const [k, v] of outcome.response) answer.push([k, v]);
    const st = outcome.state.declared.get('SendTargets');
    if (st !== undefined) {
      const listing = sendTargets(st, { ...ctx.sendTargets, sessionType: s.kind, currentTarget: s.target, initiatorName: s.initiatorName });
      if (listing === null) answer.push(['SendTargets', 'Reject']);
      else answer.push(...listing);
    }
    const data = encodeText(answer);
    if (data.length > MAX_TEXT_ANSWER_BYTES) return { kind: 'reject', reason: REJECT_REASON.LONG_OPERATION_REJECT, why: `text answer of ${data.length} bytes exceeds ${MAX_TEXT_ANSWER_BYTES}` };
    this.st = { kind: 'answering', itt: req.itt, ttt: RESERVED_TAG, rest: data };
    return { kind: 'respond', out: this.nextPart(req, ctx) };
  }

  private nextPart(req: Pdu, ctx: TextContext): OutPdu {
    if (this.st.kind !== 'answering') throw new Error('nextPart outside answering');
    const max = Math.max(512, ctx.session.params.initiatorMaxRecvDataSegmentLength);
    const rest = this.st.rest;
    if (rest.length <= max) {
      this.st = { kind: 'idle' };
      return textResponse(req, { final: true, cont: false, ttt: RESERVED_TAG, data: rest });
    }
    const ttt = this.st.ttt === RESERVED_TAG ? ctx.newTag() : this.st.ttt;
    this.st = { kind: 'answering', itt: req.itt, ttt, rest: rest.subarray(max) };
    return textResponse(req, { final: false, cont: true, ttt, data: rest.subarray(0, max) });
  }
}

function textResponse(req: Pdu, o: { final: boolean; cont: boolean; ttt: number; data: Buffer }): OutPdu {
  const pdu = Pdu.create(OP.TEXT_RESPONSE);
  pdu.flags = (o.final ? 0x80 : 0) | (o.cont ? TEXT.FLAG_CONTINUE : 0);
  req.bhs.copy(pdu.bhs, F.LUN, F.LUN, F.LUN + 8);
  pdu.itt = req.itt;
  pdu.setU32(F.TTT, o.ttt);
  pdu.data = o.data;
  return withStatus(pdu);
}
