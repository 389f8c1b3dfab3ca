/** Query-string parameters of the list routes, checked with clear errors. */
import { EsxError } from '@esxemu/shared';

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

export function intParam(query: unknown, name: string, min: number, max: number): number | null {
  const raw = (query as Record<string, unknown> | undefined)?.[name];
  if (raw === undefined || raw === '') return null;
  const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new EsxError('INVALID_ARGUMENT', `${name} must be an integer from ${min} to ${max}, got '${String(raw)}'`);
  }
  return n;
}

export function limitParam(query: unknown): number {
  return intParam(query, 'limit', 1, MAX_LIST_LIMIT) ?? DEFAULT_LIST_LIMIT;
}
