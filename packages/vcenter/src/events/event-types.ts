/** The events vcenter records: a closed set of types, each with a default severity. */
import type { EventSeverity } from '@esxemu/shared';

export const EVENT_SEVERITY = {
  VcenterStarted: 'info',
  HostConnected: 'info',
  HostDisconnected: 'warning',
  HostRejected: 'warning',
  VmCreated: 'info',
  VmDeleted: 'info',
  VmRegistered: 'info',
  VmPoweredOn: 'info',
  VmPoweredOff: 'info',
  VmReset: 'info',
  VmCrashed: 'error',
  VmDiskError: 'error',
  TaskFailed: 'error',
} as const satisfies Record<string, EventSeverity>;

export type EventType = keyof typeof EVENT_SEVERITY;

/** An event about to be recorded: id and time are given by the registry. */
export interface NewEvent {
  type: EventType;
  message: string;
  /** Defaults to EVENT_SEVERITY[type]. */
  severity?: EventSeverity;
  /** Host name */
  host?: string | null;
  /** VM name */
  vm?: string | null;
  taskId?: string | null;
}
