/**
 * VMs: list, create (201), register from a .vmx (201), get, delete (powered off only, with its
 * files), and the power operations, which
 * answer 202 with the TaskInfo of the task that does the work.
 */
import type { FastifyInstance } from 'fastify';
import { API_PREFIX } from '@esxemu/shared';
import type { ApiDeps } from './deps.js';

type VmParams = { Params: { vm: string } };

export function registerVmRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const base = `${API_PREFIX}/vms`;
  app.get(base, async () => deps.view.vms());
  app.post(base, async (req, reply) => reply.code(201).send(await deps.vms.create(req.body)));
  app.post(`${base}/register`, async (req, reply) => reply.code(201).send(await deps.vms.register(req.body)));
  app.get<VmParams>(`${base}/:vm`, async (req) => deps.view.vm(req.params.vm));
  app.delete<VmParams>(`${base}/:vm`, async (req) => {
    await deps.vms.delete(req.params.vm);
    return { deleted: true };
  });
  app.post<VmParams>(`${base}/:vm/power-on`, async (req, reply) => reply.code(202).send(deps.power.powerOn(req.params.vm, req.body)));
  app.post<VmParams>(`${base}/:vm/power-off`, async (req, reply) => reply.code(202).send(deps.power.powerOff(req.params.vm)));
  app.post<VmParams>(`${base}/:vm/reset`, async (req, reply) => reply.code(202).send(deps.power.reset(req.params.vm)));
}
