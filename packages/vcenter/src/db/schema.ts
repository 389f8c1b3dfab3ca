/**
 * The SQLite schema of the inventory, versioned with PRAGMA user_version: MIGRATIONS[i] takes
 * the database from version i to i + 1, each in one transaction. A database written by a newer
 * vcenter (user_version beyond what this build knows) is refused rather than guessed at.
 */
import type Database from 'better-sqlite3';
import { EsxError } from '@esxemu/shared';

const MIGRATIONS: readonly string[] = [
  // 0 -> 1: clusters, hosts, VMs, tasks, events.
  `
  CREATE TABLE clusters (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE hosts (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    cluster_id         TEXT NOT NULL REFERENCES clusters(id),
    cpu_cores          INTEGER NOT NULL,
    cpu_mhz            INTEGER NOT NULL,
    memory_mib         INTEGER NOT NULL,
    migration_address  TEXT NOT NULL,
    version            TEXT NOT NULL,
    connection_state   TEXT NOT NULL CHECK (connection_state IN ('connected', 'disconnected')),
    registered_at      INTEGER NOT NULL,
    last_seen_at       INTEGER
  );
  CREATE TABLE vms (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    memory_mib   INTEGER NOT NULL,
    vcpus        INTEGER NOT NULL,
    workload     TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    ip           TEXT NOT NULL UNIQUE,
    host_id      TEXT REFERENCES hosts(id),
    power_state  TEXT NOT NULL CHECK (power_state IN ('poweredOn', 'poweredOff', 'suspended')),
    created_at   INTEGER NOT NULL
  );
  CREATE INDEX vms_host ON vms(host_id);
  CREATE TABLE tasks (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    op            TEXT NOT NULL,
    target_type   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    target_name   TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'success', 'error')),
    progress      INTEGER NOT NULL,
    description   TEXT NOT NULL,
    error         TEXT,
    result        TEXT,
    queued_at     INTEGER NOT NULL,
    started_at    INTEGER,
    completed_at  INTEGER
  );
  CREATE INDEX tasks_state ON tasks(state);
  CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time      INTEGER NOT NULL,
    type      TEXT NOT NULL,
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    message   TEXT NOT NULL,
    host      TEXT,
    vm        TEXT,
    task_id   TEXT
  );
  `,
  // 1 -> 2: a VM's virtual disk size (NULL: no disk).
  `
  ALTER TABLE vms ADD COLUMN disk_mib INTEGER CHECK (disk_mib IS NULL OR disk_mib > 0);
  `,
  // 2 -> 3: where the VM's files are on the datastore (NULL: nowhere).
  `
  ALTER TABLE vms ADD COLUMN vmx_path TEXT;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Bring the database to SCHEMA_VERSION; returns the version it was at. */
export function migrate(db: Database.Database): number {
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > SCHEMA_VERSION) {
    throw new EsxError('INVALID_STATE', `vcenter.db has schema version ${from}, newer than this vcenter understands (${SCHEMA_VERSION}); use a newer esxemu or another data directory`);
  }
  for (let v = from; v < SCHEMA_VERSION; v++) {
    const step = db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    });
    step();
  }
  return from;
}
