/**
 * Errors on the client API: every failure is `{ error: { code, message, details? } }` with the
 * HTTP status of its code. Fastify's own errors (bad JSON, body too large, wrong content type)
 * are mapped to stable codes too; anything unexpected is INTERNAL and logged.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { EsxError } from '@esxemu/shared';

export function sendError(reply: FastifyReply, err: EsxError): FastifyReply {
  return reply.code(err.httpStatus).type('application/json').send({ error: err.toJSON() });
}

export function apiErrorHandler(err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof EsxError) {
    if (err.httpStatus >= 500) req.log.error({ err }, 'request failed');
    return sendError(reply, err);
  }
  const status = (err as FastifyError).statusCode;
  if (status === 413) return sendError(reply, new EsxError('PAYLOAD_TOO_LARGE', err.message));
  if (status !== undefined && status >= 400 && status < 500) return sendError(reply, new EsxError('INVALID_ARGUMENT', err.message));
  req.log.error({ err }, 'unexpected error in request');
  return sendError(reply, new EsxError('INTERNAL', `internal error: ${err.message}`));
}

export function notFoundHandler(req: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendError(reply, new EsxError('NOT_FOUND', `no route ${req.method} ${req.url.split('?', 1)[0]}`));
}
