/** Clusters and hosts: GET /api/clusters, /api/hosts, /api/hosts/:host (name or id). */
import type { FastifyInstance } from 'fastify';
import { API_PREFIX } from '@esxemu/shared';
import type { ApiDeps } from './deps.js';

export function registerInventoryRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get(`${API_PREFIX}/clusters`, async () => deps.view.clusters());
  app.get(`${API_PREFIX}/hosts`, async () => deps.view.hosts());
  app.get<{ Params: { host: string } }>(`${API_PREFIX}/hosts/:host`, async (req) => deps.view.host(req.params.host));
}
