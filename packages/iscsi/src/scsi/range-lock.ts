/**
 * Exclusive locks on LBA extents. Every command that changes blocks (WRITE, WRITE SAME, UNMAP,
 * ORWRITE, COMPARE AND WRITE, ...) holds the lock on its extent while it runs, so COMPARE AND
 * WRITE's read, compare and write happen with no other write to those LBAs in between, and a
 * read-modify-write (ORWRITE, partial unmap) never interleaves with another write. Reads take
 * no lock. Waiters are served in arrival order among overlapping extents (no starvation); the
 * number of waiters is bounded by the task set.
 */

interface Held {
  lba: number;
  end: number;
}

interface Waiter extends Held {
  grant: () => void;
}

export class RangeLock {
  private readonly held = new Set<Held>();
  private waiters: Waiter[] = [];

  /** Lock [lba, lba+blocks); resolves with the release function. */
  acquire(lba: number, blocks: number): Promise<() => void> {
    const want: Held = { lba, end: lba + Math.max(1, blocks) };
    return new Promise((resolve) => {
      const grant = () => {
        this.held.add(want);
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.held.delete(want);
          this.pump();
        });
      };
      if (this.free(want, this.waiters.length)) grant();
      else this.waiters.push({ ...want, grant });
    });
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** No held extent and no earlier waiter (before index `upTo`) overlaps `r`. */
  private free(r: Held, upTo: number): boolean {
    for (const h of this.held) if (overlaps(h, r)) return false;
    for (let i = 0; i < upTo; i++) if (overlaps(this.waiters[i]!, r)) return false;
    return true;
  }

  private pump(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      // a waiter may go only if nothing held and no waiter still ahead of it overlaps
      let blocked = false;
      for (const h of this.held) if (overlaps(h, w)) blocked = true;
      for (const s of still) if (overlaps(s, w)) blocked = true;
      if (blocked) still.push(w);
      else w.grant();
    }
    this.waiters = still;
  }
}

function overlaps(a: Held, b: Held): boolean {
  return a.lba < b.end && b.lba < a.end;
}
