/**
 * Creating and deleting VMs: validation (zod schema of the API, unique names, a free IP in the
 * VM network), a uuid and a seed, then one commit through the registry with its event.
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { VmConfig, VmInfo } from '@esxemu/shared';
import { EsxError, createVmRequestSchema, summarizeZodError } from '@esxemu/shared';
import type { InventoryView } from '../inventory/views.js';
import type { Registry } from '../inventory/registry.js';
import type { IpPool } from '../network/ip-pool.js';
import type { TaskManager } from '../tasks/task-manager.js';

export class VmService {
  constructor(
    private readonly registry: Registry,
    private readonly view: InventoryView,
    private readonly pool: IpPool,
    private readonly tasks: TaskManager,
  ) {}

  create(body: unknown): VmInfo {
    const parsed = createVmRequestSchema.safeParse(body ?? {});
    if (!parsed.success) throw new EsxError('INVALID_ARGUMENT', `invalid VM: ${summarizeZodError(parsed.error)}`);
    const req = parsed.data;
    if (req.workload.kind === 'memstress' && req.workload.workingSetMiB > req.memoryMiB) {
      throw new EsxError('INVALID_ARGUMENT', `invalid VM: the memstress working set (${req.workload.workingSetMiB} MiB) exceeds the VM memory (${req.memoryMiB} MiB)`);
    }
    const store = this.registry.store;
    if (store.vmByName(req.name)) throw new EsxError('NAME_IN_USE', `a VM named ${req.name} already exists`);
    const host = req.host === undefined ? null : this.view.hostRecord(req.host);
    let ip: string;
    if (req.ip !== undefined) {
      this.pool.checkExplicit(req.ip, (addr) => store.vms().find((v) => v.config.ip === addr)?.config.name ?? null);
      ip = req.ip;
    } else {
      ip = this.pool.allocate(store.vmIps());
    }
    const config: VmConfig = {
      id: randomUUID(),
      name: req.name,
      memoryMiB: req.memoryMiB,
      vcpus: req.vcpus,
      workload: req.workload,
      seed: req.seed ?? randomInt(0, 0x1_0000_0000),
      ip,
      ...(req.diskMiB !== undefined ? { diskMiB: req.diskMiB } : {}),
    };
    this.registry.commit(
      [{ kind: 'vmCreated', vm: { config, hostId: host?.id ?? null, powerState: 'poweredOff', createdAt: Date.now() } }],
      [{ type: 'VmCreated', message: `VM ${config.name} created (${config.memoryMiB} MiB, ${config.vcpus} vCPU, ${config.workload.kind}, IP ${ip})`, vm: config.name, host: host?.name ?? null }],
    );
    return this.view.vm(config.id);
  }

  delete(nameOrId: string): void {
    const vm = this.view.vmRecord(nameOrId);
    const name = vm.config.name;
    if (vm.powerState !== 'poweredOff') throw new EsxError('INVALID_STATE', `VM ${name} is ${vm.powerState}; power it off before deleting it`);
    if (this.tasks.hasActiveTask('vm', vm.config.id)) throw new EsxError('INVALID_STATE', `a task is in progress on VM ${name}; wait for it to finish`);
    this.registry.commit([{ kind: 'vmDeleted', vmId: vm.config.id }], [{ type: 'VmDeleted', message: `VM ${name} deleted`, vm: name }]);
  }
}
