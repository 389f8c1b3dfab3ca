/**
 * The inventory as the client API shows it: records from the store joined with the live
 * figures (stats) and resolved names. Lookups accept a name or an id.
 */
import type { ClusterInfo, HostInfo, VmInfo } from '@esxemu/shared';
import { EsxError } from '@esxemu/shared';
import type { Store } from '../db/store.js';
import type { LiveStats } from './live-stats.js';
import type { HostRecord, VmRecord } from './records.js';

export class InventoryView {
  constructor(
    private readonly store: Store,
    private readonly stats: LiveStats,
  ) {}

  clusters(): ClusterInfo[] {
    const hosts = this.store.hosts();
    const vms = this.store.vms();
    const clusterOfHost = new Map(hosts.map((h) => [h.id, h.clusterId]));
    return this.store.clusters().map((c) => ({
      id: c.id,
      name: c.name,
      hostCount: hosts.filter((h) => h.clusterId === c.id).length,
      vmCount: vms.filter((v) => v.hostId !== null && clusterOfHost.get(v.hostId) === c.id).length,
    }));
  }

  hosts(): HostInfo[] {
    const vms = this.store.vms();
    return this.store.hosts().map((h) => this.hostInfo(h, vms));
  }

  host(nameOrId: string): HostInfo {
    return this.hostInfo(this.hostRecord(nameOrId), this.store.vms());
  }

  hostRecord(nameOrId: string): HostRecord {
    const h = this.store.hostByName(nameOrId) ?? this.store.host(nameOrId);
    if (!h) throw new EsxError('HOST_NOT_FOUND', `no host named '${nameOrId}'`);
    return h;
  }

  vms(): VmInfo[] {
    const hostNames = this.hostNames();
    return this.store.vms().map((v) => this.vmInfo(v, hostNames));
  }

  vm(nameOrId: string): VmInfo {
    return this.vmInfo(this.vmRecord(nameOrId), this.hostNames());
  }

  vmRecord(nameOrId: string): VmRecord {
    const v = this.store.vmByName(nameOrId) ?? this.store.vm(nameOrId);
    if (!v) throw new EsxError('VM_NOT_FOUND', `no VM named '${nameOrId}'`);
    return v;
  }

  vmInfo(v: VmRecord, hostNames = this.hostNames()): VmInfo {
    const c = v.config;
    return {
      id: c.id,
      name: c.name,
      host: v.hostId === null ? null : (hostNames.get(v.hostId) ?? null),
      powerState: v.powerState,
      memoryMiB: c.memoryMiB,
      vcpus: c.vcpus,
      workload: c.workload,
      seed: c.seed,
      diskMiB: c.diskMiB ?? null,
      vmxPath: v.vmxPath,
      ip: c.ip,
      createdAt: v.createdAt,
      stats: v.powerState === 'poweredOn' ? this.stats.vm(c.id) : null,
    };
  }

  private hostInfo(h: HostRecord, vms: readonly VmRecord[]): HostInfo {
    return {
      id: h.id,
      name: h.name,
      cluster: this.store.cluster(h.clusterId)?.name ?? h.clusterId,
      connectionState: h.connectionState,
      cpuCores: h.cpuCores,
      cpuMhz: h.cpuMhz,
      memoryMiB: h.memoryMiB,
      migrationAddress: h.migrationAddress,
      version: h.version,
      registeredAt: h.registeredAt,
      lastSeenAt: h.lastSeenAt,
      vmCount: vms.filter((v) => v.hostId === h.id).length,
      stats: h.connectionState === 'connected' ? this.stats.host(h.id) : null,
    };
  }

  private hostNames(): Map<string, string> {
    return new Map(this.store.hosts().map((h) => [h.id, h.name]));
  }
}
