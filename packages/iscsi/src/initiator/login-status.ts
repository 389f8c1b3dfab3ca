/**
 * Login Response status class/detail (RFC 7143 11.13.5) -> EsxError with a stable code. The
 * class, detail and the RFC's name of the status go into `details`, so a caller can tell
 * "wrong CHAP secret" from "no such target" without parsing the message.
 */
import { EsxError, type ErrorCode } from '@esxemu/shared';
import { LOGIN_STATUS } from '../transport/index.js';

const NAMES = new Map<number, string>(Object.entries(LOGIN_STATUS).map(([k, v]) => [v, k]));

const CODES: Record<number, ErrorCode> = {
  [LOGIN_STATUS.AUTHENTICATION_FAILURE]: 'UNAUTHORIZED',
  [LOGIN_STATUS.AUTHORIZATION_FAILURE]: 'FORBIDDEN',
  [LOGIN_STATUS.NOT_FOUND]: 'NOT_FOUND',
  [LOGIN_STATUS.TARGET_REMOVED]: 'NOT_FOUND',
  [LOGIN_STATUS.SESSION_DOES_NOT_EXIST]: 'NOT_FOUND',
  [LOGIN_STATUS.UNSUPPORTED_VERSION]: 'PROTOCOL_ERROR',
  [LOGIN_STATUS.TOO_MANY_CONNECTIONS]: 'INSUFFICIENT_RESOURCES',
  [LOGIN_STATUS.MISSING_PARAMETER]: 'PROTOCOL_ERROR',
  [LOGIN_STATUS.CANT_INCLUDE_IN_SESSION]: 'PROTOCOL_ERROR',
  [LOGIN_STATUS.SESSION_TYPE_NOT_SUPPORTED]: 'NOT_IMPLEMENTED',
  [LOGIN_STATUS.INVALID_DURING_LOGIN]: 'PROTOCOL_ERROR',
  [LOGIN_STATUS.INITIATOR_ERROR]: 'PROTOCOL_ERROR',
  [LOGIN_STATUS.TARGET_ERROR]: 'INTERNAL',
  [LOGIN_STATUS.SERVICE_UNAVAILABLE]: 'INSUFFICIENT_RESOURCES',
  [LOGIN_STATUS.OUT_OF_RESOURCES]: 'INSUFFICIENT_RESOURCES',
};

export function loginStatusName(statusClass: number, statusDetail: number): string {
  return NAMES.get((statusClass << 8) | statusDetail) ?? `class 0x${statusClass.toString(16)} detail 0x${statusDetail.toString(16)}`;
}

/**
 * Whether logging in again later may succeed: target errors (class 3) are transient, and so is
 * NOT_FOUND right after a target restart (its configuration may not be loaded yet); recovery
 * retries everything within its window, connect() only the transient ones.
 */
export function loginStatusTransient(statusClass: number): boolean {
  return statusClass === 3;
}

export function loginStatusError(statusClass: number, statusDetail: number, context: Record<string, unknown>): EsxError {
  const status = loginStatusName(statusClass, statusDetail);
  const code: ErrorCode = CODES[(statusClass << 8) | statusDetail] ?? (statusClass === 3 ? 'INTERNAL' : 'PROTOCOL_ERROR');
  return new EsxError(code, `iSCSI login rejected by the target: ${status}`, { reason: 'LOGIN_REJECTED', status, statusClass, statusDetail, transient: loginStatusTransient(statusClass), ...context });
}
