/** Tasks: GET /api/tasks?limit=N (newest first), GET /api/tasks/:id. */
import type { FastifyInstance } from 'fastify';
import { API_PREFIX, EsxError } from '@esxemu/shared';
import type { ApiDeps } from './deps.js';
import { limitParam } from './query.js';

export function registerTaskRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get(`${API_PREFIX}/tasks`, async (req) => deps.store.tasks(limitParam(req.query)));
  app.get<{ Params: { id: string } }>(`${API_PREFIX}/tasks/:id`, async (req) => {
    const task = deps.store.task(req.params.id);
    if (!task) throw new EsxError('TASK_NOT_FOUND', `no task ${req.params.id}`);
    return task;
  });
}
