/**
 * The one update path of the inventory, after govmomi's simulator registry: every change
 * (clusters, hosts, VMs, tasks) and every event goes through commit(), which writes them to
 * SQLite in one transaction and then tells the observers (the event stream, the stats cache)
 * what changed, in order. Nothing else writes to the store.
 */
import type { EventInfo, HostConnectionState, Logger, PowerState, TaskInfo } from '@esxemu/shared';
import type { Store } from '../db/store.js';
import { EVENT_SEVERITY, type NewEvent } from '../events/event-types.js';
import type { ClusterRecord, HostRecord, VmRecord } from './records.js';

export type InventoryChange =
  | { kind: 'clusterCreated'; cluster: ClusterRecord }
  /** A host registered for the first time, or its identity changed (upsert). */
  | { kind: 'hostRegistered'; host: HostRecord }
  | { kind: 'hostConnection'; hostId: string; state: HostConnectionState; lastSeenAt: number | null }
  | { kind: 'hostSeen'; hostId: string; at: number }
  | { kind: 'vmCreated'; vm: VmRecord }
  /** Where a VM is registered and its power state. */
  | { kind: 'vmRuntime'; vmId: string; hostId: string | null; powerState: PowerState }
  | { kind: 'vmDeleted'; vmId: string }
  /** A task was created or moved on (the whole TaskInfo). */
  | { kind: 'task'; task: TaskInfo };

export type InventoryNotification = { kind: 'change'; change: InventoryChange } | { kind: 'event'; event: EventInfo };

export type InventoryObserver = (n: InventoryNotification) => void;

export interface RegistryRetention {
  /** Finished tasks kept in the database. */
  tasks: number;
  /** Events kept in the database. */
  events: number;
}

/** How often (in rows written) old tasks and events are pruned. */
const PRUNE_EVERY = 256;

export class Registry {
  private readonly observers = new Set<InventoryObserver>();
  private closed = false;
  private eventsSincePrune = 0;
  private tasksSincePrune = 0;

  constructor(
    readonly store: Store,
    private readonly logger: Logger,
    private readonly retention: RegistryRetention,
    private readonly now: () => number = Date.now,
  ) {}

  /** Register an observer; returns the function that removes it. */
  observe(fn: InventoryObserver): () => void {
    this.observers.add(fn);
    return () => this.observers.delete(fn);
  }

  /**
   * Persist `changes` and `events` atomically, then notify observers. Returns the recorded
   * events (with their ids). After close() nothing is written and [] is returned: late
   * completions during shutdown must not touch a closed database.
   */
  commit(changes: readonly InventoryChange[], events: readonly NewEvent[] = []): EventInfo[] {
    if (this.closed) {
      this.logger.debug({ changes: changes.map((c) => c.kind), events: events.map((e) => e.type) }, 'registry closed, change dropped');
      return [];
    }
    const recorded = this.store.transaction(() => {
      for (const c of changes) this.apply(c);
      return events.map((e) => this.record(e));
    });
    this.prune(changes, recorded.length);
    for (const change of changes) this.notify({ kind: 'change', change });
    for (const event of recorded) this.notify({ kind: 'event', event });
    return recorded;
  }

  /** Shorthand for an event with no inventory change. */
  event(e: NewEvent): EventInfo | null {
    return this.commit([], [e])[0] ?? null;
  }

  close(): void {
    this.closed = true;
    this.observers.clear();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private apply(c: InventoryChange): void {
    const s = this.store;
    switch (c.kind) {
      case 'clusterCreated':
        s.insertCluster(c.cluster);
        return;
      case 'hostRegistered':
        s.upsertHost(c.host);
        return;
      case 'hostConnection':
        s.setHostConnection(c.hostId, c.state, c.lastSeenAt);
        return;
      case 'hostSeen':
        s.setHostSeen(c.hostId, c.at);
        return;
      case 'vmCreated':
        s.insertVm(c.vm);
        return;
      case 'vmRuntime':
        s.updateVm(c.vmId, c.hostId, c.powerState);
        return;
      case 'vmDeleted':
        s.deleteVm(c.vmId);
        return;
      case 'task':
        s.upsertTask(c.task);
        return;
    }
  }

  private record(e: NewEvent): EventInfo {
    const info: Omit<EventInfo, 'id'> = {
      time: this.now(),
      type: e.type,
      severity: e.severity ?? EVENT_SEVERITY[e.type],
      message: e.message,
      host: e.host ?? null,
      vm: e.vm ?? null,
      taskId: e.taskId ?? null,
    };
    const event = { id: this.store.insertEvent(info), ...info };
    this.logger.debug({ event }, 'event recorded');
    return event;
  }

  private prune(changes: readonly InventoryChange[], eventCount: number): void {
    this.eventsSincePrune += eventCount;
    this.tasksSincePrune += changes.filter((c) => c.kind === 'task' && (c.task.state === 'success' || c.task.state === 'error')).length;
    try {
      if (this.eventsSincePrune >= PRUNE_EVERY) {
        this.eventsSincePrune = 0;
        this.store.pruneEvents(this.retention.events);
      }
      if (this.tasksSincePrune >= PRUNE_EVERY) {
        this.tasksSincePrune = 0;
        this.store.pruneTasks(this.retention.tasks);
      }
    } catch (err) {
      this.logger.warn({ err }, 'pruning old tasks/events failed');
    }
  }

  private notify(n: InventoryNotification): void {
    for (const fn of this.observers) {
      try {
        fn(n);
      } catch (err) {
        this.logger.error({ err, notification: n.kind }, 'inventory observer failed');
      }
    }
  }
}
