/**
 * NOP-Out / NOP-In (RFC 7143 11.18, 11.19): answering the initiator's pings, and the target's own
 * ping that detects a dead initiator.
 *
 * Initiator NOP-Out:
 *   ITT != reserved            -> NOP-In with the same ITT and the ping data echoed (StatSN advances)
 *   ITT reserved, TTT != res.  -> the answer to our ping
 *   ITT reserved, TTT reserved -> nothing to answer
 *
 * Keepalive: when nothing arrived for `intervalMs`, the target sends a NOP-In with a fresh Target
 * Transfer Tag (StatSN not advanced); if nothing arrives within `timeoutMs` after that, the
 * connection is declared dead. States: idle -> pinging -> idle | dead.
 */
import { F } from '../transport/fields.js';
import { OP } from '../transport/opcodes.js';
import { Pdu, RESERVED_TAG } from '../transport/pdu.js';
import { peekStatus, withStatus, type OutPdu } from './outbound.js';

/** The NOP-In answering a NOP-Out that asked for one. */
export function nopInAnswer(nopOut: Pdu, maxSegment: number): OutPdu {
  const pdu = Pdu.create(OP.NOP_IN);
  pdu.flags = 0x80;
  nopOut.bhs.copy(pdu.bhs, F.LUN, F.LUN, F.LUN + 8);
  pdu.itt = nopOut.itt;
  pdu.setU32(F.TTT, RESERVED_TAG);
  if (nopOut.data.length) pdu.data = nopOut.data.subarray(0, Math.min(nopOut.data.length, maxSegment));
  return withStatus(pdu);
}

/** The target's ping. */
export function nopInPing(ttt: number): OutPdu {
  const pdu = Pdu.create(OP.NOP_IN);
  pdu.flags = 0x80;
  pdu.itt = RESERVED_TAG;
  pdu.setU32(F.TTT, ttt);
  return peekStatus(pdu);
}

export type KeepaliveState = { kind: 'stopped' } | { kind: 'idle' } | { kind: 'pinging'; ttt: number; sentAt: number } | { kind: 'dead' };

export interface KeepaliveHooks {
  ping(ttt: number): void;
  dead(why: string): void;
  newTag(): number;
  onTransition?(from: string, to: string): void;
}

export class Keepalive {
  private st: KeepaliveState = { kind: 'stopped' };
  private lastActivity = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private readonly intervalMs: number;
  private readonly timeoutMs: number;
  private readonly hooks: KeepaliveHooks;

  constructor(intervalMs: number, timeoutMs: number, hooks: KeepaliveHooks) {
    this.intervalMs = intervalMs;
    this.timeoutMs = timeoutMs;
    this.hooks = hooks;
  }

  get state(): KeepaliveState {
    return this.st;
  }

  private go(next: KeepaliveState): void {
    this.hooks.onTransition?.(this.st.kind, next.kind);
    this.st = next;
  }

  start(): void {
    if (this.intervalMs <= 0 || this.st.kind !== 'stopped') return;
    this.lastActivity = Date.now();
    this.go({ kind: 'idle' });
    this.arm(this.intervalMs);
  }

  /** Something arrived from the initiator: it is alive. Cheap: called for every PDU. */
  activity(): void {
    this.lastActivity = Date.now();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.st.kind !== 'dead') this.go({ kind: 'stopped' });
  }

  private arm(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fire(), Math.max(1, ms));
    this.timer.unref();
  }

  private fire(): void {
    const now = Date.now();
    if (this.st.kind === 'idle') {
      const idle = now - this.lastActivity;
      if (idle < this.intervalMs) return this.arm(this.intervalMs - idle);
      const ttt = this.hooks.newTag();
      this.go({ kind: 'pinging', ttt, sentAt: now });
      this.hooks.ping(ttt);
      this.arm(this.timeoutMs);
    } else if (this.st.kind === 'pinging') {
      if (this.lastActivity >= this.st.sentAt) {
        this.go({ kind: 'idle' });
        return this.arm(this.intervalMs);
      }
      this.go({ kind: 'dead' });
      this.hooks.dead(`no answer to NOP-In ping within ${this.timeoutMs} ms`);
    }
  }
}
