/**
 * The VMM of one VM, as it runs inside the VM's worker thread: it attaches to the VM's memory
 * (machine memory, pmap, registers, counters: all shared buffers the VMkernel created), opens
 * the virtual devices, boots the guest and runs its vCPU loop, and answers the VMkernel's
 * requests (messages.ts). It owns the vCPU: the pmap is written here while the VM runs.
 */
import { GuestMemory, Registers, bootGuest, getWorkload, type GuestContext, type Workload } from '@esxemu/guest';
import { toEsxError, type ErrorBody } from '@esxemu/shared/core';
import { MachineMemory } from '../vmkernel/memory/machine-memory.js';
import { Pmap } from '../vmkernel/memory/pmap.js';
import { DiskDevice } from './devices/disk/device.js';
import { NetDevice } from './devices/net/device.js';
import { isVmmRequest, type VmmInit, type VmmRequest, type VmmToVmkernel } from './messages.js';
import { VcpuCounters } from './vcpu-counters.js';
import { VcpuLoop } from './vcpu-loop.js';

/** The side of a MessagePort the VMM uses. */
export interface VmmPort {
  postMessage(m: VmmToVmkernel): void;
  on(event: 'message', fn: (m: unknown) => void): unknown;
}

export async function runVmm(init: VmmInit, port: VmmPort): Promise<void> {
  const post = (m: VmmToVmkernel): void => port.postMessage(m);
  let nic: NetDevice | null = null;
  let vmm: Vmm | null = null;
  const disk = init.disk ? new DiskDevice({ ...init.disk, onComplete: () => vmm?.kick() }) : null;
  try {
    const mm = MachineMemory.attach(init.machine);
    const pmap = Pmap.attach(init.pmap, mm);
    const ctx: GuestContext = { mem: new GuestMemory(pmap), regs: new Registers(init.regs), nic: null, disk };
    const workload = getWorkload(init.config.workload.kind);
    if (init.nic) nic = await NetDevice.open(init.nic);
    ctx.nic = nic;
    if (!init.restore) bootGuest(ctx, workload, init.config.workload, init.config.seed);
    vmm = new Vmm(init, pmap, ctx, workload, nic, disk, post);
  } catch (err) {
    await nic?.close();
    disk?.close();
    post({ type: 'bootFailed', error: errorBody(err) });
    return;
  }
  const v = vmm;
  port.on('message', (m) => void v.handle(m));
  post({ type: 'booted', steps: v.steps, nicAddress: nic ? nic.address : null });
  v.start(init.stopAtStep);
}

/** How long power-off and reset wait for the disk's in-flight requests. */
const DISK_DRAIN_MS = 10_000;

function errorBody(err: unknown): ErrorBody {
  return toEsxError(err).toJSON();
}

class Vmm {
  private readonly loop: VcpuLoop;

  constructor(
    private readonly init: VmmInit,
    private readonly pmap: Pmap,
    private readonly ctx: GuestContext,
    private readonly workload: Workload,
    private readonly nic: NetDevice | null,
    private readonly disk: DiskDevice | null,
    private readonly post: (m: VmmToVmkernel) => void,
  ) {
    this.loop = new VcpuLoop(ctx, workload, new VcpuCounters(init.counters), init.capMhz, init.vcpu, {
      onStopAtStep: (steps) => this.post({ type: 'paused', steps, reason: 'stopAtStep' }),
      onFault: (err) => this.fault(err),
    });
  }

  get steps(): number {
    return this.loop.steps;
  }

  start(stopAtStep: number | null): void {
    this.loop.start(stopAtStep);
  }

  /** A device interrupt: run the guest soon. */
  kick(): void {
    this.loop.kick();
  }

  private fault(err: unknown): void {
    this.loop.stop();
    void this.nic?.close();
    this.disk?.close();
    this.post({ type: 'fault', error: errorBody(err) });
  }

  async handle(m: unknown): Promise<void> {
    if (!isVmmRequest(m)) {
      this.post({ type: 'log', level: 'warn', msg: `VMM ignored a malformed request: ${JSON.stringify(m)?.slice(0, 200)}` });
      return;
    }
    const st = this.loop.state;
    if (st === 'stopped' || st === 'faulted') return this.notAllowed(m, `the vCPU is ${st}`);
    switch (m.type) {
      case 'pause':
        return this.ok(m, { steps: this.loop.pause() });
      case 'resume':
        return this.ok(m, { steps: this.loop.resume() });
      case 'runUntil':
        if (m.step < this.loop.steps) return this.notAllowed(m, `the guest is already at step ${this.loop.steps}, past ${m.step}`);
        return this.ok(m, { steps: this.loop.runUntil(m.step) });
      case 'hash':
        if (st !== 'paused') return this.notAllowed(m, 'the vCPU must be paused at a step boundary to hash guest memory');
        return this.ok(m, { steps: this.loop.steps, hash: this.ctx.mem.hash() });
      case 'reset':
        return this.reset(m);
      case 'stop': {
        const steps = this.loop.stop();
        await this.nic?.close();
        // Every write the guest submitted is answered before the VM is gone (bounded).
        const drained = await this.disk?.drain(DISK_DRAIN_MS).then(
          () => null,
          (err: unknown) => errorBody(err).message,
        );
        if (drained) this.post({ type: 'log', level: 'warn', msg: `power-off: ${drained}` });
        this.disk?.close();
        return this.ok(m, { steps });
      }
    }
  }

  /** Reboot the guest: answer pending requests, free every page, boot from the seed again. */
  private async reset(m: Extract<VmmRequest, { type: 'reset' }>): Promise<void> {
    let freedPages = 0;
    // The disk's in-flight writes land before the new boot reads the disk; their completions
    // are for a guest that no longer exists.
    this.loop.pause();
    await this.disk?.drain(DISK_DRAIN_MS).catch(() => undefined);
    this.disk?.forget();
    try {
      this.loop.reboot(() => {
        this.nic?.drain('the VM is being reset');
        freedPages = this.pmap.release();
        bootGuest(this.ctx, this.workload, this.init.config.workload, this.init.config.seed);
      }, m.stopAtStep);
    } catch (err) {
      this.post({ type: 'failed', reqId: m.reqId, error: errorBody(err) });
      this.fault(err);
      return;
    }
    this.ok(m, { steps: this.loop.steps, freedPages });
  }

  private ok(m: VmmRequest, result: { steps: number; hash?: string; freedPages?: number }): void {
    this.post({ type: 'ok', reqId: m.reqId, result } as VmmToVmkernel);
  }

  private notAllowed(m: VmmRequest, reason: string): void {
    this.post({ type: 'notAllowed', reqId: m.reqId, reason });
  }
}
