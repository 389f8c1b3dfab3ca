/** Comparing cluster secrets in constant time (over fixed-length digests, so lengths leak nothing). */
import { createHash, timingSafeEqual } from 'node:crypto';

export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}
