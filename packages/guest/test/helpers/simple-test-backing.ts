/**
 * The tests' simple MmuBacking: plain SharedArrayBuffers, machine pages handed out sequentially
 * on fault and never reused, a Map as swap. Not the VMkernel's allocator: just enough VMkernel
 * for the guest SDK to be tested on its own.
 */
import { Bitmap, EsxError, PAGE_SIZE } from '@esxemu/shared';
import {
  CTL_DIRTY_LOG,
  CTL_WORDS,
  GuestMemory,
  PF_COW,
  PF_SWAPPED,
  PMAP_NONE,
  Registers,
  type GuestContext,
  type MmuBacking,
  type VirtualNic,
} from '../../src/index.js';

export class SimpleTestBacking implements MmuBacking {
  readonly machine: Uint8Array;
  readonly pmap: Int32Array;
  readonly flags: Uint8Array;
  readonly dirty: Bitmap;
  readonly accessed: Bitmap;
  readonly control: Int32Array;
  readonly machinePages: number;
  /** Machine pages handed out so far (the next one to hand out). */
  allocated = 0;
  faults = 0;
  cowBreaks = 0;
  private readonly swap = new Map<number, Uint8Array>();

  constructor(guestPages: number, machinePages = guestPages, dirty?: Bitmap) {
    this.machinePages = machinePages;
    this.machine = new Uint8Array(new SharedArrayBuffer(machinePages * PAGE_SIZE));
    this.pmap = new Int32Array(new SharedArrayBuffer(guestPages * 4)).fill(PMAP_NONE);
    this.flags = new Uint8Array(new SharedArrayBuffer(guestPages));
    this.dirty = dirty ?? new Bitmap(guestPages);
    this.accessed = new Bitmap(guestPages);
    this.control = new Int32Array(new SharedArrayBuffer(CTL_WORDS * 4));
  }

  private allocate(): number {
    if (this.allocated >= this.machinePages) {
      throw new EsxError('INSUFFICIENT_RESOURCES', `test backing out of machine pages (${this.machinePages})`);
    }
    return this.allocated++;
  }

  fault(gpn: number): number {
    this.faults++;
    const mpn = this.allocate();
    const saved = this.swap.get(gpn);
    if (saved) {
      this.machine.set(saved, mpn * PAGE_SIZE);
      this.swap.delete(gpn);
      this.flags[gpn] &= ~PF_SWAPPED;
    }
    this.pmap[gpn] = mpn;
    return mpn;
  }

  breakCow(gpn: number): number {
    this.cowBreaks++;
    const old = this.pmap[gpn]!;
    const mpn = this.allocate();
    this.machine.copyWithin(mpn * PAGE_SIZE, old * PAGE_SIZE, (old + 1) * PAGE_SIZE);
    this.pmap[gpn] = mpn;
    this.flags[gpn] &= ~PF_COW;
    return mpn;
  }

  /** Map `dst` onto `src`'s machine page, both copy-on-write (what page sharing does). */
  share(src: number, dst: number): void {
    this.pmap[dst] = this.pmap[src]!;
    this.flags[src] |= PF_COW;
    this.flags[dst] |= PF_COW;
  }

  /** Move a present page's contents to swap and unmap it. */
  swapOut(gpn: number): void {
    const mpn = this.pmap[gpn]!;
    if (mpn === PMAP_NONE) throw new Error(`page ${gpn} is not present`);
    this.swap.set(gpn, this.machine.slice(mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE));
    this.machine.fill(0xee, mpn * PAGE_SIZE, (mpn + 1) * PAGE_SIZE); // the freed frame now holds garbage
    this.pmap[gpn] = PMAP_NONE;
    this.flags[gpn] |= PF_SWAPPED;
  }

  setDirtyLogging(on: boolean): void {
    Atomics.store(this.control, CTL_DIRTY_LOG, on ? 1 : 0);
  }
}

export interface TestGuest {
  backing: SimpleTestBacking;
  mem: GuestMemory;
  regs: Registers;
  ctx: GuestContext;
}

export function makeGuest(guestPages: number, opts: { machinePages?: number; nic?: VirtualNic; dirty?: Bitmap } = {}): TestGuest {
  const backing = new SimpleTestBacking(guestPages, opts.machinePages ?? guestPages, opts.dirty);
  const mem = new GuestMemory(backing);
  const regs = new Registers();
  return { backing, mem, regs, ctx: { mem, regs, nic: opts.nic ?? null } };
}

/** Copy every present page of `from` into `to` (through the MMUs) and return how many. */
export function copyPresentPages(from: TestGuest, to: TestGuest, pages?: Iterable<number>): number {
  let n = 0;
  for (const gpn of pages ?? range(from.mem.pages)) {
    if (!from.mem.present(gpn)) continue;
    to.mem.write(gpn * PAGE_SIZE, from.mem.read(gpn * PAGE_SIZE, PAGE_SIZE));
    n++;
  }
  return n;
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** A copy of every guest page as the guest sees it (through GuestMemory.read). */
export function snapshotPages(mem: GuestMemory): Uint8Array[] {
  return range(mem.pages).map((gpn) => mem.read(gpn * PAGE_SIZE, PAGE_SIZE));
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
