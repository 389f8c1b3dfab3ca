/**
 * Requests in flight to one host: ids, a bounded map, a timeout per request. Every entry ends
 * exactly once: answered, timed out (TIMEOUT) or failed with the link (failAll).
 */
import { EsxError } from '@esxemu/shared';

interface Pending {
  op: string;
  resolve(value: unknown): void;
  reject(err: EsxError): void;
  timer: NodeJS.Timeout;
}

export class PendingRequests {
  private nextId = 1;
  private readonly map = new Map<number, Pending>();

  constructor(
    private readonly max: number,
    private readonly timeoutMs: number,
    private readonly peer: string,
  ) {}

  get size(): number {
    return this.map.size;
  }

  /** Allocate an id; the promise settles when the answer (or failure) comes. */
  add(op: string, timeoutMs = this.timeoutMs): { id: number; promise: Promise<unknown> } {
    if (this.map.size >= this.max) {
      throw new EsxError('INSUFFICIENT_RESOURCES', `${this.max} requests already in flight to host ${this.peer}; retry later`);
    }
    const id = this.nextId++;
    const promise = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.map.delete(id);
        reject(new EsxError('TIMEOUT', `host ${this.peer} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.map.set(id, { op, resolve, reject, timer });
    });
    return { id, promise };
  }

  /** The op of a pending request, or null if the id is unknown (late or bogus answer). */
  op(id: number): string | null {
    return this.map.get(id)?.op ?? null;
  }

  resolve(id: number, value: unknown): boolean {
    const p = this.take(id);
    p?.resolve(value);
    return p !== null;
  }

  reject(id: number, err: EsxError): boolean {
    const p = this.take(id);
    p?.reject(err);
    return p !== null;
  }

  failAll(err: EsxError): void {
    const all = [...this.map.values()];
    this.map.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  private take(id: number): Pending | null {
    const p = this.map.get(id);
    if (!p) return null;
    this.map.delete(id);
    clearTimeout(p.timer);
    return p;
  }
}
