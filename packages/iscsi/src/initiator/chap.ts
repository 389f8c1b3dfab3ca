/**
 * CHAP for iSCSI (RFC 7143 12.1.3, RFC 1994) with MD5 (CHAP_A=5), from the initiator's side:
 *
 *   I: CHAP_A=5                         T: CHAP_A=5 CHAP_I=<id> CHAP_C=<challenge>
 *   I: CHAP_N=<user> CHAP_R=MD5(id|secret|challenge)
 *      [mutual: CHAP_I=<our id> CHAP_C=<our challenge>]
 *                                       T: [mutual: CHAP_N=<target user> CHAP_R=<its answer>]
 *
 * Binary values are hex (`0x...`) or base64 (`0b...`); we send hex, accept both.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { EsxError } from '@esxemu/shared';

export const CHAP_MD5 = '5';
/** Bytes of our challenge to the target (RFC 7143 suggests at least the hash length). */
export const CHALLENGE_BYTES = 16;
/** Bounds on decoded binary values (RFC 7143 12.1.3: up to 1024 bytes). */
const MAX_BINARY_BYTES = 1024;

export interface ChapCredentials {
  /** CHAP_N we send and the secret the target knows us by. */
  username: string;
  secret: string;
  /** Mutual CHAP: the name and secret the target must prove. */
  mutual?: { username: string; secret: string };
}

export function validateChap(c: ChapCredentials): void {
  const bad = (m: string): never => {
    throw new EsxError('INVALID_ARGUMENT', `invalid CHAP settings: ${m}`);
  };
  if (!c.username || Buffer.byteLength(c.username) > 255) bad('username must be 1..255 bytes');
  if (!c.secret || Buffer.byteLength(c.secret) > 255) bad('secret must be 1..255 bytes');
  if (c.mutual) {
    if (!c.mutual.username || !c.mutual.secret) bad('mutual username and secret are required');
    // RFC 7143 12.1.3: a secret used to authenticate an initiator must not authenticate a target.
    if (c.mutual.secret === c.secret) bad('the mutual (target) secret must differ from the initiator secret');
  }
}

/** Decode a CHAP binary value (`0x` hex or `0b` base64). Throws PROTOCOL_ERROR. */
export function decodeBinary(key: string, value: string): Buffer {
  let out: Buffer;
  if (/^0[xX][0-9a-fA-F]+$/.test(value)) {
    const hex = value.slice(2);
    out = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  } else if (/^0[bB][A-Za-z0-9+/]+={0,2}$/.test(value)) {
    out = Buffer.from(value.slice(2), 'base64');
  } else {
    throw new EsxError('PROTOCOL_ERROR', `${key} is not a hex (0x) or base64 (0b) value`, { reason: 'CHAP_BAD_VALUE' });
  }
  if (out.length === 0 || out.length > MAX_BINARY_BYTES) throw new EsxError('PROTOCOL_ERROR', `${key} of ${out.length} bytes is out of range`, { reason: 'CHAP_BAD_VALUE' });
  return out;
}

export function encodeBinary(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.from([id & 0xff])).update(Buffer.from(secret, 'utf8')).update(challenge).digest();
}

/** Our challenge to the target for mutual CHAP. */
export interface OurChallenge {
  id: number;
  challenge: Buffer;
}

export function newChallenge(avoid: Buffer): OurChallenge {
  for (;;) {
    const challenge = randomBytes(CHALLENGE_BYTES);
    // Never send back the target's own challenge (reflection attack, RFC 7143 12.1.3).
    if (!challenge.equals(avoid)) return { id: randomBytes(1)[0]!, challenge };
  }
}

/** Check the target's answer to our challenge in constant time. */
export function verifyTargetResponse(ours: OurChallenge, secret: string, response: Buffer): boolean {
  const want = chapResponse(ours.id, secret, ours.challenge);
  return response.length === want.length && timingSafeEqual(response, want);
}
