/** What the inventory stores: the persisted shape of clusters, hosts and VMs. */
import type { HostConnectionState, PowerState, VmConfig } from '@esxemu/shared';

export interface ClusterRecord {
  id: string;
  name: string;
  createdAt: number;
}

export interface HostRecord {
  id: string;
  name: string;
  clusterId: string;
  cpuCores: number;
  cpuMhz: number;
  memoryMiB: number;
  migrationAddress: string;
  version: string;
  connectionState: HostConnectionState;
  /** ms since epoch */
  registeredAt: number;
  lastSeenAt: number | null;
}

export interface VmRecord {
  config: VmConfig;
  /** Host it is registered on (id), null if never placed. */
  hostId: string | null;
  powerState: PowerState;
  createdAt: number;
  /** "[datastore1] vm1/vm1.vmx" when the VM's files are on the datastore, else null. */
  vmxPath: string | null;
}
