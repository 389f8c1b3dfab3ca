/**
 * The session's command window (RFC 7143 4.2.2.1): commands are delivered to execution in
 * CmdSN order; the target advertises ExpCmdSN (next expected) and MaxCmdSN (last accepted).
 *
 * - immediate commands are delivered at once and do not advance ExpCmdSN;
 * - CmdSN == ExpCmdSN: delivered, ExpCmdSN advances, then any queued successors;
 * - ExpCmdSN < CmdSN <= MaxCmdSN: held until the gap fills (bounded by the window itself);
 * - CmdSN outside [ExpCmdSN, MaxCmdSN]: silently ignored, as the RFC requires.
 *
 * MaxCmdSN = ExpCmdSN + (queue depth - active tasks) - 1, never moving backwards, so an
 * initiator can never have more than `depth` commands waiting on us.
 */
import { snAdd, snLessThan } from '../transport/pdu.js';

export type CmdSnVerdict = 'delivered' | 'queued' | 'tooLow' | 'tooHigh' | 'duplicate';

export class CmdSnWindow {
  private exp: number;
  private max: number;
  private readonly depth: number;
  private readonly held = new Map<number, () => void>();

  constructor(initialCmdSN: number, depth: number) {
    this.depth = Math.max(1, depth);
    this.exp = initialCmdSN >>> 0;
    this.max = snAdd(this.exp, this.depth - 1);
  }

  get expCmdSN(): number {
    return this.exp;
  }

  /** MaxCmdSN to advertise, given the number of tasks the session is working on. */
  maxCmdSN(activeTasks: number): number {
    const free = Math.max(0, this.depth - activeTasks);
    const candidate = snAdd(this.exp, free - 1);
    if (snLessThan(this.max, candidate)) this.max = candidate;
    return this.max;
  }

  get heldCount(): number {
    return this.held.size;
  }

  /** Deliver `run` in CmdSN order (see the class comment). `run` is called synchronously when due. */
  submit(cmdSN: number, immediate: boolean, run: () => void): CmdSnVerdict {
    if (immediate) {
      run();
      return 'delivered';
    }
    cmdSN >>>= 0;
    if (snLessThan(cmdSN, this.exp)) return 'tooLow';
    if (snLessThan(this.max, cmdSN)) return 'tooHigh';
    if (cmdSN !== this.exp) {
      if (this.held.has(cmdSN)) return 'duplicate';
      this.held.set(cmdSN, run);
      return 'queued';
    }
    this.exp = snAdd(this.exp, 1);
    run();
    for (let next = this.held.get(this.exp); next; next = this.held.get(this.exp)) {
      this.held.delete(this.exp);
      this.exp = snAdd(this.exp, 1);
      next();
    }
    return 'delivered';
  }

  /** Count a CmdSN as used without delivering anything (a command discarded on a digest error). */
  consume(cmdSN: number): void {
    this.submit(cmdSN, false, () => undefined);
  }

  /** Drop every held command (the session is closing). */
  clear(): void {
    this.held.clear();
  }
}
