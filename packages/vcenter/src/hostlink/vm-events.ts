/**
 * Unsolicited VM state changes a host reports (vmEvent): a guest that powered itself off, reset
 * or crashed, or whose disk I/O failed (NO_SPACE, LOCK_LOST...: an event, no state change). Only a host the VM is registered on may change its state; an event about a VM that
 * is unknown or recorded elsewhere (a stale report) changes nothing. A report of the state
 * already recorded (the answer to one of our own requests) adds no second event.
 */
import type { HostToVcenter } from '@esxemu/shared';
import type { Store } from '../db/store.js';
import type { NewEvent } from '../events/event-types.js';
import type { HostRecord } from '../inventory/records.js';
import type { InventoryChange } from '../inventory/registry.js';

export type VmEventMessage = Extract<HostToVcenter, { type: 'vmEvent' }>;

export interface VmEventOutcome {
  changes: InventoryChange[];
  events: NewEvent[];
  /** Why nothing changed, when nothing did. */
  ignored: string | null;
}

export function applyVmEvent(store: Store, host: HostRecord, msg: VmEventMessage): VmEventOutcome {
  const vm = store.vm(msg.vmId);
  if (!vm) return { changes: [], events: [], ignored: `unknown VM ${msg.vmId}` };
  const name = vm.config.name;
  const here = vm.hostId === host.id;
  const detail = msg.message ? `: ${msg.message}` : '';
  switch (msg.event) {
    case 'poweredOn':
      if (here && vm.powerState === 'poweredOn') return { changes: [], events: [], ignored: 'already recorded poweredOn here' };
      if (!here && vm.powerState === 'poweredOn') return { changes: [], events: [], ignored: 'VM recorded running on another host' };
      return {
        changes: [{ kind: 'vmRuntime', vmId: vm.config.id, hostId: host.id, powerState: 'poweredOn' }],
        events: [{ type: 'VmPoweredOn', message: `VM ${name} powered on on host ${host.name}${detail}`, host: host.name, vm: name }],
        ignored: null,
      };
    case 'poweredOff':
      if (!here) return { changes: [], events: [], ignored: 'VM registered on another host' };
      if (vm.powerState === 'poweredOff') return { changes: [], events: [], ignored: 'already recorded poweredOff' };
      return {
        changes: [{ kind: 'vmRuntime', vmId: vm.config.id, hostId: host.id, powerState: 'poweredOff' }],
        events: [{ type: 'VmPoweredOff', message: `VM ${name} powered off on host ${host.name}${detail}`, host: host.name, vm: name }],
        ignored: null,
      };
    case 'reset':
      if (!here || vm.powerState !== 'poweredOn') return { changes: [], events: [], ignored: 'VM not recorded running on this host' };
      return { changes: [], events: [{ type: 'VmReset', message: `VM ${name} was reset on host ${host.name}${detail}`, host: host.name, vm: name }], ignored: null };
    case 'crashed':
      if (!here) return { changes: [], events: [], ignored: 'VM registered on another host' };
      return {
        changes: vm.powerState === 'poweredOff' ? [] : [{ kind: 'vmRuntime', vmId: vm.config.id, hostId: host.id, powerState: 'poweredOff' }],
        events: [{ type: 'VmCrashed', message: `VM ${name} crashed on host ${host.name}${detail}`, host: host.name, vm: name }],
        ignored: null,
      };
    case 'diskError':
      if (!here) return { changes: [], events: [], ignored: 'VM registered on another host' };
      return { changes: [], events: [{ type: 'VmDiskError', message: `VM ${name}: disk I/O failed on host ${host.name}${detail}`, host: host.name, vm: name }], ignored: null };
  }
}
