/**
 * Power operations on VMs as tasks: power on (with placement), power off, reset. Each is checked
 * twice: when asked (so an obviously wrong request gets its error at once: VM_NOT_FOUND,
 * HOST_NOT_FOUND, INVALID_STATE) and again when the task runs (an earlier task on the same VM may
 * have changed things). The host does the work; vcenter records the outcome with its event.
 */
import type { Logger, TaskInfo, VmInfo } from '@esxemu/shared';
import { EsxError, powerOnRequestSchema, summarizeZodError } from '@esxemu/shared';
import type { HostServer } from '../hostlink/host-server.js';
import type { Registry } from '../inventory/registry.js';
import type { VmRecord } from '../inventory/records.js';
import type { InventoryView } from '../inventory/views.js';
import { placePowerOn, type PlacementHost } from '../placement/power-on-placement.js';
import type { TaskContext, TaskManager } from './task-manager.js';

export class VmPowerTasks {
  constructor(
    private readonly registry: Registry,
    private readonly view: InventoryView,
    private readonly hosts: HostServer,
    private readonly tasks: TaskManager,
    private readonly logger: Logger,
  ) {}

  powerOn(nameOrId: string, body: unknown): TaskInfo {
    const parsed = powerOnRequestSchema.safeParse(body ?? {});
    if (!parsed.success) throw new EsxError('INVALID_ARGUMENT', `invalid power-on request: ${summarizeZodError(parsed.error)}`);
    const vm = this.view.vmRecord(nameOrId);
    const requestedHost = parsed.data.host === undefined ? null : this.view.hostRecord(parsed.data.host).name;
    if (vm.powerState === 'poweredOn') throw alreadyOn(vm);
    return this.tasks.submit({
      op: 'vm.powerOn',
      targetType: 'vm',
      targetId: vm.config.id,
      targetName: vm.config.name,
      description: `power on VM ${vm.config.name}`,
      run: (ctx) => this.runPowerOn(ctx, vm.config.id, requestedHost),
    });
  }

  powerOff(nameOrId: string): TaskInfo {
    const vm = this.view.vmRecord(nameOrId);
    if (vm.powerState === 'poweredOff') throw alreadyOff(vm);
    return this.tasks.submit({
      op: 'vm.powerOff',
      targetType: 'vm',
      targetId: vm.config.id,
      targetName: vm.config.name,
      description: `power off VM ${vm.config.name}`,
      run: (ctx) => this.runPowerOff(ctx, vm.config.id),
    });
  }

  reset(nameOrId: string): TaskInfo {
    const vm = this.view.vmRecord(nameOrId);
    if (vm.powerState !== 'poweredOn') throw notOn(vm, 'reset');
    return this.tasks.submit({
      op: 'vm.reset',
      targetType: 'vm',
      targetId: vm.config.id,
      targetName: vm.config.name,
      description: `reset VM ${vm.config.name}`,
      run: (ctx) => this.runReset(ctx, vm.config.id),
    });
  }

  private async runPowerOn(ctx: TaskContext, vmId: string, requestedHost: string | null): Promise<VmInfo> {
    ctx.progress(5, 'checking the VM');
    const vm = this.current(vmId);
    if (vm.powerState === 'poweredOn') throw alreadyOn(vm);
    const decision = placePowerOn(
      { vmName: vm.config.name, vmMemoryMiB: vm.config.memoryMiB, requestedHost, currentHostId: vm.hostId },
      this.placementHosts(vm.config.id),
    );
    const host = decision.host;
    ctx.progress(20, `powering on on host ${host.name} (${decision.reason})`);
    this.logger.info({ vm: vm.config.name, host: host.name, reason: decision.reason, task: ctx.taskId }, 'powering on VM');
    await this.hosts.request(host.id, 'vm.powerOn', { config: vm.config });
    return this.recordPowerState(ctx, vmId, vm.config.name, host, 'poweredOn');
  }

  private async runPowerOff(ctx: TaskContext, vmId: string): Promise<VmInfo> {
    ctx.progress(5, 'checking the VM');
    const vm = this.current(vmId);
    if (vm.powerState === 'poweredOff') throw alreadyOff(vm);
    const host = this.hostOf(vm);
    ctx.progress(20, `powering off on host ${host.name}`);
    try {
      await this.hosts.request(host.id, 'vm.powerOff', { vmId });
    } catch (err) {
      // The host does not run it: the state we want is already there.
      if (!(err instanceof EsxError && err.code === 'VM_NOT_FOUND')) throw err;
      this.logger.warn({ vm: vm.config.name, host: host.name }, 'host does not run the VM it was asked to power off; recording it powered off');
    }
    return this.recordPowerState(ctx, vmId, vm.config.name, host, 'poweredOff');
  }

  /** Record a power state the host confirmed, with its event, in one commit. */
  private recordPowerState(ctx: TaskContext, vmId: string, vmName: string, host: { id: string; name: string }, powerState: 'poweredOn' | 'poweredOff'): VmInfo {
    ctx.progress(90, 'recording the new state');
    const verb = powerState === 'poweredOn' ? 'on' : 'off';
    this.registry.commit(
      [{ kind: 'vmRuntime', vmId, hostId: host.id, powerState }],
      [{ type: powerState === 'poweredOn' ? 'VmPoweredOn' : 'VmPoweredOff', message: `VM ${vmName} powered ${verb} on host ${host.name}`, host: host.name, vm: vmName, taskId: ctx.taskId }],
    );
    return this.view.vm(vmId);
  }

  private async runReset(ctx: TaskContext, vmId: string): Promise<VmInfo> {
    ctx.progress(5, 'checking the VM');
    const vm = this.current(vmId);
    if (vm.powerState !== 'poweredOn') throw notOn(vm, 'reset');
    const host = this.hostOf(vm);
    ctx.progress(20, `resetting on host ${host.name}`);
    await this.hosts.request(host.id, 'vm.reset', { vmId });
    this.registry.event({ type: 'VmReset', message: `VM ${vm.config.name} reset on host ${host.name}`, host: host.name, vm: vm.config.name, taskId: ctx.taskId });
    return this.view.vm(vmId);
  }

  private current(vmId: string): VmRecord {
    const vm = this.registry.store.vm(vmId);
    if (!vm) throw new EsxError('VM_NOT_FOUND', `VM ${vmId} no longer exists`);
    return vm;
  }

  /** The connected host a running VM is on. */
  private hostOf(vm: VmRecord): { id: string; name: string } {
    const host = vm.hostId === null ? null : this.registry.store.host(vm.hostId);
    if (!host) throw new EsxError('INVALID_STATE', `VM ${vm.config.name} is not registered on any host`);
    if (!this.hosts.isConnected(host.id)) {
      throw new EsxError('HOST_DISCONNECTED', `host ${host.name} of VM ${vm.config.name} is not connected; its last known state (${vm.powerState}) is kept`);
    }
    return host;
  }

  private placementHosts(excludeVmId: string): PlacementHost[] {
    const used = new Map<string, number>();
    for (const v of this.registry.store.vms()) {
      if (v.powerState !== 'poweredOn' || v.hostId === null || v.config.id === excludeVmId) continue;
      used.set(v.hostId, (used.get(v.hostId) ?? 0) + v.config.memoryMiB);
    }
    return this.registry.store.hosts().map((h) => ({
      id: h.id,
      name: h.name,
      connected: this.hosts.isConnected(h.id),
      memoryMiB: h.memoryMiB,
      usedMiB: used.get(h.id) ?? 0,
    }));
  }
}

function alreadyOn(vm: VmRecord): EsxError {
  return new EsxError('INVALID_STATE', `VM ${vm.config.name} is already powered on`);
}

function alreadyOff(vm: VmRecord): EsxError {
  return new EsxError('INVALID_STATE', `VM ${vm.config.name} is already powered off`);
}

function notOn(vm: VmRecord, what: string): EsxError {
  return new EsxError('INVALID_STATE', `VM ${vm.config.name} is ${vm.powerState}; only a powered-on VM can be ${what}`);
}
