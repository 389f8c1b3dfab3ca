/**
 * The VMkernel: the VMs of this host, their machine memory and CPU. It powers VMs on and off,
 * resets them, lists them, schedules their CPU (scheduler.ts, every scheduleIntervalMs) and
 * samples their figures (every sampleIntervalMs) for the stats vcenter receives.
 *
 * Refusals change nothing: a duplicate VM id is INVALID_STATE, a VM bigger than the host's
 * machine memory is INSUFFICIENT_RESOURCES, a bad config is INVALID_ARGUMENT. Memory may be
 * overcommitted: pages are backed at first touch, and a guest that touches a page when none is
 * left crashes (INSUFFICIENT_RESOURCES), as a VM with no swap would.
 */
import {
  EsxError,
  MIB,
  pagesToMiB,
  summarizeZodError,
  vmConfigSchema,
  waitFor,
  type HostStats,
  type Logger,
  type VmConfig,
  type VmRuntime,
  type VmStats,
} from '@esxemu/shared';
import { DEFAULT_NET_DEVICE_OPTIONS, type NetDeviceOptions } from '../vmm/devices/net/device.js';
import { DEFAULT_VCPU_LOOP_OPTIONS, type VcpuLoopOptions } from '../vmm/vcpu-loop.js';
import { MachineMemory } from './memory/machine-memory.js';
import { CpuScheduler } from './scheduler.js';
import { DEFAULT_VM_TIMEOUTS, Vm, type PowerOnOptions, type VmTimeouts } from './vm.js';
import type { VmkernelLog } from './vmkernel-log.js';
import { diskOnlyStorage, type AttachStorage, type DiskBackend } from './virtual-disk.js';

const TRANSIENT: ReadonlySet<string> = new Set(['poweringOn', 'poweringOff', 'resetting']);
const SETTLE_TIMEOUT_MS = 30_000;

/** VMs per host at most (each is a worker thread). */
export const MAX_VMS_PER_HOST = 128;

export interface VmkernelOptions {
  cpuCores: number;
  cpuMhz: number;
  /** The host's machine memory (created by the caller so tests can size it in pages). */
  machine: MachineMemory;
  logger: Logger;
  vmkLog?: VmkernelLog | null;
  scheduleIntervalMs?: number;
  sampleIntervalMs?: number;
  vcpu?: Partial<VcpuLoopOptions>;
  nic?: Partial<Omit<NetDeviceOptions, 'ip' | 'port'>>;
  timeouts?: Partial<VmTimeouts>;
  /** Where VMs' files and disks live (the datastore); absent: VMs with a disk cannot power on here. */
  attachStorage?: AttachStorage;
  /** Shorthand for attachStorage when disks are all there is (tests, benchmarks). */
  openDisk?: (config: VmConfig) => Promise<DiskBackend>;
}

/** Unsolicited VM events (vcenter learns of the rest from the answers to its requests). */
export interface VmEvent {
  vmId: string;
  /** crashed: the VM is gone; diskError: a disk request failed (at most one event per VM per 5 s). */
  event: 'crashed' | 'diskError';
  message: string;
}

export class Vmkernel {
  readonly machine: MachineMemory;
  readonly scheduler: CpuScheduler;
  private readonly vms = new Map<string, Vm>();
  private readonly logger: Logger;
  private readonly vmkLog: VmkernelLog | null;
  private readonly vcpu: VcpuLoopOptions;
  private readonly nic: Omit<NetDeviceOptions, 'ip' | 'port'>;
  private readonly timeouts: VmTimeouts;
  private readonly attachStorage: AttachStorage | null;
  private readonly listeners = new Set<(e: VmEvent) => void>();
  private readonly scheduleTimer: NodeJS.Timeout;
  private sampleTimer: NodeJS.Timeout | null = null;
  private closing = false;

  constructor(opts: VmkernelOptions) {
    this.machine = opts.machine;
    this.scheduler = new CpuScheduler(opts.cpuCores, opts.cpuMhz);
    this.logger = opts.logger;
    this.vmkLog = opts.vmkLog ?? null;
    this.vcpu = { ...DEFAULT_VCPU_LOOP_OPTIONS, ...opts.vcpu };
    this.nic = { ...DEFAULT_NET_DEVICE_OPTIONS, ...opts.nic };
    this.timeouts = { ...DEFAULT_VM_TIMEOUTS, ...opts.timeouts };
    this.attachStorage = opts.attachStorage ?? (opts.openDisk ? diskOnlyStorage(opts.openDisk) : null);
    this.scheduleTimer = setInterval(() => this.rebalance(), opts.scheduleIntervalMs ?? 100);
    this.scheduleTimer.unref();
    this.setSampleInterval(opts.sampleIntervalMs ?? 2000);
  }

  /** Change the stats period (vcenter tells it in welcome). */
  setSampleInterval(ms: number): void {
    if (this.sampleTimer) clearInterval(this.sampleTimer);
    this.sampleTimer = setInterval(() => this.sample(), Math.max(100, ms));
    this.sampleTimer.unref();
  }

  onVmEvent(fn: (e: VmEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get cpuCapacityMhz(): number {
    return this.scheduler.capacityMhz;
  }

  async powerOn(input: VmConfig, opts: PowerOnOptions = {}): Promise<VmRuntime> {
    const parsed = vmConfigSchema.safeParse(input);
    if (!parsed.success) throw new EsxError('INVALID_ARGUMENT', `invalid VM config: ${summarizeZodError(parsed.error)}`);
    const config = parsed.data;
    if (this.closing) throw new EsxError('INVALID_STATE', 'the host is shutting down');
    const existing = this.vms.get(config.id);
    if (existing) throw new EsxError('INVALID_STATE', `VM ${config.id} is already ${existing.state} on this host`, { vmId: config.id, state: existing.state });
    if (config.memoryMiB > this.machine.memoryMiB) {
      throw new EsxError('INSUFFICIENT_RESOURCES', `VM ${config.name} needs ${config.memoryMiB} MiB, more than the host's ${this.machine.memoryMiB} MiB of machine memory`, {
        vmMemoryMiB: config.memoryMiB,
        hostMemoryMiB: this.machine.memoryMiB,
      });
    }
    if (this.vms.size >= MAX_VMS_PER_HOST) throw new EsxError('INSUFFICIENT_RESOURCES', `the host already runs ${MAX_VMS_PER_HOST} VMs, its limit`);
    const vm = new Vm(config, {
      machine: this.machine,
      cpuMhz: this.scheduler.cpuMhz,
      logger: this.logger,
      vmkLog: this.vmkLog,
      vcpu: this.vcpu,
      nic: this.nic,
      timeouts: this.timeouts,
      ...(this.attachStorage ? { attachStorage: this.attachStorage } : {}),
      onCrash: (v, err) => this.onCrash(v, err),
      onDiskError: (v, message) => this.emit({ vmId: v.id, event: 'diskError', message: message.slice(0, 4000) }),
    });
    this.vms.set(config.id, vm);
    try {
      await vm.powerOn(opts);
    } catch (err) {
      this.vms.delete(config.id);
      throw err;
    }
    if (this.closing) {
      await vm.powerOff().catch(() => undefined);
      this.vms.delete(config.id);
      throw new EsxError('INVALID_STATE', 'the host is shutting down');
    }
    this.rebalance();
    return vm.runtime();
  }

  async powerOff(vmId: string): Promise<{ vmId: string }> {
    const vm = this.get(vmId);
    await vm.powerOff();
    this.vms.delete(vmId);
    this.rebalance();
    return { vmId };
  }

  async reset(vmId: string, opts: PowerOnOptions = {}): Promise<VmRuntime> {
    const vm = this.get(vmId);
    await vm.reset(opts);
    return vm.runtime();
  }

  /** The running VMs (powered on or resetting). */
  list(): VmRuntime[] {
    return [...this.vms.values()].filter((v) => v.running).map((v) => v.runtime());
  }

  /** A VM of this host, whatever its state; VM_NOT_FOUND if there is none with this id. */
  get(vmId: string): Vm {
    const vm = this.vms.get(vmId);
    if (!vm) throw new EsxError('VM_NOT_FOUND', `no VM ${vmId} on this host`, { vmId });
    return vm;
  }

  setDirtyLogging(vmId: string, on: boolean): void {
    this.get(vmId).pmap.setDirtyLogging(on);
  }

  private onCrash(vm: Vm, err: EsxError): void {
    if (this.vms.get(vm.id) === vm) this.vms.delete(vm.id);
    this.rebalance();
    this.emit({ vmId: vm.id, event: 'crashed', message: err.message.slice(0, 4000) });
  }

  private emit(e: VmEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (lerr) {
        this.logger.error({ err: lerr }, 'VM event listener failed');
      }
    }
  }

  private running(): Vm[] {
    return [...this.vms.values()].filter((v) => v.running);
  }

  rebalance(): void {
    this.scheduler.rebalance(this.running());
  }

  /** End a stats period for every VM. */
  sample(nowMs = Date.now()): void {
    for (const vm of this.running()) vm.sample(nowMs);
  }

  stats(nowMs = Date.now()): { host: HostStats; vms: VmStats[] } {
    const vms = this.running().map((v) => v.stats(nowMs));
    const sum = (f: (s: VmStats) => number): number => vms.reduce((a, s) => a + f(s), 0);
    return {
      host: {
        cpuCapacityMhz: this.scheduler.capacityMhz,
        cpuDemandMhz: sum((s) => s.cpuDemandMhz),
        cpuUsageMhz: sum((s) => s.cpuUsageMhz),
        memCapacityMiB: this.machine.memoryMiB,
        memConsumedMiB: pagesToMiB(this.machine.usedPages),
        memActiveMiB: sum((s) => s.memActiveMiB),
        rssMiB: process.memoryUsage.rss() / MIB,
        vmsRunning: vms.length,
      },
      vms,
    };
  }

  /** Power off every VM (bounded by each VM's own timeouts) and stop the timers. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.scheduleTimer);
    if (this.sampleTimer) clearInterval(this.sampleTimer);
    const vms = [...this.vms.values()];
    await Promise.all(
      vms.map(async (vm) => {
        try {
          // A VM in the middle of a transition is let finish it first (each has its own bound).
          await waitFor(`VM ${vm.config.name} to settle`, () => !TRANSIENT.has(vm.state), SETTLE_TIMEOUT_MS, 20).catch(() => undefined);
          if (vm.state === 'poweredOn') await vm.powerOff();
        } catch (err) {
          this.logger.warn({ vmId: vm.id, err }, 'power off at host shutdown failed');
        }
      }),
    );
    this.vms.clear();
  }
}
