/**
 * Client API authentication: `Authorization: Bearer <token>` on every /api route but
 * /api/health; the event stream also takes `?token=` (browsers cannot set headers on a
 * WebSocket). Tokens are compared in constant time.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { API_PREFIX, STREAM_PATH } from '@esxemu/shared';
import { secretsEqual } from '../hostlink/secret.js';
import { sendError } from './errors.js';
import { EsxError } from '@esxemu/shared';

const PUBLIC_PATHS = new Set([`${API_PREFIX}/health`]);

export function requestToken(req: FastifyRequest, allowQuery: boolean): string | null {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m) return m[1]!;
  }
  if (allowQuery) {
    const q = (req.query as Record<string, unknown> | undefined)?.['token'];
    if (typeof q === 'string' && q.length > 0) return q;
  }
  return null;
}

/** onRequest hook: reply 401 unless the request carries the API token. */
export function bearerAuth(token: string) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const path = req.url.split('?', 1)[0]!;
    if (path !== API_PREFIX && !path.startsWith(`${API_PREFIX}/`)) return;
    if (PUBLIC_PATHS.has(path)) return;
    const given = requestToken(req, path === STREAM_PATH);
    if (given !== null && secretsEqual(given, token)) return;
    const why = given === null ? 'missing API token' : 'wrong API token';
    req.log.debug({ path }, why);
    return sendError(reply, new EsxError('UNAUTHORIZED', `${why}: send 'Authorization: Bearer <token>' with the token from the vcenter data directory`));
  };
}
