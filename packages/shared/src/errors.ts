/**
 * Errors with a stable code. Every failure that crosses a process boundary (API, host link,
 * CLI) carries one of these codes so that a client can act on it without parsing messages.
 */
export const ERROR_CODES = {
  INVALID_ARGUMENT: 400,
  UNAUTHORIZED: 401,
  BAD_SECRET: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  HOST_NOT_FOUND: 404,
  VM_NOT_FOUND: 404,
  TASK_NOT_FOUND: 404,
  NAME_IN_USE: 409,
  INVALID_STATE: 409,
  HOST_DISCONNECTED: 409,
  INSUFFICIENT_RESOURCES: 409,
  PAYLOAD_TOO_LARGE: 413,
  PROTOCOL_ERROR: 400,
  PORT_IN_USE: 500,
  ADDRESS_UNAVAILABLE: 500,
  VCENTER_UNREACHABLE: 503,
  /** An iSCSI target portal cannot be reached (connection refused/reset, session down). */
  TARGET_UNREACHABLE: 503,
  TIMEOUT: 504,
  /** Storage (the VMFS datastore and the block devices under it). */
  NOT_FORMATTED: 409,
  FORMAT_UNSUPPORTED: 409,
  CORRUPT: 500,
  NO_SPACE: 507,
  FILE_LOCKED: 423,
  LOCK_LOST: 409,
  IO_ERROR: 500,
  CANCELLED: 499,
  VM_CRASHED: 500,
  TASK_INTERRUPTED: 500,
  NOT_IMPLEMENTED: 501,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export class EsxError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'EsxError';
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code];
  }

  toJSON(): ErrorBody {
    return this.details ? { code: this.code, message: this.message, details: this.details } : { code: this.code, message: this.message };
  }

  static fromBody(body: unknown): EsxError {
    if (body && typeof body === 'object') {
      const b = body as Record<string, unknown>;
      const code = isErrorCode(b['code']) ? b['code'] : 'INTERNAL';
      const message = typeof b['message'] === 'string' ? b['message'] : 'unknown error';
      const details = b['details'] && typeof b['details'] === 'object' ? (b['details'] as Record<string, unknown>) : undefined;
      return new EsxError(code, message, details);
    }
    return new EsxError('INTERNAL', String(body));
  }
}

/** Turn anything thrown into an EsxError, mapping the system errors a user can act on. */
export function toEsxError(err: unknown): EsxError {
  if (err instanceof EsxError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e === 'object') {
    switch (e.code) {
      case 'EADDRINUSE':
        return new EsxError('PORT_IN_USE', `address already in use: ${describeAddress(e)}`);
      case 'EADDRNOTAVAIL':
        return new EsxError('ADDRESS_UNAVAILABLE', `address not available on this machine: ${describeAddress(e)}`);
      case 'ECONNREFUSED':
        return new EsxError('VCENTER_UNREACHABLE', `connection refused: ${describeAddress(e)}`);
      case 'ETIMEDOUT':
        return new EsxError('TIMEOUT', e.message);
      default:
        break;
    }
    if (typeof e.message === 'string') return new EsxError('INTERNAL', e.message);
  }
  return new EsxError('INTERNAL', String(err));
}

function describeAddress(e: NodeJS.ErrnoException & { address?: string; port?: number }): string {
  if (e.address !== undefined) return e.port !== undefined ? `${e.address}:${e.port}` : e.address;
  return e.message;
}
