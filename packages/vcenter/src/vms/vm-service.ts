/**
 * Creating, registering and deleting VMs: validation (zod schema of the API, unique names, a
 * free IP in the VM network), a uuid and a seed, the VM's files on the datastore, then one
 * commit through the registry with its event.
 *
 * Files: vcenter has no datastore of its own; like vSphere it asks a host that has it mounted
 * (the VM's host when one is given) to write the folder, .vmx and disk (vm.createFiles), to read
 * a .vmx when a VM is registered from its path, and to remove the files at delete. The inventory
 * changes only once the host answered: a failure leaves the inventory as it was. A VM without a
 * disk may be created while no host has the datastore (it then has no files: vmxPath null).
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { VmConfig, VmInfo } from '@esxemu/shared';
import { EsxError, createVmRequestSchema, registerVmRequestSchema, summarizeZodError } from '@esxemu/shared';
import type { HostServer } from '../hostlink/host-server.js';
import type { HostRecord } from '../inventory/records.js';
import type { LiveStats } from '../inventory/live-stats.js';
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
    private readonly hosts: HostServer,
    private readonly stats: LiveStats,
  ) {}

  /**
   * Names and IPs of VMs being created or registered: held while a host writes or reads their
   * files, so two concurrent requests cannot both take the same name or address.
   */
  private readonly pendingNames = new Set<string>();
  private readonly pendingIps = new Set<string>();

  private ipOwner(addr: string): string | null {
    if (this.pendingIps.has(addr)) return 'a VM being created';
    return this.registry.store.vms().find((v) => v.config.ip === addr)?.config.name ?? null;
  }

  /** Run `fn` with the name and IP held; NAME_IN_USE when another request holds them. */
  private async holding<T>(name: string, ip: string, fn: () => Promise<T>): Promise<T> {
    if (this.pendingNames.has(name)) throw new EsxError('NAME_IN_USE', `a VM named ${name} is being created`);
    if (this.pendingIps.has(ip)) throw new EsxError('NAME_IN_USE', `IP ${ip} is being given to another VM`);
    this.pendingNames.add(name);
    this.pendingIps.add(ip);
    try {
      return await fn();
    } finally {
      this.pendingNames.delete(name);
      this.pendingIps.delete(ip);
    }
  }

  /** A connected host with the datastore mounted: `preferred` if it has it, else the first. */
  private datastoreHost(preferred: HostRecord | null): HostRecord | null {
    const mounted = (h: HostRecord): boolean => h.connectionState === 'connected' && this.stats.host(h.id)?.datastore?.state === 'mounted';
    if (preferred && mounted(preferred)) return preferred;
    return this.registry.store.hosts().find(mounted) ?? null;
  }

  async create(body: unknown): Promise<VmInfo> {
    const parsed = createVmRequestSchema.safeParse(body ?? {});
    if (!parsed.success) throw new EsxError('INVALID_ARGUMENT', `invalid VM: ${summarizeZodError(parsed.error)}`);
    const req = parsed.data;
    if (req.workload.kind === 'memstress' && req.workload.workingSetMiB > req.memoryMiB) {
      throw new EsxError('INVALID_ARGUMENT', `invalid VM: the memstress working set (${req.workload.workingSetMiB} MiB) exceeds the VM memory (${req.memoryMiB} MiB)`);
    }
    const store = this.registry.store;
    if (store.vmByName(req.name) || this.pendingNames.has(req.name)) throw new EsxError('NAME_IN_USE', `a VM named ${req.name} already exists`);
    const host = req.host === undefined ? null : this.view.hostRecord(req.host);
    let ip: string;
    if (req.ip !== undefined) {
      this.pool.checkExplicit(req.ip, (addr) => this.ipOwner(addr));
      ip = req.ip;
    } else {
      ip = this.pool.allocate(new Set([...store.vmIps(), ...this.pendingIps]));
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
    const dsHost = this.datastoreHost(host);
    if (!dsHost && config.diskMiB !== undefined) throw new EsxError('INVALID_STATE', `VM ${config.name} has a disk and no connected host has the datastore mounted to keep it`);
    return this.holding(config.name, ip, async () => {
      const vmxPath = dsHost ? (await this.hosts.request(dsHost.id, 'vm.createFiles', { config })).vmxPath : null;
      try {
        this.registry.commit(
          [{ kind: 'vmCreated', vm: { config, hostId: host?.id ?? null, powerState: 'poweredOff', createdAt: Date.now(), vmxPath } }],
          [{ type: 'VmCreated', message: `VM ${config.name} created (${config.memoryMiB} MiB, ${config.vcpus} vCPU, ${config.workload.kind}, IP ${ip}${vmxPath ? `, files in ${vmxPath}` : ', no datastore: no files'})`, vm: config.name, host: host?.name ?? null }],
        );
      } catch (err) {
        // Nothing in the inventory: the files written for it go too (best effort).
        if (dsHost && vmxPath) await this.hosts.request(dsHost.id, 'vm.deleteFiles', { name: config.name }).catch(() => undefined);
        throw err;
      }
      return this.view.vm(config.id);
    });
  }

  /** Add a VM to the inventory from its .vmx on the datastore, read by a host that has it. */
  async register(body: unknown): Promise<VmInfo> {
    const parsed = registerVmRequestSchema.safeParse(body ?? {});
    if (!parsed.success) throw new EsxError('INVALID_ARGUMENT', `invalid registration: ${summarizeZodError(parsed.error)}`);
    const host = parsed.data.host === undefined ? null : this.view.hostRecord(parsed.data.host);
    const dsHost = this.datastoreHost(host);
    if (!dsHost) throw new EsxError('INVALID_STATE', 'no connected host has the datastore mounted to read the .vmx');
    const { config } = await this.hosts.request(dsHost.id, 'vm.readVmx', { path: parsed.data.path });
    const store = this.registry.store;
    if (store.vmByName(config.name) || this.pendingNames.has(config.name)) throw new EsxError('NAME_IN_USE', `a VM named ${config.name} is already in the inventory`);
    if (store.vms().some((v) => v.config.id === config.id)) throw new EsxError('NAME_IN_USE', `a VM with id ${config.id} is already in the inventory`);
    this.pool.checkExplicit(config.ip, (addr) => this.ipOwner(addr));
    const vmxPath = parsed.data.path.startsWith('[') ? parsed.data.path : `[${this.stats.host(dsHost.id)?.datastore?.name ?? 'datastore1'}] ${parsed.data.path}`;
    this.registry.commit(
      [{ kind: 'vmCreated', vm: { config, hostId: host?.id ?? null, powerState: 'poweredOff', createdAt: Date.now(), vmxPath } }],
      [{ type: 'VmRegistered', message: `VM ${config.name} registered from ${vmxPath}`, vm: config.name, host: host?.name ?? null }],
    );
    return this.view.vm(config.id);
  }

  /** Remove a powered-off VM, and its files first (a failure there changes nothing). */
  async delete(nameOrId: string): Promise<void> {
    const vm = this.view.vmRecord(nameOrId);
    const name = vm.config.name;
    if (vm.powerState !== 'poweredOff') throw new EsxError('INVALID_STATE', `VM ${name} is ${vm.powerState}; power it off before deleting it`);
    if (this.tasks.hasActiveTask('vm', vm.config.id)) throw new EsxError('INVALID_STATE', `a task is in progress on VM ${name}; wait for it to finish`);
    if (vm.vmxPath) {
      const dsHost = this.datastoreHost(vm.hostId ? (this.registry.store.host(vm.hostId)) : null);
      if (!dsHost) throw new EsxError('INVALID_STATE', `VM ${name}'s files are in ${vm.vmxPath} and no connected host has the datastore mounted to remove them`);
      await this.hosts.request(dsHost.id, 'vm.deleteFiles', { name });
    }
    this.registry.commit([{ kind: 'vmDeleted', vmId: vm.config.id }], [{ type: 'VmDeleted', message: `VM ${name} deleted${vm.vmxPath ? ' with its files' : ''}`, vm: name }]);
  }
}
