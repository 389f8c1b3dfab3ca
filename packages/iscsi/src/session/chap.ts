/**
 * CHAP authentication on the target side (RFC 1994 with MD5, RFC 7143 12.1.3), one-way and
 * mutual. The exchange, inside the security negotiation stage:
 *
 *   initiator                                  target
 *   AuthMethod=CHAP,None             ->
 *                                    <-        AuthMethod=CHAP
 *   CHAP_A=5                         ->
 *                                    <-        CHAP_A=5 CHAP_I=<id> CHAP_C=<challenge>
 *   CHAP_N=<user> CHAP_R=<response>
 *   [CHAP_I=<id2> CHAP_C=<challenge2>]   ->    (mutual: the initiator challenges the target)
 *                                    <-        [CHAP_N=<target user> CHAP_R=<response2>]
 *
 * response = MD5(id || secret || challenge). Binary values are hex (0x...) or base64 (0b...)
 * (RFC 7143 6.1). A mutual challenge equal to ours is refused (reflection attack), as is a
 * challenge outside [MIN_CHALLENGE_BYTES, MAX_CHALLENGE_BYTES].
 *
 * State machine: waitAlgorithm -> waitResponse -> done | failed.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const CHAP_ALGORITHM_MD5 = 5;
/** Our challenge: as long as the MD5 output. */
export const CHALLENGE_BYTES = 16;
/** Bounds on a challenge the initiator sends for mutual CHAP. */
export const MIN_CHALLENGE_BYTES = 16;
export const MAX_CHALLENGE_BYTES = 1024;
const MD5_BYTES = 16;

export interface ChapSecrets {
  /** The name and secret the initiator must prove it knows. */
  user: string;
  secret: string;
  /** For mutual CHAP: the name and secret the target answers with. */
  mutualUser?: string;
  mutualSecret?: string;
}

export type ChapState =
  | { phase: 'waitAlgorithm' }
  | { phase: 'waitResponse'; id: number; challenge: Buffer }
  | { phase: 'done'; user: string; mutual: boolean }
  | { phase: 'failed'; reason: string };

export type ChapStep = { ok: true; response: [string, string][]; done: boolean } | { ok: false; reason: string };

/** Decode a binary value: 0x hex or 0b base64. null when malformed. */
export function decodeChapBinary(value: string): Buffer | null {
  const prefix = value.slice(0, 2).toLowerCase();
  const body = value.slice(2);
  if (prefix === '0x') {
    if (body.length === 0 || body.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(body)) return null;
    return Buffer.from(body, 'hex');
  }
  if (prefix === '0b') {
    if (body.length === 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) return null;
    return Buffer.from(body, 'base64');
  }
  return null;
}

export function encodeChapHex(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

/** MD5(id || secret || challenge). */
export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.from([id & 0xff])).update(Buffer.from(secret, 'utf8')).update(challenge).digest();
}

export class ChapAuthenticator {
  private s: ChapState = { phase: 'waitAlgorithm' };
  private readonly secrets: ChapSecrets;
  private readonly random: (n: number) => Buffer;

  constructor(secrets: ChapSecrets, random: (n: number) => Buffer = randomBytes) {
    this.secrets = secrets;
    this.random = random;
  }

  get state(): ChapState {
    return this.s;
  }

  get done(): boolean {
    return this.s.phase === 'done';
  }

  /** Feed the CHAP_* keys of one request (AuthMethod already selected). */
  step(keys: ReadonlyMap<string, string>): ChapStep {
    switch (this.s.phase) {
      case 'waitAlgorithm':
        return this.onAlgorithm(keys);
      case 'waitResponse':
        return this.onResponse(keys, this.s.id, this.s.challenge);
      case 'done':
        return keys.size === 0 ? { ok: true, response: [], done: true } : this.fail('CHAP keys after authentication completed');
      case 'failed':
        return { ok: false, reason: this.s.reason };
    }
  }

  private fail(reason: string): ChapStep {
    this.s = { phase: 'failed', reason };
    return { ok: false, reason };
  }

  private onAlgorithm(keys: ReadonlyMap<string, string>): ChapStep {
    const a = keys.get('CHAP_A');
    if (a === undefined) {
      // Nothing yet (e.g. AuthMethod was just selected in this PDU): wait for CHAP_A.
      return keys.size === 0 ? { ok: true, response: [], done: false } : this.fail(`expected CHAP_A, got ${[...keys.keys()].join(', ')}`);
    }
    for (const k of keys.keys()) if (k !== 'CHAP_A') return this.fail(`unexpected ${k} with CHAP_A`);
    const algorithms = a.split(',').map((x) => Number(x));
    if (!algorithms.includes(CHAP_ALGORITHM_MD5)) return this.fail(`no supported CHAP algorithm in CHAP_A=${a.slice(0, 64)} (only 5, MD5)`);
    const id = this.random(1)[0]!;
    const challenge = this.random(CHALLENGE_BYTES);
    this.s = { phase: 'waitResponse', id, challenge };
    return { ok: true, done: false, response: [['CHAP_A', String(CHAP_ALGORITHM_MD5)], ['CHAP_I', String(id)], ['CHAP_C', encodeChapHex(challenge)]] };
  }

  private onResponse(keys: ReadonlyMap<string, string>, id: number, challenge: Buffer): ChapStep {
    const n = keys.get('CHAP_N');
    const r = keys.get('CHAP_R');
    if (n === undefined || r === undefined) return this.fail('CHAP_N and CHAP_R are required in answer to the challenge');
    if (n !== this.secrets.user) return this.fail(`unknown CHAP user '${n.slice(0, 64)}'`);
    const got = decodeChapBinary(r);
    if (!got || got.length !== MD5_BYTES) return this.fail('CHAP_R is not a 16-byte binary value');
    const want = chapResponse(id, this.secrets.secret, challenge);
    if (!timingSafeEqual(got, want)) return this.fail(`wrong CHAP response for user '${n.slice(0, 64)}'`);

    const mi = keys.get('CHAP_I');
    const mc = keys.get('CHAP_C');
    if (mi === undefined && mc === undefined) {
      this.s = { phase: 'done', user: n, mutual: false };
      return { ok: true, done: true, response: [] };
    }
    if (mi === undefined || mc === undefined) return this.fail('mutual CHAP needs both CHAP_I and CHAP_C');
    if (this.secrets.mutualUser === undefined || this.secrets.mutualSecret === undefined) return this.fail('the initiator asked for mutual CHAP but the target has no mutual secret');
    if (!/^\d{1,3}$/.test(mi) || Number(mi) > 255) return this.fail('CHAP_I must be 0..255');
    const theirs = decodeChapBinary(mc);
    if (!theirs) return this.fail('CHAP_C is not a binary value');
    if (theirs.length < MIN_CHALLENGE_BYTES || theirs.length > MAX_CHALLENGE_BYTES) {
      return this.fail(`mutual CHAP challenge of ${theirs.length} bytes is outside ${MIN_CHALLENGE_BYTES}..${MAX_CHALLENGE_BYTES}`);
    }
    if (theirs.equals(challenge)) return this.fail('mutual CHAP challenge equals ours (reflection)');
    const answer = chapResponse(Number(mi), this.secrets.mutualSecret, theirs);
    this.s = { phase: 'done', user: n, mutual: true };
    return { ok: true, done: true, response: [['CHAP_N', this.secrets.mutualUser], ['CHAP_R', encodeChapHex(answer)]] };
  }
}
