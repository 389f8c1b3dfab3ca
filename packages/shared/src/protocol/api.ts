/**
 * The public client API of vcenter (HTTP JSON under /api, plus a WebSocket event stream). The
 * CLI and the web client use only this. Every route but /api/health needs
 * `Authorization: Bearer <token>`, the token that vcenter's first start writes to its data
 * directory.
 *
 *   GET    /api/health                      -> { ok, version }            (no token)
 *   GET    /api/clusters                    -> ClusterInfo[]
 *   GET    /api/hosts                       -> HostInfo[]
 *   GET    /api/hosts/:host                 -> HostInfo                   (name or id)
 *   GET    /api/vms                         -> VmInfo[]
 *   POST   /api/vms           CreateVmRequest -> VmInfo (201)
 *   GET    /api/vms/:vm                     -> VmInfo                     (name or id)
 *   DELETE /api/vms/:vm                     -> { deleted: true }          (powered off only)
 *   POST   /api/vms/:vm/power-on  {host?}   -> TaskInfo (202)
 *   POST   /api/vms/:vm/power-off           -> TaskInfo (202)
 *   POST   /api/vms/:vm/reset               -> TaskInfo (202)
 *   GET    /api/tasks?limit=N               -> TaskInfo[]                 (newest first)
 *   GET    /api/tasks/:id                   -> TaskInfo
 *   GET    /api/events?limit=N&after=ID     -> EventInfo[]                (oldest first)
 *   GET    /api/stream  (WebSocket; token as Bearer header or ?token=)  -> StreamMessage JSON
 *
 * Errors: HTTP status from the code, body { error: { code, message, details? } }.
 */
import { z } from 'zod';
import type { ErrorBody } from '../errors.js';
import type { HostStats, PowerState, VmStats, WorkloadSpec } from './vm.js';
import { ipv4Schema, nameSchema, workloadSpecSchema } from './vm.js';

export const API_PREFIX = '/api';
export const STREAM_PATH = '/api/stream';

export interface ClusterInfo {
  id: string;
  name: string;
  hostCount: number;
  vmCount: number;
}

export type HostConnectionState = 'connected' | 'disconnected';

export interface HostInfo {
  id: string;
  name: string;
  cluster: string;
  connectionState: HostConnectionState;
  cpuCores: number;
  cpuMhz: number;
  memoryMiB: number;
  migrationAddress: string;
  version: string;
  /** ms since epoch */
  registeredAt: number;
  lastSeenAt: number | null;
  vmCount: number;
  stats: HostStats | null;
}

export interface VmInfo {
  id: string;
  name: string;
  /** Name of the host it is registered on / running on, null if never placed. */
  host: string | null;
  powerState: PowerState;
  memoryMiB: number;
  vcpus: number;
  workload: WorkloadSpec;
  seed: number;
  ip: string;
  /** Virtual disk size, MiB; null: no disk. */
  diskMiB: number | null;
  /** "[datastore1] vm1/vm1.vmx" when its files are on the datastore, else null. */
  vmxPath: string | null;
  createdAt: number;
  stats: VmStats | null;
}

export type TaskState = 'queued' | 'running' | 'success' | 'error';

export interface TaskInfo {
  id: string;
  /** e.g. vm.powerOn */
  op: string;
  targetType: 'vm' | 'host' | 'cluster';
  targetId: string;
  targetName: string;
  state: TaskState;
  /** 0..100 */
  progress: number;
  /** Free text describing the current step. */
  description: string;
  error: ErrorBody | null;
  result: unknown;
  queuedAt: number;
  startedAt: number | null;
  completedAt: number | null;
}

export type EventSeverity = 'info' | 'warning' | 'error';

export interface EventInfo {
  id: number;
  time: number;
  /** e.g. HostConnected, VmPoweredOn */
  type: string;
  severity: EventSeverity;
  message: string;
  host: string | null;
  vm: string | null;
  taskId: string | null;
}

export type StreamMessage = { kind: 'event'; event: EventInfo } | { kind: 'task'; task: TaskInfo } | { kind: 'hello'; version: string };

export const createVmRequestSchema = z.object({
  name: nameSchema,
  memoryMiB: z.number().int().min(1).max(65536).default(256),
  vcpus: z.number().int().min(1).max(64).default(1),
  workload: workloadSpecSchema.default({ kind: 'idle' }),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
  ip: ipv4Schema.optional(),
  /** Virtual disk size, MiB (a .vmdk on the datastore); absent: no disk. */
  diskMiB: z.number().int().min(1).max(1_048_576).optional(),
  /** Register on this host (name); otherwise placed at power-on. */
  host: nameSchema.optional(),
});
export type CreateVmRequest = z.input<typeof createVmRequestSchema>;

export const registerVmRequestSchema = z.object({
  /** The .vmx on the datastore: "[datastore1] vm1/vm1.vmx" or "vm1/vm1.vmx". */
  path: z.string().min(1).max(512),
  /** Register on this host (name); otherwise any host with the datastore reads the file. */
  host: nameSchema.optional(),
});
export type RegisterVmRequest = z.infer<typeof registerVmRequestSchema>;

export const powerOnRequestSchema = z.object({ host: nameSchema.optional() });
export type PowerOnRequest = z.infer<typeof powerOnRequestSchema>;
