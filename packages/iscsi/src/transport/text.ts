/**
 * Text parameters (RFC 7143 6.1): `key=value` pairs, each followed by a NUL, in the data
 * segment of Login and Text PDUs. Keys are at most 63 bytes of [A-Za-z0-9.-+@_:]; a value is at
 * most 255 bytes unless the key allows more (8192 for CHAP binary values and SendTargets).
 * Bounded: at most MAX_TEXT_PAIRS pairs, MAX_TEXT_BYTES in total across continued PDUs.
 */
import { EsxError } from '@esxemu/shared';

export const MAX_KEY_BYTES = 63;
export const MAX_VALUE_BYTES = 255;
export const MAX_LONG_VALUE_BYTES = 8192;
export const MAX_TEXT_PAIRS = 256;
/** Cap on a text exchange assembled from several PDUs (C bit). */
export const MAX_TEXT_BYTES = 64 * 1024;

/** Keys whose values may be longer than 255 bytes (binary CHAP values, target lists). */
const LONG_VALUE_KEYS = new Set(['CHAP_C', 'CHAP_R', 'TargetAddress', 'SendTargets']);
const KEY_RE = /^[A-Za-z0-9.\-+@_:]+$/;

export type TextPairs = [key: string, value: string][];

/** Parse a text data segment. Throws EsxError PROTOCOL_ERROR with a reason on malformed text. */
export function parseText(data: Buffer): TextPairs {
  if (data.length > MAX_TEXT_BYTES) throw textError('TEXT_TOO_LONG', `text of ${data.length} bytes exceeds ${MAX_TEXT_BYTES}`);
  const out: TextPairs = [];
  let start = 0;
  // Trailing NUL padding is allowed (some initiators pad); every pair must end with NUL.
  let end = data.length;
  while (end > 0 && data[end - 1] === 0 && (end < 2 || data[end - 2] === 0)) end--;
  while (start < end) {
    const nul = data.indexOf(0, start);
    if (nul < 0 || nul > end) throw textError('TEXT_NOT_TERMINATED', 'a key=value pair is not terminated by a NUL');
    const pair = data.subarray(start, nul).toString('utf8');
    start = nul + 1;
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw textError('TEXT_NO_VALUE', `'${pair.slice(0, 64)}' is not key=value`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (Buffer.byteLength(key) > MAX_KEY_BYTES || !KEY_RE.test(key)) throw textError('TEXT_BAD_KEY', `bad key name '${key.slice(0, 64)}'`);
    const maxValue = LONG_VALUE_KEYS.has(key) ? MAX_LONG_VALUE_BYTES : MAX_VALUE_BYTES;
    if (Buffer.byteLength(value) > maxValue) throw textError('TEXT_VALUE_TOO_LONG', `value of ${key} is longer than ${maxValue} bytes`);
    out.push([key, value]);
    if (out.length > MAX_TEXT_PAIRS) throw textError('TEXT_TOO_MANY_KEYS', `more than ${MAX_TEXT_PAIRS} keys`);
  }
  return out;
}

export function encodeText(pairs: readonly (readonly [string, string])[]): Buffer {
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

function textError(reason: string, message: string): EsxError {
  return new EsxError('PROTOCOL_ERROR', message, { reason });
}
