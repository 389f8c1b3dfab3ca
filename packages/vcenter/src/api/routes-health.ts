/** GET /api/health: liveness, no token. */
import type { FastifyInstance } from 'fastify';
import { API_PREFIX, ESXEMU_VERSION } from '@esxemu/shared';

export function registerHealthRoutes(app: FastifyInstance): void {
  app.get(`${API_PREFIX}/health`, async () => ({ ok: true, version: ESXEMU_VERSION }));
}
