/**
 * The SQLite store behind the inventory: vcenter.db in the data directory, WAL journal,
 * prepared statements, rows mapped to records. Only the registry writes through it (the one
 * update path); readers may query it directly. Everything here is synchronous (better-sqlite3).
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import type { ErrorBody, EventInfo, EventSeverity, HostConnectionState, PowerState, TaskInfo, TaskState, WorkloadSpec } from '@esxemu/shared';
import type { ClusterRecord, HostRecord, VmRecord } from '../inventory/records.js';
import { migrate } from './schema.js';

export const DB_FILE = 'vcenter.db';

interface HostRow {
  id: string;
  name: string;
  cluster_id: string;
  cpu_cores: number;
  cpu_mhz: number;
  memory_mib: number;
  migration_address: string;
  version: string;
  connection_state: HostConnectionState;
  registered_at: number;
  last_seen_at: number | null;
}

interface VmRow {
  id: string;
  name: string;
  memory_mib: number;
  vcpus: number;
  workload: string;
  seed: number;
  ip: string;
  disk_mib: number | null;
  vmx_path: string | null;
  host_id: string | null;
  power_state: PowerState;
  created_at: number;
}

interface TaskRow {
  id: string;
  op: string;
  target_type: TaskInfo['targetType'];
  target_id: string;
  target_name: string;
  state: TaskState;
  progress: number;
  description: string;
  error: string | null;
  result: string | null;
  queued_at: number;
  started_at: number | null;
  completed_at: number | null;
}

interface EventRow {
  id: number;
  time: number;
  type: string;
  severity: EventSeverity;
  message: string;
  host: string | null;
  vm: string | null;
  task_id: string | null;
}

export class Store {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly stmt: Statements;

  constructor(dataDir: string) {
    this.path = join(dataDir, DB_FILE);
    this.db = new Database(this.path);
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma('busy_timeout = 5000');
      migrate(this.db);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.stmt = prepareStatements(this.db);
  }

  /** Run fn in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  get open(): boolean {
    return this.db.open;
  }

  // clusters

  clusterByName(name: string): ClusterRecord | null {
    return this.stmt.clusterByName.get(name) ?? null;
  }

  cluster(id: string): ClusterRecord | null {
    return this.stmt.clusterById.get(id) ?? null;
  }

  clusters(): ClusterRecord[] {
    return this.stmt.clusters.all();
  }

  insertCluster(c: ClusterRecord): void {
    this.stmt.insertCluster.run(c);
  }

  // hosts

  host(id: string): HostRecord | null {
    const row = this.stmt.hostById.get(id);
    return row ? hostFromRow(row) : null;
  }

  hostByName(name: string): HostRecord | null {
    const row = this.stmt.hostByName.get(name);
    return row ? hostFromRow(row) : null;
  }

  hosts(): HostRecord[] {
    return this.stmt.hosts.all().map(hostFromRow);
  }

  upsertHost(h: HostRecord): void {
    this.stmt.upsertHost.run(h);
  }

  setHostConnection(id: string, state: HostConnectionState, lastSeenAt: number | null): void {
    this.stmt.hostConnection.run(state, lastSeenAt, id);
  }

  setHostSeen(id: string, at: number): void {
    this.stmt.hostSeen.run(at, id);
  }

  /** At start no host is connected yet; returns the names that the database said were. */
  disconnectAllHosts(): string[] {
    return this.stmt.disconnectAllHosts.all().map((r) => r.name);
  }

  // vms

  vm(id: string): VmRecord | null {
    const row = this.stmt.vmById.get(id);
    return row ? vmFromRow(row) : null;
  }

  vmByName(name: string): VmRecord | null {
    const row = this.stmt.vmByName.get(name);
    return row ? vmFromRow(row) : null;
  }

  vms(): VmRecord[] {
    return this.stmt.vms.all().map(vmFromRow);
  }

  vmsOnHost(hostId: string): VmRecord[] {
    return this.stmt.vmsOnHost.all(hostId).map(vmFromRow);
  }

  vmIps(): Set<string> {
    return new Set(this.stmt.vmIps.all().map((r) => r.ip));
  }

  insertVm(vm: VmRecord): void {
    const c = vm.config;
    this.stmt.insertVm.run({
      id: c.id,
      name: c.name,
      memoryMiB: c.memoryMiB,
      vcpus: c.vcpus,
      workload: JSON.stringify(c.workload),
      seed: c.seed,
      ip: c.ip,
      diskMiB: c.diskMiB ?? null,
      vmxPath: vm.vmxPath,
      hostId: vm.hostId,
      powerState: vm.powerState,
      createdAt: vm.createdAt,
    });
  }

  updateVm(id: string, hostId: string | null, powerState: PowerState): void {
    this.stmt.updateVm.run({ id, hostId, powerState });
  }

  deleteVm(id: string): void {
    this.stmt.deleteVm.run(id);
  }

  // tasks

  upsertTask(t: TaskInfo): void {
    this.stmt.upsertTask.run({
      ...t,
      error: t.error === null ? null : JSON.stringify(t.error),
      result: t.result === undefined || t.result === null ? null : JSON.stringify(t.result),
    });
  }

  task(id: string): TaskInfo | null {
    const row = this.stmt.taskById.get(id);
    return row ? taskFromRow(row) : null;
  }

  /** Newest first. */
  tasks(limit: number): TaskInfo[] {
    return this.stmt.tasks.all(limit).map(taskFromRow);
  }

  activeTasks(): TaskInfo[] {
    return this.stmt.activeTasks.all().map(taskFromRow);
  }

  pruneTasks(keep: number): number {
    return this.stmt.pruneTasks.run(keep).changes;
  }

  // events

  insertEvent(e: Omit<EventInfo, 'id'>): number {
    return Number(this.stmt.insertEvent.run(e).lastInsertRowid);
  }

  /** Oldest first, ids above `after`. */
  events(after: number, limit: number): EventInfo[] {
    return this.stmt.events.all(after, limit).map(eventFromRow);
  }

  /** The newest `limit` events, oldest first. */
  latestEvents(limit: number): EventInfo[] {
    return this.stmt.latestEvents.all(limit).map(eventFromRow);
  }

  pruneEvents(keep: number): number {
    return this.stmt.pruneEvents.run(keep).changes;
  }
}

function prepareStatements(db: Database.Database) {
  return {
    clusterByName: db.prepare<[string], ClusterRecord>('SELECT id, name, created_at AS createdAt FROM clusters WHERE name = ?'),
    clusterById: db.prepare<[string], ClusterRecord>('SELECT id, name, created_at AS createdAt FROM clusters WHERE id = ?'),
    clusters: db.prepare<[], ClusterRecord>('SELECT id, name, created_at AS createdAt FROM clusters ORDER BY created_at, name'),
    insertCluster: db.prepare('INSERT INTO clusters (id, name, created_at) VALUES (@id, @name, @createdAt)'),

    hostById: db.prepare<[string], HostRow>('SELECT * FROM hosts WHERE id = ?'),
    hostByName: db.prepare<[string], HostRow>('SELECT * FROM hosts WHERE name = ?'),
    hosts: db.prepare<[], HostRow>('SELECT * FROM hosts ORDER BY name'),
    upsertHost: db.prepare(`
      INSERT INTO hosts (id, name, cluster_id, cpu_cores, cpu_mhz, memory_mib, migration_address, version, connection_state, registered_at, last_seen_at)
      VALUES (@id, @name, @clusterId, @cpuCores, @cpuMhz, @memoryMiB, @migrationAddress, @version, @connectionState, @registeredAt, @lastSeenAt)
      ON CONFLICT(id) DO UPDATE SET
        cpu_cores = excluded.cpu_cores, cpu_mhz = excluded.cpu_mhz, memory_mib = excluded.memory_mib,
        migration_address = excluded.migration_address, version = excluded.version,
        connection_state = excluded.connection_state, last_seen_at = excluded.last_seen_at`),
    hostConnection: db.prepare('UPDATE hosts SET connection_state = ?, last_seen_at = ? WHERE id = ?'),
    hostSeen: db.prepare('UPDATE hosts SET last_seen_at = ? WHERE id = ?'),
    disconnectAllHosts: db.prepare<[], { name: string }>("UPDATE hosts SET connection_state = 'disconnected' WHERE connection_state = 'connected' RETURNING name"),

    vmById: db.prepare<[string], VmRow>('SELECT * FROM vms WHERE id = ?'),
    vmByName: db.prepare<[string], VmRow>('SELECT * FROM vms WHERE name = ?'),
    vms: db.prepare<[], VmRow>('SELECT * FROM vms ORDER BY name'),
    vmsOnHost: db.prepare<[string], VmRow>('SELECT * FROM vms WHERE host_id = ? ORDER BY name'),
    vmIps: db.prepare<[], { ip: string }>('SELECT ip FROM vms'),
    insertVm: db.prepare(`
      INSERT INTO vms (id, name, memory_mib, vcpus, workload, seed, ip, disk_mib, vmx_path, host_id, power_state, created_at)
      VALUES (@id, @name, @memoryMiB, @vcpus, @workload, @seed, @ip, @diskMiB, @vmxPath, @hostId, @powerState, @createdAt)`),
    updateVm: db.prepare('UPDATE vms SET host_id = @hostId, power_state = @powerState WHERE id = @id'),
    deleteVm: db.prepare('DELETE FROM vms WHERE id = ?'),

    upsertTask: db.prepare(`
      INSERT INTO tasks (id, op, target_type, target_id, target_name, state, progress, description, error, result, queued_at, started_at, completed_at)
      VALUES (@id, @op, @targetType, @targetId, @targetName, @state, @progress, @description, @error, @result, @queuedAt, @startedAt, @completedAt)
      ON CONFLICT(id) DO UPDATE SET
        state = excluded.state, progress = excluded.progress, description = excluded.description, error = excluded.error,
        result = excluded.result, started_at = excluded.started_at, completed_at = excluded.completed_at`),
    taskById: db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE id = ?'),
    tasks: db.prepare<[number], TaskRow>('SELECT * FROM tasks ORDER BY seq DESC LIMIT ?'),
    activeTasks: db.prepare<[], TaskRow>("SELECT * FROM tasks WHERE state IN ('queued', 'running') ORDER BY seq"),
    pruneTasks: db.prepare("DELETE FROM tasks WHERE state IN ('success', 'error') AND seq <= (SELECT MAX(seq) FROM tasks) - ?"),

    insertEvent: db.prepare('INSERT INTO events (time, type, severity, message, host, vm, task_id) VALUES (@time, @type, @severity, @message, @host, @vm, @taskId)'),
    events: db.prepare<[number, number], EventRow>('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?'),
    latestEvents: db.prepare<[number], EventRow>('SELECT * FROM (SELECT * FROM events ORDER BY id DESC LIMIT ?) ORDER BY id'),
    pruneEvents: db.prepare('DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?'),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

function hostFromRow(r: HostRow): HostRecord {
  return {
    id: r.id,
    name: r.name,
    clusterId: r.cluster_id,
    cpuCores: r.cpu_cores,
    cpuMhz: r.cpu_mhz,
    memoryMiB: r.memory_mib,
    migrationAddress: r.migration_address,
    version: r.version,
    connectionState: r.connection_state,
    registeredAt: r.registered_at,
    lastSeenAt: r.last_seen_at,
  };
}

function vmFromRow(r: VmRow): VmRecord {
  return {
    config: {
      id: r.id,
      name: r.name,
      memoryMiB: r.memory_mib,
      vcpus: r.vcpus,
      workload: JSON.parse(r.workload) as WorkloadSpec,
      seed: r.seed,
      ip: r.ip,
      ...(r.disk_mib !== null ? { diskMiB: r.disk_mib } : {}),
    },
    hostId: r.host_id,
    powerState: r.power_state,
    createdAt: r.created_at,
    vmxPath: r.vmx_path,
  };
}

function eventFromRow(r: EventRow): EventInfo {
  return { id: r.id, time: r.time, type: r.type, severity: r.severity, message: r.message, host: r.host, vm: r.vm, taskId: r.task_id };
}

function taskFromRow(r: TaskRow): TaskInfo {
  return {
    id: r.id,
    op: r.op,
    targetType: r.target_type,
    targetId: r.target_id,
    targetName: r.target_name,
    state: r.state,
    progress: r.progress,
    description: r.description,
    error: r.error === null ? null : (JSON.parse(r.error) as ErrorBody),
    result: r.result === null ? null : (JSON.parse(r.result) as unknown),
    queuedAt: r.queued_at,
    startedAt: r.started_at,
    completedAt: r.completed_at,
  };
}
