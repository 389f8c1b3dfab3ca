/**
 * Where a VM powers on (initial placement, before DRS exists): the host asked for, else the
 * host the VM is registered on if it is connected, else the connected host with the most free
 * memory (its memory minus that of its powered-on VMs). Pure: the caller gives the hosts.
 */
import { EsxError } from '@esxemu/shared';

export interface PlacementHost {
  id: string;
  name: string;
  connected: boolean;
  memoryMiB: number;
  /** Memory of the VMs powered on there (not counting the VM being placed). */
  usedMiB: number;
}

export interface PlacementRequest {
  vmName: string;
  vmMemoryMiB: number;
  /** Host name the caller asked for, if any. */
  requestedHost: string | null;
  /** Host id the VM is registered on, if any. */
  currentHostId: string | null;
}

export interface PlacementDecision {
  host: PlacementHost;
  reason: 'requested' | 'registered' | 'most-free-memory';
}

export function placePowerOn(req: PlacementRequest, hosts: readonly PlacementHost[]): PlacementDecision {
  if (req.requestedHost !== null) {
    const h = hosts.find((x) => x.name === req.requestedHost);
    if (!h) throw new EsxError('HOST_NOT_FOUND', `no host named '${req.requestedHost}'`);
    if (!h.connected) throw new EsxError('HOST_DISCONNECTED', `host ${h.name} is not connected; cannot power on VM ${req.vmName} there`);
    return { host: h, reason: 'requested' };
  }
  const current = req.currentHostId === null ? undefined : hosts.find((x) => x.id === req.currentHostId);
  if (current?.connected) return { host: current, reason: 'registered' };
  const connected = hosts.filter((h) => h.connected);
  if (connected.length === 0) {
    const why = current ? ` (its host ${current.name} is disconnected)` : '';
    throw new EsxError('HOST_DISCONNECTED', `no connected host to power on VM ${req.vmName}${why}; start or reconnect a host`);
  }
  const free = (h: PlacementHost): number => h.memoryMiB - h.usedMiB;
  const best = [...connected].sort((a, b) => free(b) - free(a) || a.name.localeCompare(b.name))[0]!;
  if (free(best) < req.vmMemoryMiB) {
    throw new EsxError(
      'INSUFFICIENT_RESOURCES',
      `no connected host has ${req.vmMemoryMiB} MiB free for VM ${req.vmName}; the most is ${Math.max(0, free(best))} MiB on ${best.name}`,
    );
  }
  return { host: best, reason: 'most-free-memory' };
}
