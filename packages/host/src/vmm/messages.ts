/**
 * Messages between the VMkernel (main thread) and a VM's VMM (its worker thread), a closed set
 * in the manner of Firecracker's vCPU events: the VMkernel sends requests, each answered once
 * with `ok`, `notAllowed` (the request makes no sense in the vCPU's current state; nothing
 * changed) or `failed`; the VMM also sends unsolicited events. Figures that change all the time
 * (demand, usage, steps) do not travel here: they are in the shared VcpuCounters.
 *
 *   VMkernel                                VMM worker
 *      | -- new Worker(workerData: VmmInit) --> |  attach memory, open devices, boot guest
 *      | <------------- booted | bootFailed --- |
 *      | -- pause / resume / runUntil --------> |  act at a step boundary
 *      | <---------- ok {steps} | notAllowed -- |
 *      | <------------ paused {steps} --------- |  reached runUntil's step
 *      | -- hash ------------------------------> |  only while paused
 *      | -- reset -----------------------------> |  free the guest's pages, boot again
 *      | -- stop ------------------------------> |  vCPU stopped, devices closed
 *      | <-------------------- fault {error} --- |  the guest cannot go on: VM crashed
 */
import type { MessagePort } from 'node:worker_threads';
import type { ErrorBody, VmConfig } from '@esxemu/shared';
import type { MachineMemoryHandle } from '../vmkernel/memory/machine-memory.js';
import type { PmapHandle } from '../vmkernel/memory/pmap.js';
import type { NetDeviceOptions } from './devices/net/device.js';
import type { VcpuLoopOptions } from './vcpu-loop.js';

/** What a VMM worker is started with (its workerData). */
export interface VmmInit {
  config: VmConfig;
  machine: MachineMemoryHandle;
  pmap: PmapHandle;
  /** The vCPU registers (Registers' buffer). */
  regs: SharedArrayBuffer;
  /** The shared VcpuCounters. */
  counters: SharedArrayBuffer;
  vcpu: VcpuLoopOptions;
  /** Most MHz the VM may use: vcpus x MHz per core of the host. */
  capMhz: number;
  /** Debug: stop the vCPU when the guest has run this many steps (tests use it). */
  stopAtStep: number | null;
  /** The VM's NIC, or null for a VM with no network service. */
  nic: NetDeviceOptions | null;
  /** The VM's virtual disk (its channel to the VMkernel's disk service), or null. */
  disk: { port: MessagePort; sizeBytes: number } | null;
  /**
   * The guest's memory and registers were loaded by the VMkernel (a migrated VM): resume it
   * where it stopped instead of booting it.
   */
  restore?: boolean;
}

export type VmmRequest =
  | { type: 'pause'; reqId: number }
  | { type: 'resume'; reqId: number }
  | { type: 'runUntil'; reqId: number; step: number }
  | { type: 'hash'; reqId: number }
  | { type: 'reset'; reqId: number; stopAtStep: number | null }
  | { type: 'stop'; reqId: number };

export type VmmRequestType = VmmRequest['type'];

/** The result of each request when it succeeds. */
export interface VmmResults {
  pause: { steps: number };
  resume: { steps: number };
  runUntil: { steps: number };
  hash: { steps: number; hash: string };
  reset: { steps: number; freedPages: number };
  stop: { steps: number };
}

export type VmmResponse =
  | { type: 'ok'; reqId: number; result: VmmResults[VmmRequestType] }
  | { type: 'notAllowed'; reqId: number; reason: string }
  | { type: 'failed'; reqId: number; error: ErrorBody };

export type VmmEvent =
  | { type: 'booted'; steps: number; nicAddress: string | null }
  | { type: 'bootFailed'; error: ErrorBody }
  | { type: 'paused'; steps: number; reason: 'stopAtStep' }
  | { type: 'fault'; error: ErrorBody }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string };

export type VmmToVmkernel = VmmResponse | VmmEvent;

const REQUEST_TYPES: ReadonlySet<string> = new Set<VmmRequestType>(['pause', 'resume', 'runUntil', 'hash', 'reset', 'stop']);

/** Check a message that claims to be a VmmRequest (the worker trusts nothing it did not check). */
export function isVmmRequest(m: unknown): m is VmmRequest {
  if (!m || typeof m !== 'object') return false;
  const r = m as Record<string, unknown>;
  if (typeof r['type'] !== 'string' || !REQUEST_TYPES.has(r['type'])) return false;
  if (!(Number.isInteger(r['reqId']) && (r['reqId'] as number) > 0)) return false;
  if (r['type'] === 'runUntil' && !(Number.isInteger(r['step']) && (r['step'] as number) >= 0)) return false;
  if (r['type'] === 'reset' && !(r['stopAtStep'] === null || (Number.isInteger(r['stopAtStep']) && (r['stopAtStep'] as number) >= 0))) return false;
  return true;
}
