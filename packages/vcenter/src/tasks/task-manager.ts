/**
 * Tasks, after govmomi's simulator (task.go): a long operation returns a TaskInfo at once and
 * moves queued -> running -> success | error, every step persisted and streamed through the
 * registry. Tasks on the same target (one VM) run one after the other in submission order, at
 * most `maxRunning` run at once, at most `maxActive` wait or run (beyond that, new tasks are
 * refused). Tasks that were queued or running when vcenter died end as TASK_INTERRUPTED at the
 * next start; a graceful close interrupts them the same way.
 */
import { randomUUID } from 'node:crypto';
import type { ErrorBody, Logger, TaskInfo } from '@esxemu/shared';
import { EsxError, toEsxError } from '@esxemu/shared';
import type { NewEvent } from '../events/event-types.js';
import type { Registry } from '../inventory/registry.js';

export interface TaskContext {
  readonly taskId: string;
  /** Report progress (0..100) and the current step; persisted and streamed. */
  progress(percent: number, description: string): void;
}

export interface TaskSpec {
  /** e.g. vm.powerOn */
  op: string;
  targetType: TaskInfo['targetType'];
  targetId: string;
  targetName: string;
  description: string;
  /** The work; its resolved value becomes the task result, a throw its error. */
  run(ctx: TaskContext): Promise<unknown>;
}

export interface TaskLimits {
  maxRunning: number;
  maxActive: number;
}

interface Entry {
  info: TaskInfo;
  spec: TaskSpec;
  finished: boolean;
}

export class TaskManager {
  private readonly queued: Entry[] = [];
  private readonly running = new Map<string, Entry>();
  private readonly busyTargets = new Set<string>();
  private stopped = false;

  constructor(
    private readonly registry: Registry,
    private readonly logger: Logger,
    private readonly limits: TaskLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Queue a task; returns its TaskInfo in state queued. */
  submit(spec: TaskSpec): TaskInfo {
    if (this.stopped) throw new EsxError('INVALID_STATE', 'vcenter is shutting down');
    if (this.queued.length + this.running.size >= this.limits.maxActive) {
      throw new EsxError('INSUFFICIENT_RESOURCES', `too many tasks in progress (${this.limits.maxActive}); retry when some have finished`);
    }
    const info: TaskInfo = {
      id: randomUUID(),
      op: spec.op,
      targetType: spec.targetType,
      targetId: spec.targetId,
      targetName: spec.targetName,
      state: 'queued',
      progress: 0,
      description: spec.description,
      error: null,
      result: null,
      queuedAt: this.now(),
      startedAt: null,
      completedAt: null,
    };
    const entry: Entry = { info, spec, finished: false };
    this.registry.commit([{ kind: 'task', task: { ...info } }]);
    this.queued.push(entry);
    this.logger.info({ task: info.id, op: info.op, target: info.targetName }, 'task queued');
    queueMicrotask(() => this.pump());
    return { ...info };
  }

  /** Whether a task on this target is queued or running. */
  hasActiveTask(targetType: TaskInfo['targetType'], targetId: string): boolean {
    const key = `${targetType}:${targetId}`;
    return this.busyTargets.has(key) || this.queued.some((e) => targetKey(e.info) === key);
  }

  /**
   * At start: tasks the database says were queued or running belong to a vcenter that died.
   * They end as TASK_INTERRUPTED, each with a TaskFailed event. Returns how many.
   */
  recoverInterrupted(): number {
    const active = this.registry.store.activeTasks();
    if (active.length === 0) return 0;
    const at = this.now();
    const error: ErrorBody = { code: 'TASK_INTERRUPTED', message: 'vcenter stopped before this task finished; check the target and retry' };
    const tasks = active.map((t) => ({ ...t, state: 'error' as const, error, completedAt: at, description: `interrupted (was ${t.state})` }));
    this.registry.commit(
      tasks.map((task) => ({ kind: 'task' as const, task })),
      tasks.map((t) => this.failureEvent(t, error)),
    );
    this.logger.warn({ tasks: tasks.map((t) => t.id) }, 'tasks interrupted by the previous vcenter stop marked TASK_INTERRUPTED');
    return tasks.length;
  }

  /** Stop: every queued or running task ends as TASK_INTERRUPTED; late completions are ignored. */
  shutdown(): void {
    if (this.stopped) return;
    this.stopped = true;
    const entries = [...this.running.values(), ...this.queued];
    this.queued.length = 0;
    for (const e of entries) {
      this.finish(e, { code: 'TASK_INTERRUPTED', message: 'vcenter stopped before this task finished; check the target and retry' }, null);
    }
  }

  private pump(): void {
    if (this.stopped) return;
    for (let i = 0; i < this.queued.length && this.running.size < this.limits.maxRunning; ) {
      const e = this.queued[i]!;
      const key = targetKey(e.info);
      if (this.busyTargets.has(key)) {
        i++;
        continue;
      }
      this.queued.splice(i, 1);
      this.busyTargets.add(key);
      this.running.set(e.info.id, e);
      void this.run(e);
    }
  }

  private async run(e: Entry): Promise<void> {
    this.update(e, { state: 'running', startedAt: this.now() });
    this.logger.info({ task: e.info.id, op: e.info.op, target: e.info.targetName }, 'task running');
    const ctx: TaskContext = {
      taskId: e.info.id,
      progress: (percent, description) => {
        if (e.finished) return;
        this.update(e, { progress: Math.max(0, Math.min(99, Math.round(percent))), description });
      },
    };
    let result: unknown = null;
    let error: ErrorBody | null = null;
    try {
      result = (await e.spec.run(ctx)) ?? null;
    } catch (err) {
      error = toEsxError(err).toJSON();
    }
    this.finish(e, error, result);
  }

  private finish(e: Entry, error: ErrorBody | null, result: unknown): void {
    if (e.finished) return;
    e.finished = true;
    this.running.delete(e.info.id);
    this.busyTargets.delete(targetKey(e.info));
    const patch: Partial<TaskInfo> = error
      ? { state: 'error', error, completedAt: this.now() }
      : { state: 'success', progress: 100, result, completedAt: this.now(), description: 'done' };
    Object.assign(e.info, patch);
    try {
      this.registry.commit([{ kind: 'task', task: { ...e.info } }], error ? [this.failureEvent(e.info, error)] : []);
    } catch (err) {
      this.logger.error({ err, task: e.info.id }, 'could not record task completion');
    }
    if (error) this.logger.warn({ task: e.info.id, op: e.info.op, target: e.info.targetName, error }, 'task failed');
    else this.logger.info({ task: e.info.id, op: e.info.op, target: e.info.targetName }, 'task succeeded');
    queueMicrotask(() => this.pump());
  }

  private update(e: Entry, patch: Partial<TaskInfo>): void {
    Object.assign(e.info, patch);
    try {
      this.registry.commit([{ kind: 'task', task: { ...e.info } }]);
    } catch (err) {
      this.logger.error({ err, task: e.info.id }, 'could not record task update');
    }
  }

  private failureEvent(t: TaskInfo, error: ErrorBody): NewEvent {
    return {
      type: 'TaskFailed',
      message: `task ${t.op} on ${t.targetType} ${t.targetName} failed: ${error.code}: ${error.message}`,
      vm: t.targetType === 'vm' ? t.targetName : null,
      host: t.targetType === 'host' ? t.targetName : null,
      taskId: t.id,
    };
  }
}

function targetKey(t: TaskInfo): string {
  return `${t.targetType}:${t.targetId}`;
}
