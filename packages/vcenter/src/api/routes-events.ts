/**
 * Events: GET /api/events?limit=N&after=ID, oldest first. With `after`, the events that follow
 * that id (to page forward or catch up after a stream drop); without it, the latest `limit`.
 */
import type { FastifyInstance } from 'fastify';
import { API_PREFIX } from '@esxemu/shared';
import type { ApiDeps } from './deps.js';
import { intParam, limitParam } from './query.js';

export function registerEventRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get(`${API_PREFIX}/events`, async (req) => {
    const limit = limitParam(req.query);
    const after = intParam(req.query, 'after', 0, Number.MAX_SAFE_INTEGER);
    return after === null ? deps.store.latestEvents(limit) : deps.store.events(after, limit);
  });
}
