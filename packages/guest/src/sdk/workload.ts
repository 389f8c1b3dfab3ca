/**
 * A workload is a program whose whole state lives in guest memory, vCPU registers and the
 * virtual devices' queues, so that it can be paused at any step boundary and resumed on
 * another host with nothing lost. A Workload object is code only: it must keep no state of its
 * own between calls (no fields that change, no closures, no timers, no module variables).
 */
import type { WorkloadSpec } from '@esxemu/shared';
import type { GuestMemory } from './guest-memory.js';
import type { VirtualDisk } from './disk.js';
import type { VirtualNic } from './nic.js';
import type { Registers } from './registers.js';

export interface GuestContext {
  mem: GuestMemory;
  regs: Registers;
  /** Present when the VMM gave the VM a network device. */
  nic: VirtualNic | null;
  /** Present when the VM has a virtual disk. */
  disk?: VirtualDisk | null;
}

export interface Workload<S extends WorkloadSpec = WorkloadSpec> {
  readonly kind: S['kind'];
  /**
   * Boot: write the workload's parameters and initial state into registers and memory. Called
   * once at power-on (and at reset), after the PRNG registers were seeded.
   */
  boot(ctx: GuestContext, spec: S): void;
  /** Run one step. Returns the virtual CPU cycles the step cost (> 0). */
  step(ctx: GuestContext): number;
  /** The CPU the workload asks for now, MHz of virtual time, computed from guest state. */
  demandMhz(ctx: GuestContext): number;
}
