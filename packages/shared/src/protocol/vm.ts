/**
 * What a VM is, as the management plane and the hosts agree on it: its configuration (what a
 * .vmx holds), its workload, and the runtime figures a host reports.
 */
import { z } from 'zod';

export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;
export const nameSchema = z.string().regex(NAME_RE, 'names are 1-63 characters: letters, digits, dot, dash, underscore; starting with a letter or digit');

export const WORKLOAD_KINDS = ['idle', 'memstress', 'cpuburn', 'webserver', 'diskrecords', 'diskio'] as const;

/** The built-in guest workloads and their parameters. */
export const workloadSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('idle') }),
  z.object({
    kind: z.literal('memstress'),
    /** Size of the working set the workload writes over, MiB. */
    workingSetMiB: z.number().positive().max(65536),
    /** Pages dirtied per second of virtual time. */
    dirtyPagesPerS: z.number().int().min(0).max(10_000_000),
  }),
  z.object({
    kind: z.literal('cpuburn'),
    /** CPU demand in MHz. */
    demandMhz: z.number().int().min(1).max(1_000_000),
  }),
  z.object({
    kind: z.literal('webserver'),
    /** TCP port the guest answers HTTP on, at the VM's own IP. */
    port: z.number().int().min(1).max(65535),
  }),
  z.object({
    kind: z.literal('diskrecords'),
    /** Numbered 512-byte records written to the VM's disk per second of virtual time. */
    recordsPerS: z.number().int().min(1).max(100_000),
    /** A flush (SYNCHRONIZE CACHE down the stack) after this many records. */
    flushEvery: z.number().int().min(1).max(65_536),
  }),
  z.object({
    kind: z.literal('diskio'),
    /** What the guest does to its disk, as fio would (the guest's DISKIO_PATTERNS). */
    pattern: z.enum(['seqread', 'seqwrite', 'randread', 'randwrite']),
    blockKiB: z.number().int().min(1).max(1024),
    queueDepth: z.number().int().min(1).max(64),
  }),
]);
export type WorkloadSpec = z.infer<typeof workloadSpecSchema>;

export const ipv4Schema = z.string().regex(/^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/, 'an IPv4 address');

/** A VM's configuration: what its .vmx says. */
export const vmConfigSchema = z.object({
  id: z.string().min(1).max(64),
  name: nameSchema,
  memoryMiB: z.number().int().min(1).max(65536),
  vcpus: z.number().int().min(1).max(64),
  workload: workloadSpecSchema,
  /** Seed of the guest PRNG: the same seed gives the same run. */
  seed: z.number().int().min(0).max(0xffffffff),
  /** The VM's own IP address on the VM network. */
  ip: ipv4Schema,
  /** Size of the VM's virtual disk (its .vmdk), MiB; absent: the VM has no disk. */
  diskMiB: z.number().int().min(1).max(1_048_576).optional(),
});
export type VmConfig = z.infer<typeof vmConfigSchema>;

export type PowerState = 'poweredOff' | 'poweredOn' | 'suspended';

/** Runtime figures of one VM, as its host reports them. */
export interface VmStats {
  vmId: string;
  /** CPU the workload asks for, MHz of virtual time. */
  cpuDemandMhz: number;
  /** CPU the VMkernel granted and the VM used, MHz. */
  cpuUsageMhz: number;
  /** Machine memory backing the VM's pages, MiB. */
  memConsumedMiB: number;
  /** Memory the guest touched during the last sampling period, MiB. */
  memActiveMiB: number;
  /** Guest steps executed since power-on. */
  steps: number;
  uptimeS: number;
  /**
   * What the guest reports of itself, as VMware Tools' guestinfo: named counters of its
   * workload (diskrecords: acked, flushed, verified, errors; diskio: ops, kib, errors).
   */
  guest?: Record<string, number> | null;
}

/** Runtime figures of one host. */
export interface HostStats {
  cpuCapacityMhz: number;
  cpuDemandMhz: number;
  cpuUsageMhz: number;
  memCapacityMiB: number;
  memConsumedMiB: number;
  memActiveMiB: number;
  /** Real resident set size of the host process, MiB (what the emulator itself costs). */
  rssMiB: number;
  vmsRunning: number;
  /** The host's mount of the shared datastore; null: it has none configured. */
  datastore?: DatastoreStatus | null;
}

export interface DatastoreStatus {
  url: string;
  state: 'mounting' | 'mounted' | 'error';
  name: string | null;
  uuid: string | null;
  capacityBytes: number | null;
  freeBytes: number | null;
  /** Hosts whose datastore heartbeat this host sees as live. */
  liveHosts: string[];
  error: string | null;
}
