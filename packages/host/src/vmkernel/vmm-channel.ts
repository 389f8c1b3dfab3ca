/**
 * The VMkernel's end of one VMM worker: starts the worker thread, sends it requests and pairs
 * each answer with its request (every request bounded in time), hands the worker's unsolicited
 * events to the VM, and reports the worker's death once. See ../vmm/messages.ts for the set.
 */
import { Worker } from 'node:worker_threads';
import { EsxError, toEsxError } from '@esxemu/shared';
import type { VmmEvent, VmmInit, VmmRequestType, VmmResults, VmmToVmkernel } from '../vmm/messages.js';

const WORKER_URL = new URL('../vmm/worker.js', import.meta.url);

/** Heap bound of a VMM worker (guest memory is in shared buffers, not on this heap). */
const WORKER_HEAP_MIB = 128;

interface PendingRequest {
  resolve(v: unknown): void;
  reject(e: EsxError): void;
  timer: NodeJS.Timeout;
}

export interface VmmChannelHandlers {
  onEvent(e: VmmEvent): void;
  /** The worker threw or exited while not being terminated by us. Called at most once. */
  onGone(err: EsxError): void;
}

export class VmmChannel {
  private readonly worker: Worker;
  private readonly pending = new Map<number, PendingRequest>();
  private nextReqId = 1;
  private gone = false;
  private terminating = false;

  constructor(
    init: VmmInit,
    private readonly name: string,
    private readonly requestTimeoutMs: number,
    private readonly h: VmmChannelHandlers,
  ) {
    const w = new Worker(WORKER_URL, { workerData: init, transferList: init.disk ? [init.disk.port] : [], execArgv: workerExecArgv(), resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MIB } });
    this.worker = w;
    w.on('message', (m: VmmToVmkernel) => this.onMessage(m));
    w.on('error', (err) => this.onGone(`threw: ${toEsxError(err).message}`));
    w.on('exit', (code) => this.onGone(`exited with code ${code}`));
  }

  /** The worker's thread id (its "world" in vmkernel.log). */
  get threadId(): number {
    return this.worker.threadId;
  }

  request<T extends VmmRequestType>(type: T, extra: Record<string, unknown> = {}): Promise<VmmResults[T]> {
    if (this.gone || this.terminating) return Promise.reject(new EsxError('INVALID_STATE', `the VMM of ${this.name} is gone`));
    const reqId = this.nextReqId++;
    return new Promise<VmmResults[T]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(reqId);
        reject(new EsxError('TIMEOUT', `VMM of ${this.name} did not answer '${type}' within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.pending.set(reqId, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.worker.postMessage({ type, reqId, ...extra });
    });
  }

  private onMessage(m: VmmToVmkernel): void {
    if (m.type === 'ok' || m.type === 'notAllowed' || m.type === 'failed') {
      const p = this.pending.get(m.reqId);
      if (!p) return;
      this.pending.delete(m.reqId);
      clearTimeout(p.timer);
      if (m.type === 'ok') p.resolve(m.result);
      else if (m.type === 'notAllowed') p.reject(new EsxError('INVALID_STATE', `VM ${this.name}: ${m.reason}`));
      else p.reject(EsxError.fromBody(m.error));
      return;
    }
    this.h.onEvent(m);
  }

  private onGone(how: string): void {
    if (this.gone) return;
    this.gone = true;
    const err = new EsxError('VM_CRASHED', `the VMM worker ${how}`);
    this.failPending(err);
    if (!this.terminating) this.h.onGone(err);
  }

  failPending(err: EsxError): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.pending.delete(id);
    }
  }

  /** Fault injection: kill the worker as a crash would (onGone is called). */
  async terminateAsCrash(): Promise<void> {
    await this.worker.terminate();
  }

  /** Terminate the worker; true once it is shown gone, false if it did not go within the bound. */
  async terminate(timeoutMs: number): Promise<boolean> {
    this.terminating = true;
    this.failPending(new EsxError('INVALID_STATE', `the VMM of ${this.name} is being stopped`));
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([
      this.worker.terminate().then(
        () => true,
        () => true,
      ),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return gone;
  }
}

/**
 * The VMM worker's node flags: the host's, minus module loader hooks (--import, --loader,
 * --require): a test runner's or profiler's hooks have no business in every VM's thread.
 */
function workerExecArgv(): string[] {
  const out: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (/^--(import|loader|experimental-loader|require)$/.test(a) || a === '-r') {
      i++;
      continue;
    }
    if (/^--(import|loader|experimental-loader|require)=/.test(a)) continue;
    out.push(a);
  }
  return out;
}
