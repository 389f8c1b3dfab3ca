/**
 * Every session of the target process, by TSIH and by identity (InitiatorName + ISID + target):
 * allocates TSIHs, finds the session a login reinstates, and the sessions task management must
 * reach across (LUN RESET and target resets affect every initiator of a target).
 */
import type { Session } from './session.js';

export class SessionRegistry {
  private readonly byTsih = new Map<number, Session>();
  private nextTsih = 1;
  readonly maxSessions: number;

  constructor(maxSessions: number) {
    this.maxSessions = Math.min(maxSessions, 0xfffe);
  }

  get size(): number {
    return this.byTsih.size;
  }

  /** A TSIH not in use (never 0), or null when the target is at its session limit. */
  allocateTsih(): number | null {
    if (this.byTsih.size >= this.maxSessions) return null;
    for (let i = 0; i < 0x10000; i++) {
      const t = this.nextTsih;
      this.nextTsih = this.nextTsih >= 0xffff ? 1 : this.nextTsih + 1;
      if (!this.byTsih.has(t)) return t;
    }
    return null;
  }

  add(s: Session): void {
    this.byTsih.set(s.tsih, s);
  }

  remove(s: Session): void {
    if (this.byTsih.get(s.tsih) === s) this.byTsih.delete(s.tsih);
  }

  get(tsih: number): Session | undefined {
    return this.byTsih.get(tsih);
  }

  /** The session with this identity (session reinstatement, RFC 7143 6.3.5). */
  findByIdentity(initiatorName: string, isid: Buffer, targetName: string | null): Session | undefined {
    for (const s of this.byTsih.values()) {
      if (s.initiatorName === initiatorName && s.isid.equals(isid) && (s.target?.name ?? null) === targetName) return s;
    }
    return undefined;
  }

  forTarget(name: string): Session[] {
    return [...this.byTsih.values()].filter((s) => s.target?.name === name);
  }

  all(): Session[] {
    return [...this.byTsih.values()];
  }
}
