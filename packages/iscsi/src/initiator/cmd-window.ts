/**
 * The command window of a session (RFC 7143 4.2.2.1): the target says which CmdSNs it accepts,
 * ExpCmdSN..MaxCmdSN (serial arithmetic; MaxCmdSN = ExpCmdSN - 1 closes the window). A
 * non-immediate command takes the next CmdSN and may only be sent while CmdSN <= MaxCmdSN;
 * immediate PDUs (NOP-Out, task management, logout) carry the current CmdSN without taking it.
 */
import { snAdd, snLessOrEqual, snLessThan } from '../transport/index.js';

export class CmdWindow {
  /** The CmdSN the next non-immediate command gets. */
  cmdSN: number;
  expCmdSN: number;
  maxCmdSN: number;

  constructor(cmdSN: number, expCmdSN: number, maxCmdSN: number) {
    this.cmdSN = cmdSN >>> 0;
    this.expCmdSN = expCmdSN >>> 0;
    this.maxCmdSN = maxCmdSN >>> 0;
  }

  /** Apply ExpCmdSN/MaxCmdSN from a target PDU; returns true if the window may have opened. */
  update(expCmdSN: number, maxCmdSN: number): boolean {
    // Ignore both when MaxCmdSN < ExpCmdSN - 1: the PDU is stale or bogus.
    if (snLessThan(maxCmdSN, snAdd(expCmdSN, -1))) return false;
    let opened = false;
    if (snLessThan(this.maxCmdSN, maxCmdSN)) {
      this.maxCmdSN = maxCmdSN;
      opened = true;
    }
    if (snLessThan(this.expCmdSN, expCmdSN)) this.expCmdSN = expCmdSN;
    return opened;
  }

  /** Whether a non-immediate command may be sent now. */
  get open(): boolean {
    return snLessOrEqual(this.cmdSN, this.maxCmdSN);
  }

  /** Commands that may still be sent before the window closes. */
  get room(): number {
    return this.open ? ((this.maxCmdSN - this.cmdSN) >>> 0) + 1 : 0;
  }

  take(): number {
    const sn = this.cmdSN;
    this.cmdSN = snAdd(this.cmdSN, 1);
    return sn;
  }
}
