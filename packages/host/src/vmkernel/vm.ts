/**
 * One VM on this host, VMkernel side: its memory (pmap over the host's machine memory), its
 * vCPU registers and counters (all shared with its VMM worker), the worker itself, and its
 * state machine:
 *
 *   poweredOff -> poweringOn -> poweredOn -> poweringOff -> poweredOff
 *                     |            |  ^
 *                     |            v  |
 *                     |         resetting
 *                     v            |
 *                 poweredOff     crashed   (worker threw, exited, or the guest faulted)
 *
 * Every transition goes through transition(), which checks it against TRANSITIONS and writes a
 * log line (host log and vmkernel.log). Whatever the path out (power off, failed power on,
 * crash), the worker is gone before the VM's machine pages are freed.
 */
import { MessageChannel } from 'node:worker_threads';
import { guestReport, REGISTER_COUNT, R_STEP_LO, Registers } from '@esxemu/guest';
import { EsxError, pagesToMiB, mibToPages, toEsxError, type Logger, type VmConfig, type VmRuntime, type VmStats } from '@esxemu/shared';
import type { NetDeviceOptions } from '../vmm/devices/net/device.js';
import type { VmmEvent, VmmInit, VmmRequestType, VmmResults } from '../vmm/messages.js';
import { VC_ENTITLEMENT_MHZ, VcpuCounters } from '../vmm/vcpu-counters.js';
import type { VcpuLoopOptions } from '../vmm/vcpu-loop.js';
import type { MachineMemory } from './memory/machine-memory.js';
import { Pmap } from './memory/pmap.js';
import type { CpuClaim, SchedulableVm } from './scheduler.js';
import type { VmkernelLog } from './vmkernel-log.js';
import { VmmChannel } from './vmm-channel.js';
import { VirtualDiskService, type AttachStorage, type VirtualDiskStats, type VmStorageLease } from './virtual-disk.js';

export type VmState = 'poweredOff' | 'poweringOn' | 'poweredOn' | 'resetting' | 'poweringOff' | 'crashed';

const TRANSITIONS: Record<VmState, readonly VmState[]> = {
  poweredOff: ['poweringOn'],
  poweringOn: ['poweredOn', 'poweredOff'],
  poweredOn: ['poweringOff', 'resetting', 'crashed'],
  resetting: ['poweredOn', 'crashed'],
  poweringOff: ['poweredOff'],
  crashed: [],
};

export interface VmTimeouts {
  /** Worker started, devices open, guest booted. */
  bootTimeoutMs: number;
  /** Any request to the VMM. */
  requestTimeoutMs: number;
  /** Worker termination. */
  terminateTimeoutMs: number;
}

export const DEFAULT_VM_TIMEOUTS: VmTimeouts = { bootTimeoutMs: 20_000, requestTimeoutMs: 5_000, terminateTimeoutMs: 15_000 };

export interface VmDeps {
  machine: MachineMemory;
  cpuMhz: number;
  logger: Logger;
  vmkLog: VmkernelLog | null;
  vcpu: VcpuLoopOptions;
  nic: Omit<NetDeviceOptions, 'ip' | 'port'>;
  timeouts: VmTimeouts;
  /**
   * Take the VM's storage at power-on (its files' locks and its disk on the datastore). Absent:
   * this host has nowhere to keep disks, and a VM with a disk cannot power on here.
   */
  attachStorage?: AttachStorage;
  /** A disk request of the VM failed (throttled: at most one call per VM per 5 s). */
  onDiskError?(vm: Vm, message: string): void;
  /** The VM crashed; its worker is gone and its pages are freed. */
  onCrash(vm: Vm, err: EsxError): void;
}

/** A VM's disk errors are reported at most this often (a full datastore fails every write). */
const DISK_ERROR_REPORT_MS = 5000;

export interface PowerOnOptions {
  /** Debug: pause the vCPU once the guest has run this many steps. */
  stopAtStep?: number | null;
  /**
   * Resume a VM whose state came from elsewhere (vMotion's destination): `load` fills the new
   * pmap with the guest's pages and returns its registers; the guest is not booted but goes on
   * from the step it had reached.
   */
  restore?: { load(pmap: Pmap): Uint32Array };
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: EsxError): void;
}

export class Vm implements SchedulableVm {
  readonly config: VmConfig;
  readonly pmap: Pmap;
  readonly regs = new Registers(new SharedArrayBuffer(REGISTER_COUNT * 4));
  readonly counters = new VcpuCounters();
  private st: VmState = 'poweredOff';
  private vmm: VmmChannel | null = null;
  private disk: VirtualDiskService | null = null;
  private storage: VmStorageLease | null = null;
  private worldId = 0;
  private startedAtMs = 0;
  private nicAddr: string | null = null;
  private boot: Deferred<{ steps: number; nicAddress: string | null }> | null = null;
  private pausedAt: number | null = null;
  private pausedWaiters: Array<(steps: number) => void> = [];
  private sampleAtMs = 0;
  private sampleCycles = 0;
  private usageMhz = 0;

  constructor(
    config: VmConfig,
    private readonly deps: VmDeps,
  ) {
    this.config = config;
    this.pmap = Pmap.create(mibToPages(config.memoryMiB), deps.machine);
  }

  get id(): string {
    return this.config.id;
  }

  get state(): VmState {
    return this.st;
  }

  /** Running as far as vcenter is concerned (powered on, possibly resetting). */
  get running(): boolean {
    return this.st === 'poweredOn' || this.st === 'resetting';
  }

  get startedAt(): number {
    return this.startedAtMs;
  }

  /** ip:port of the VM's NIC, when it has one. */
  get nicAddress(): string | null {
    return this.nicAddr;
  }

  get steps(): number {
    return this.regs.get64(R_STEP_LO);
  }

  private transition(to: VmState, why: string): void {
    const from = this.st;
    if (!TRANSITIONS[from].includes(to)) throw new EsxError('INTERNAL', `VM ${this.config.name}: illegal transition ${from} -> ${to}`);
    this.st = to;
    const level = to === 'crashed' ? 'error' : 'info';
    this.deps.logger[level]({ vmId: this.id, vm: this.config.name, from, to }, `VM ${this.config.name} ${why}`);
    this.deps.vmkLog?.log('VM', `${this.config.name} ${why}`, this.worldId || process.pid);
  }

  private describe(): string {
    const c = this.config;
    return `${c.workload.kind}, ${c.memoryMiB} MiB, ${c.vcpus} vCPU${c.vcpus > 1 ? 's' : ''}, seed ${c.seed}`;
  }

  async powerOn(opts: PowerOnOptions = {}): Promise<void> {
    this.transition('poweringOn', `powering on (${this.describe()})`);
    const c = this.config;
    const init: VmmInit = {
      config: c,
      machine: this.deps.machine.handle(),
      pmap: this.pmap.handle(),
      regs: this.regs.buffer as SharedArrayBuffer,
      counters: this.counters.buffer,
      vcpu: this.deps.vcpu,
      capMhz: c.vcpus * this.deps.cpuMhz,
      stopAtStep: opts.stopAtStep ?? null,
      ...(opts.restore ? { restore: true } : {}),
      nic: c.workload.kind === 'webserver' ? { ...this.deps.nic, ip: c.ip, port: c.workload.port } : null,
      disk: null,
    };
    try {
      init.disk = await this.openDisk();
    } catch (err) {
      const e = toEsxError(err);
      this.transition('poweredOff', `power on failed: ${e.code}: ${e.message}`);
      throw e;
    }
    if (opts.restore) {
      try {
        this.regs.restore(opts.restore.load(this.pmap));
      } catch (err) {
        const e = toEsxError(err);
        this.pmap.release();
        await this.storageRelease();
        this.transition('poweredOff', `restore failed: ${e.code}: ${e.message}`);
        throw e;
      }
    }
    this.boot = deferred();
    const bootTimer = setTimeout(
      () => this.boot?.reject(new EsxError('TIMEOUT', `VM ${c.name} did not boot within ${this.deps.timeouts.bootTimeoutMs} ms`)),
      this.deps.timeouts.bootTimeoutMs,
    );
    try {
      const vmm: VmmChannel = new VmmChannel(init, c.name, this.deps.timeouts.requestTimeoutMs, {
        onEvent: (e) => vmm === this.vmm && this.onEvent(e),
        onGone: (err) => vmm === this.vmm && this.onVmmGone(err),
      });
      this.vmm = vmm;
      this.worldId = vmm.threadId;
      const booted = await this.boot.promise;
      this.nicAddr = booted.nicAddress;
    } catch (err) {
      const e = toEsxError(err);
      await this.teardown();
      this.transition('poweredOff', `power on failed: ${e.code}: ${e.message}`);
      throw e;
    } finally {
      clearTimeout(bootTimer);
      this.boot = null;
    }
    this.startedAtMs = Date.now();
    this.sampleAtMs = this.startedAtMs;
    this.sampleCycles = this.counters.cycles;
    this.transition('poweredOn', `powered on (${c.workload.kind}, ${c.memoryMiB} MiB${this.nicAddr ? `, listening on ${this.nicAddr}` : ''})`);
  }

  async powerOff(): Promise<void> {
    if (this.st !== 'poweredOn') throw new EsxError('INVALID_STATE', `VM ${this.config.name} is ${this.st}, not poweredOn`);
    this.transition('poweringOff', 'powering off');
    try {
      await this.request('stop');
    } catch (err) {
      this.deps.logger.warn({ vmId: this.id, err: toEsxError(err).toJSON() }, 'the VMM did not stop cleanly; terminating it');
    }
    const freed = await this.teardown();
    this.transition('poweredOff', `powered off, ${freed} pages (${pagesToMiB(freed)} MiB) freed`);
  }

  /** Reboot the guest on zeroed memory (debug: pause it again at `stopAtStep`). */
  async reset(opts: PowerOnOptions = {}): Promise<void> {
    if (this.st !== 'poweredOn') throw new EsxError('INVALID_STATE', `VM ${this.config.name} is ${this.st}, not poweredOn`);
    this.transition('resetting', 'resetting');
    this.pausedAt = null;
    let r: VmmResults['reset'];
    try {
      r = await this.request('reset', { stopAtStep: opts.stopAtStep ?? null });
    } catch (err) {
      const e = toEsxError(err);
      if ((this.st as VmState) === 'resetting') this.crash(e);
      throw new EsxError('VM_CRASHED', `VM ${this.config.name} crashed during reset: ${e.message}`);
    }
    this.startedAtMs = Date.now();
    this.sampleAtMs = this.startedAtMs;
    this.sampleCycles = this.counters.cycles;
    this.transition('poweredOn', `reset: ${r.freedPages} pages freed, guest booted again`);
  }

  // ---- debug controls (tests, later quiesce for migration) ----

  async pause(): Promise<number> {
    this.requireRunning();
    const r = await this.request('pause');
    this.pausedAt = r.steps;
    return r.steps;
  }

  async resume(): Promise<number> {
    this.requireRunning();
    this.pausedAt = null;
    return (await this.request('resume')).steps;
  }

  /** Run until the guest has done `step` steps; resolves when the vCPU is paused there. */
  async runUntil(step: number, timeoutMs: number): Promise<number> {
    this.requireRunning();
    this.pausedAt = null;
    const r = await this.request('runUntil', { step });
    if (r.steps >= step && this.pausedAt !== null) return this.pausedAt;
    return this.waitPaused(timeoutMs);
  }

  /** Wait until the vCPU pauses at the step given to runUntil (or PowerOnOptions.stopAtStep). */
  waitPaused(timeoutMs: number): Promise<number> {
    if (this.pausedAt !== null) return Promise.resolve(this.pausedAt);
    return new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pausedWaiters = this.pausedWaiters.filter((w) => w !== done);
        reject(new EsxError('TIMEOUT', `VM ${this.config.name} did not pause within ${timeoutMs} ms (at step ${this.steps})`));
      }, timeoutMs);
      const done = (steps: number): void => {
        clearTimeout(t);
        resolve(steps);
      };
      this.pausedWaiters.push(done);
    });
  }

  /** SHA-256 of guest memory, computed by the VMM; the vCPU must be paused. */
  async memoryHash(): Promise<{ steps: number; hash: string }> {
    this.requireRunning();
    return this.request('hash');
  }

  private requireRunning(): void {
    if (this.st !== 'poweredOn') throw new EsxError('INVALID_STATE', `VM ${this.config.name} is ${this.st}, not poweredOn`);
  }

  // ---- scheduler and stats ----

  get cpuClaim(): CpuClaim {
    return { demandMhz: this.counters.demandMhz, capMhz: this.config.vcpus * this.deps.cpuMhz };
  }

  setEntitlementMhz(mhz: number): void {
    this.counters.set(VC_ENTITLEMENT_MHZ, mhz);
  }

  /** End a stats period: CPU used over it, active pages over it. */
  sample(nowMs = Date.now()): void {
    const cycles = this.counters.cycles;
    const dtS = (nowMs - this.sampleAtMs) / 1000;
    if (dtS > 0) this.usageMhz = (cycles - this.sampleCycles) / dtS / 1e6;
    this.sampleAtMs = nowMs;
    this.sampleCycles = cycles;
    this.pmap.sampleActive();
  }

  stats(nowMs = Date.now()): VmStats {
    return {
      vmId: this.id,
      cpuDemandMhz: this.counters.demandMhz,
      cpuUsageMhz: this.usageMhz,
      memConsumedMiB: pagesToMiB(this.pmap.consumedPages),
      memActiveMiB: pagesToMiB(this.pmap.activePages),
      steps: this.counters.steps,
      uptimeS: this.startedAtMs ? (nowMs - this.startedAtMs) / 1000 : 0,
      guest: guestReport(this.config.workload.kind, this.regs),
    };
  }

  runtime(): VmRuntime {
    return { config: this.config, powerState: 'poweredOn', startedAt: this.startedAtMs };
  }

  // ---- the VMM's events and death ----

  private onEvent(m: VmmEvent): void {
    switch (m.type) {
      case 'booted':
        this.boot?.resolve({ steps: m.steps, nicAddress: m.nicAddress });
        return;
      case 'bootFailed':
        this.boot?.reject(EsxError.fromBody(m.error));
        return;
      case 'paused': {
        this.pausedAt = m.steps;
        const waiters = this.pausedWaiters;
        this.pausedWaiters = [];
        for (const w of waiters) w(m.steps);
        return;
      }
      case 'fault': {
        const e = EsxError.fromBody(m.error);
        this.crash(new EsxError('VM_CRASHED', `guest fault: ${e.code}: ${e.message}`, { cause: e.toJSON() }));
        return;
      }
      case 'log':
        this.deps.logger[m.level]({ vmId: this.id }, m.msg);
        return;
    }
  }

  private onVmmGone(err: EsxError): void {
    if (this.st === 'poweringOn') this.boot?.reject(new EsxError('VM_CRASHED', `${err.message} while booting`));
    else if (this.running) this.crash(err);
  }

  private request<T extends VmmRequestType>(type: T, extra: Record<string, unknown> = {}): Promise<VmmResults[T]> {
    if (!this.vmm) return Promise.reject(new EsxError('INVALID_STATE', `VM ${this.config.name} has no VMM running`));
    return this.vmm.request(type, extra);
  }

  /** Fault injection (chaos tests): the VMM worker dies as in a crash. */
  async injectVmmCrash(): Promise<void> {
    this.requireRunning();
    await this.vmm?.terminateAsCrash();
  }

  /** The VM cannot go on: mark it crashed now, then stop its worker and free its pages. */
  private crash(err: EsxError): void {
    if (!this.running) return;
    this.transition('crashed', `crashed: ${err.message}`);
    this.vmm?.failPending(err);
    void this.teardown().then((freed) => {
      this.deps.logger.info({ vmId: this.id, freedPages: freed }, `VM ${this.config.name}: pages of the crashed VM freed`);
      this.deps.onCrash(this, err);
    });
  }

  /**
   * Make sure the worker is gone, then free the VM's machine pages. If the worker cannot be
   * shown gone in time, the pages are kept (a leak, logged) rather than freed under its feet.
   */
  /** Take the VM's storage; the disk service and the VMM's end of its channel when it has a disk. */
  private async openDisk(): Promise<VmmInit['disk']> {
    const c = this.config;
    if (!this.deps.attachStorage) {
      if (c.diskMiB === undefined) return null;
      throw new EsxError('INVALID_STATE', `VM ${c.name} has a ${c.diskMiB} MiB disk and this host has no datastore to keep it on`);
    }
    this.storage = await this.deps.attachStorage(c);
    const backend = this.storage.disk;
    if (c.diskMiB === undefined || !backend) return null;
    const channel = new MessageChannel();
    let lastReport = 0;
    this.disk = new VirtualDiskService(channel.port1, backend, {
      log: this.deps.logger.child({ vm: c.name, device: 'disk' }),
      onError: (op, e) => {
        const now = Date.now();
        if (now - lastReport < DISK_ERROR_REPORT_MS) return;
        lastReport = now;
        this.deps.vmkLog?.log('SCSI', `${c.name}: virtual disk ${op} failed: ${e.code}: ${e.message}`, this.worldId || process.pid);
        this.deps.onDiskError?.(this, `${op} failed: ${e.code}: ${e.message}`);
      },
    });
    return { port: channel.port2, sizeBytes: backend.sizeBytes };
  }

  /** Close the VM's disk and give back the storage it took at power-on (idempotent). */
  private async storageRelease(): Promise<void> {
    const storage = this.storage;
    const disk = this.disk;
    this.storage = null;
    this.disk = null;
    const warn = (what: string) => (err: unknown) => this.deps.logger.warn({ vmId: this.id, err: toEsxError(err).message }, what);
    // The disk service closes the backend; without one (power-on failed early) close it here.
    if (disk) await disk.close().catch(warn('closing the virtual disk failed'));
    else await storage?.disk?.close().catch(warn('closing the virtual disk failed'));
    await storage?.release().catch(warn('releasing the VM storage failed'));
  }

  /** Figures of the VM's virtual disk, or null without one. */
  get diskStats(): VirtualDiskStats | null {
    return this.disk ? { ...this.disk.stats } : null;
  }

  private async teardown(): Promise<number> {
    const vmm = this.vmm;
    this.vmm = null;
    this.nicAddr = null;
    const terminated = !vmm || (await vmm.terminate(this.deps.timeouts.terminateTimeoutMs));
    // After the worker: the VMM drained its disk at stop, and nothing can submit any more.
    await this.storageRelease();
    if (!terminated) {
      this.deps.logger.error({ vmId: this.id }, `VMM worker of ${this.config.name} did not terminate; its ${this.pmap.consumedPages} pages stay allocated`);
      return 0;
    }
    return this.pmap.release();
  }
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: EsxError) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
