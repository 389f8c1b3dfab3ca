/**
 * The latest runtime figures the hosts report (stats messages), kept in memory only: they are
 * a few seconds old at most and rebuilt from the next report after a restart. Bounded by the
 * inventory: stats of a host go when it disconnects, stats of a VM when it stops running.
 */
import type { HostStats, VmStats } from '@esxemu/shared';
import type { InventoryNotification } from './registry.js';

export class LiveStats {
  private readonly hosts = new Map<string, HostStats>();
  private readonly vms = new Map<string, VmStats>();

  host(hostId: string): HostStats | null {
    return this.hosts.get(hostId) ?? null;
  }

  vm(vmId: string): VmStats | null {
    return this.vms.get(vmId) ?? null;
  }

  /** A host's report: its own figures and those of the VMs it runs (ids it knows). */
  report(hostId: string, host: HostStats, vms: readonly VmStats[], isRunningHere: (vmId: string) => boolean): void {
    this.hosts.set(hostId, host);
    for (const s of vms) {
      if (isRunningHere(s.vmId)) this.vms.set(s.vmId, s);
    }
  }

  /** Registry observer: forget what no longer runs. */
  readonly observer = (n: InventoryNotification): void => {
    if (n.kind !== 'change') return;
    const c = n.change;
    if (c.kind === 'hostConnection' && c.state === 'disconnected') this.hosts.delete(c.hostId);
    else if (c.kind === 'vmRuntime' && c.powerState !== 'poweredOn') this.vms.delete(c.vmId);
    else if (c.kind === 'vmDeleted') this.vms.delete(c.vmId);
  };
}
