/**
 * A small client of vcenter's public API (the one the CLI and the web client use). Every call
 * is bounded by a timeout; errors come back as EsxError with the server's stable code.
 */
import WebSocket from 'ws';
import {
  EsxError,
  STREAM_PATH,
  type ClusterInfo,
  type CreateVmRequest,
  type EventInfo,
  type HostInfo,
  type RegisterVmRequest,
  type StreamMessage,
  type TaskInfo,
  type VmInfo,
} from '@esxemu/shared';

export interface ApiClientOptions {
  /** http://host:port of vcenter */
  url: string;
  token: string;
  timeoutMs?: number;
}

export class ApiClient {
  readonly url: string;
  private readonly token: string;
  private readonly timeoutMs: number;

  constructor(opts: ApiClientOptions) {
    this.url = opts.url.replace(/\/+$/, '').replace(/^ws(s?):/, 'http$1:');
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.url + path, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      if (e.name === 'TimeoutError') throw new EsxError('TIMEOUT', `vcenter at ${this.url} did not answer ${method} ${path} within ${this.timeoutMs} ms`);
      throw new EsxError('VCENTER_UNREACHABLE', `cannot reach vcenter at ${this.url}: ${e.cause?.code ?? e.message}. Is the cluster up? (esxemu cluster status)`);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new EsxError('PROTOCOL_ERROR', `vcenter answered ${res.status} with a body that is not JSON`);
      }
    }
    if (!res.ok) {
      const errBody = (parsed as { error?: unknown } | undefined)?.error ?? parsed ?? { code: 'INTERNAL', message: `HTTP ${res.status}` };
      throw EsxError.fromBody(errBody);
    }
    return parsed as T;
  }

  health(): Promise<{ ok: boolean; version: string }> {
    return this.request('GET', '/api/health');
  }
  clusters(): Promise<ClusterInfo[]> {
    return this.request('GET', '/api/clusters');
  }
  hosts(): Promise<HostInfo[]> {
    return this.request('GET', '/api/hosts');
  }
  host(name: string): Promise<HostInfo> {
    return this.request('GET', `/api/hosts/${encodeURIComponent(name)}`);
  }
  vms(): Promise<VmInfo[]> {
    return this.request('GET', '/api/vms');
  }
  vm(name: string): Promise<VmInfo> {
    return this.request('GET', `/api/vms/${encodeURIComponent(name)}`);
  }
  createVm(req: CreateVmRequest): Promise<VmInfo> {
    return this.request('POST', '/api/vms', req);
  }
  registerVm(req: RegisterVmRequest): Promise<VmInfo> {
    return this.request('POST', '/api/vms/register', req);
  }
  deleteVm(name: string): Promise<{ deleted: boolean }> {
    return this.request('DELETE', `/api/vms/${encodeURIComponent(name)}`);
  }
  powerOn(name: string, host?: string): Promise<TaskInfo> {
    return this.request('POST', `/api/vms/${encodeURIComponent(name)}/power-on`, host ? { host } : {});
  }
  powerOff(name: string): Promise<TaskInfo> {
    return this.request('POST', `/api/vms/${encodeURIComponent(name)}/power-off`, {});
  }
  reset(name: string): Promise<TaskInfo> {
    return this.request('POST', `/api/vms/${encodeURIComponent(name)}/reset`, {});
  }
  tasks(limit = 50): Promise<TaskInfo[]> {
    return this.request('GET', `/api/tasks?limit=${limit}`);
  }
  task(id: string): Promise<TaskInfo> {
    return this.request('GET', `/api/tasks/${encodeURIComponent(id)}`);
  }
  events(limit = 50, after?: number): Promise<EventInfo[]> {
    return this.request('GET', `/api/events?limit=${limit}${after !== undefined ? `&after=${after}` : ''}`);
  }

  /**
   * Wait until a task ends (success or error), polling with a bound. `onProgress` sees every
   * change. Resolves with the final TaskInfo; a task in error is returned, not thrown.
   */
  async waitTask(id: string, timeoutMs = 120_000, onProgress?: (t: TaskInfo) => void): Promise<TaskInfo> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const task = await this.task(id);
      const sig = `${task.state}:${task.progress}:${task.description}`;
      if (sig !== last) {
        last = sig;
        onProgress?.(task);
      }
      if (task.state === 'success' || task.state === 'error') return task;
      if (Date.now() > deadline) throw new EsxError('TIMEOUT', `task ${id} (${task.op}) still ${task.state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Open the event stream. Returns a close function. */
  stream(onMessage: (m: StreamMessage) => void, onClose?: (reason: string) => void): () => void {
    const ws = new WebSocket(this.url.replace(/^http/, 'ws') + STREAM_PATH, {
      headers: { authorization: `Bearer ${this.token}` },
      maxPayload: 1024 * 1024,
      handshakeTimeout: 10_000,
    });
    ws.on('message', (data) => {
      try {
        onMessage(JSON.parse(String(data)) as StreamMessage);
      } catch {
        /* ignore a frame that is not JSON */
      }
    });
    ws.on('error', (err) => onClose?.(err.message));
    ws.on('close', (code) => onClose?.(`closed (${code})`));
    return () => ws.close();
  }
}
