/**
 * Unit attention conditions of one logical unit, queued per I_T nexus (SAM-5 5.14, SPC-4
 * 5.14). The oldest pending condition is reported first and cleared when reported; a reset-class
 * condition (ASC 29h) replaces whatever was pending, as the reset makes it moot. Each queue
 * holds at most MAX_PER_NEXUS conditions (a repeated condition is not queued twice; when full,
 * the oldest is dropped); at most MAX_NEXUSES nexuses are remembered (the least recently
 * touched is forgotten).
 */
import type { AscPair } from './sense.js';

export const MAX_UA_PER_NEXUS = 16;
export const MAX_UA_NEXUSES = 4096;

export class UnitAttentions {
  private readonly queues = new Map<string, AscPair[]>();

  /**
   * Establish a condition for one nexus. A reset-class condition (ASC 29h: power on, reset,
   * I_T nexus loss) supersedes everything pending before it.
   */
  establish(nexusKey: string, asc: AscPair): void {
    const q = asc[0] === 0x29 ? [] : (this.queues.get(nexusKey) ?? []);
    this.queues.delete(nexusKey); // re-insert: most recently touched last
    if (!q.some((c) => c[0] === asc[0] && c[1] === asc[1])) {
      q.push(asc);
      if (q.length > MAX_UA_PER_NEXUS) q.shift();
    }
    this.queues.set(nexusKey, q);
    while (this.queues.size > MAX_UA_NEXUSES) this.queues.delete(this.queues.keys().next().value!);
  }

  /** Establish a condition for every nexus in `keys` except `except`. */
  establishFor(keys: Iterable<string>, asc: AscPair, except?: string): void {
    for (const k of keys) if (k !== except) this.establish(k, asc);
  }

  /** Report (and clear) the oldest pending condition of a nexus. */
  take(nexusKey: string): AscPair | undefined {
    const q = this.queues.get(nexusKey);
    if (!q || q.length === 0) return undefined;
    const c = q.shift();
    if (q.length === 0) this.queues.delete(nexusKey);
    return c;
  }

  peek(nexusKey: string): AscPair | undefined {
    return this.queues.get(nexusKey)?.[0];
  }

  /** Clear one specific condition (REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED). */
  clearCondition(nexusKey: string, asc: AscPair): void {
    const q = this.queues.get(nexusKey);
    if (!q) return;
    const i = q.findIndex((c) => c[0] === asc[0] && c[1] === asc[1]);
    if (i >= 0) q.splice(i, 1);
    if (q.length === 0) this.queues.delete(nexusKey);
  }

  /** Drop everything pending for a nexus (e.g. replaced by a newer condition). */
  clear(nexusKey: string): void {
    this.queues.delete(nexusKey);
  }

  pending(nexusKey: string): readonly AscPair[] {
    return this.queues.get(nexusKey) ?? [];
  }
}
