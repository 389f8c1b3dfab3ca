/** Start a real vcenter on an ephemeral port in a temporary data directory, and call its API. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, waitFor, type TaskInfo } from '@esxemu/shared';
import { startVcenter, type VcenterOptions, type VcenterServer, type VcenterTuning } from '../../src/index.js';

/** Short intervals so the suite stays fast. */
export const FAST: Partial<VcenterOptions> = { heartbeatIntervalMs: 100, hostTimeoutMs: 1000, statsIntervalMs: 100 };
export const FAST_TUNING: Partial<VcenterTuning> = { helloTimeoutMs: 500, hostRequestTimeoutMs: 3000 };

interface Teardown {
  teardown(fn: () => unknown): void;
}

export function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'esxemu-vcenter-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface Fixture {
  vc: VcenterServer;
  dataDir: string;
  api: Api;
}

export async function startFixture(
  t: Teardown,
  opts: { dataDir?: string; options?: Partial<VcenterOptions>; tuning?: Partial<VcenterTuning> } = {},
): Promise<Fixture> {
  const dataDir = opts.dataDir ?? tempDir(t);
  const vc = await startVcenter(
    { dataDir, listenHost: '127.0.0.1', port: 0, logger: silentLogger(), ...FAST, ...opts.options },
    { ...FAST_TUNING, ...opts.tuning },
  );
  t.teardown(() => vc.close());
  return { vc, dataDir, api: new Api(vc.url, vc.token) };
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
}

export class Api {
  constructor(
    readonly url: string,
    readonly token: string | null,
  ) {}

  async call<T = any>(method: string, path: string, body?: unknown, token: string | null = this.token): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as T) : (null as T) };
  }

  get<T = any>(path: string): Promise<ApiResponse<T>> {
    return this.call<T>('GET', path);
  }

  post<T = any>(path: string, body?: unknown): Promise<ApiResponse<T>> {
    return this.call<T>('POST', path, body);
  }

  /** Poll a task until it has finished (bounded). */
  async finishedTask(id: string, timeoutMs = 5000): Promise<TaskInfo> {
    return waitFor(
      `task ${id} to finish`,
      async () => {
        const r = await this.get<TaskInfo>(`/api/tasks/${id}`);
        return r.body.state === 'success' || r.body.state === 'error' ? r.body : null;
      },
      timeoutMs,
      20,
    );
  }
}
