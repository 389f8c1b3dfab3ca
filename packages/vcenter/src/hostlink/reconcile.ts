/**
 * Reconciliation at hello: the host's report of its VMs wins over what the database remembers,
 * because the host is where they actually run (vcenter may have restarted, or the host may have
 * lost its VMs while disconnected).
 *   - a VM the host runs is recorded poweredOn on that host, whatever the database said;
 *   - a VM the host runs that the inventory does not know is adopted (registered from its
 *     config), unless its name or IP collides with a known VM (then it is only logged);
 *   - a VM the database says is on, on that host, but that the host does not run is recorded
 *     poweredOff, with an event (suspended, without one, if the host reports it suspended).
 * Pure apart from reading the store: returns the changes and events to commit.
 */
import type { VmRuntime } from '@esxemu/shared';
import type { Store } from '../db/store.js';
import type { NewEvent } from '../events/event-types.js';
import type { HostRecord } from '../inventory/records.js';
import type { InventoryChange } from '../inventory/registry.js';

export interface Reconciliation {
  changes: InventoryChange[];
  events: NewEvent[];
  /** Things worth a warning in the log that change nothing. */
  warnings: string[];
}

export function reconcileHostVms(store: Store, host: HostRecord, reported: readonly VmRuntime[], now: number): Reconciliation {
  const out: Reconciliation = { changes: [], events: [], warnings: [] };
  const running = new Map<string, VmRuntime>();
  const suspended = new Set<string>();
  for (const r of reported) {
    if (r.powerState === 'poweredOn') running.set(r.config.id, r);
    else if (r.powerState === 'suspended') suspended.add(r.config.id);
  }
  const hostNames = new Map(store.hosts().map((h) => [h.id, h.name]));
  const ips = new Map(store.vms().map((v) => [v.config.ip, v.config.name]));
  /** Names adopted in this pass (a report may repeat a name under two ids). */
  const adopted = new Set<string>();

  for (const r of running.values()) {
    const known = store.vm(r.config.id);
    if (known) {
      if (known.hostId === host.id && known.powerState === 'poweredOn') continue;
      const elsewhere = known.hostId !== null && known.hostId !== host.id && known.powerState === 'poweredOn';
      if (elsewhere) {
        out.warnings.push(`VM ${known.config.name} was recorded running on ${hostNames.get(known.hostId!) ?? known.hostId}; ${host.name} reports it running, recording it there`);
      }
      out.changes.push({ kind: 'vmRuntime', vmId: known.config.id, hostId: host.id, powerState: 'poweredOn' });
      out.events.push({
        type: 'VmPoweredOn',
        message: `VM ${known.config.name} is running on host ${host.name} (reported when the host connected)`,
        host: host.name,
        vm: known.config.name,
      });
      continue;
    }
    const sameName = store.vmByName(r.config.name)?.config.id ?? (adopted.has(r.config.name) ? 'another reported VM' : null);
    const ipOwner = ips.get(r.config.ip);
    if (sameName !== null || ipOwner !== undefined) {
      out.warnings.push(
        `host ${host.name} runs VM ${r.config.name} (${r.config.id}) that the inventory does not know and cannot adopt: ` +
          (sameName !== null ? `the name is used by VM ${sameName}` : `IP ${r.config.ip} belongs to VM ${ipOwner}`),
      );
      continue;
    }
    ips.set(r.config.ip, r.config.name);
    adopted.add(r.config.name);
    out.changes.push({ kind: 'vmCreated', vm: { config: r.config, hostId: host.id, powerState: 'poweredOn', createdAt: now, vmxPath: null } });
    out.events.push({ type: 'VmCreated', message: `VM ${r.config.name} found running on host ${host.name} and added to the inventory`, host: host.name, vm: r.config.name });
  }

  for (const vm of store.vmsOnHost(host.id)) {
    if (vm.powerState !== 'poweredOn' || running.has(vm.config.id)) continue;
    if (suspended.has(vm.config.id)) {
      out.changes.push({ kind: 'vmRuntime', vmId: vm.config.id, hostId: host.id, powerState: 'suspended' });
      continue;
    }
    out.changes.push({ kind: 'vmRuntime', vmId: vm.config.id, hostId: host.id, powerState: 'poweredOff' });
    out.events.push({
      type: 'VmPoweredOff',
      severity: 'warning',
      message: `VM ${vm.config.name} was not running on host ${host.name} when the host connected; recorded as powered off`,
      host: host.name,
      vm: vm.config.name,
    });
  }
  return out;
}
