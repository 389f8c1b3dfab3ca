/** Follow a task to its end: a progress bar on a terminal, plain lines otherwise. */
import cliProgress from 'cli-progress';
import { EsxError, type TaskInfo } from '@esxemu/shared';
import type { ApiClient } from '../client/api-client.js';

export async function followTask(client: ApiClient, task: TaskInfo, opts: { json?: boolean; timeoutMs?: number }): Promise<TaskInfo> {
  const tty = process.stderr.isTTY && !opts.json;
  const bar = tty ? new cliProgress.SingleBar({ format: `${task.op} ${task.targetName} [{bar}] {percentage}% {state} {description}`, stream: process.stderr, hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  bar?.start(100, task.progress, { state: task.state, description: task.description });
  try {
    const final = await client.waitTask(task.id, opts.timeoutMs ?? 120_000, (t) => {
      if (bar) bar.update(t.progress, { state: t.state, description: t.description });
      else if (!opts.json) process.stderr.write(`${t.op} ${t.targetName}: ${t.state} ${t.progress}% ${t.description}\n`);
    });
    bar?.update(final.progress, { state: final.state, description: final.description });
    return final;
  } finally {
    bar?.stop();
  }
}

/** Throw the task's own error if it failed. */
export function assertTaskSucceeded(t: TaskInfo): void {
  if (t.state === 'error') {
    const e = t.error ?? { code: 'INTERNAL' as const, message: 'task failed' };
    throw new EsxError(e.code, `${t.op} ${t.targetName} failed: ${e.message}`);
  }
}
