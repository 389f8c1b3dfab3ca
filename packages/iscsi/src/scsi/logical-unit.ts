/**
 * One logical unit: a backstore with its identity, mode pages, reservations, unit attentions,
 * medium state and task set. execute() runs the checks of SAM-5/SPC-4 in order, then the
 * handler from the opcode table:
 *   task set admission (ORDERED / SIMPLE / HEAD OF QUEUE, TASK SET FULL)
 *   -> unit attention (except INQUIRY, REPORT LUNS, REQUEST SENSE)
 *   -> INVALID COMMAND OPERATION CODE / unknown service action
 *   -> CDB length, NACA
 *   -> RESERVATION CONFLICT (SPC-2 and persistent)
 *   -> NOT READY (medium not present, unit stopped)
 *   -> DATA PROTECT (write-protected: readOnly option or SWP)
 *   -> handler; a backstore failure becomes MEDIUM ERROR (or HARDWARE ERROR for a bug).
 * Sense data is formatted fixed or descriptor by the control page's D_SENSE.
 */
import { EsxError } from '@esxemu/shared';
import type { Backstore } from '../backstore/backstore.js';
import { checkLimits, defaultBlockLimits, type BlockLimits } from './block-limits.js';
import { checkCondition, invalidCdbField, invalidOpcode, RESERVATION_CONFLICT, type Command, type CommandResult } from './command.js';
import { deriveIdentity, type LuIdentity } from './identity.js';
import { ModePages } from './mode-pages.js';
import { lookupOpcode, type OpcodeEntry } from './opcodes.js';
import { RangeLock } from './range-lock.js';
import { Reservations } from './reservations.js';
import { ASC, buildSense, SENSE_KEY, type AscPair } from './sense.js';
import { TaskSet } from './task-set.js';
import { SAM_STAT, type ScsiRequest, type ScsiResponse } from './types.js';
import { UnitAttentions } from './unit-attention.js';

export interface LogicalUnitOptions {
  lun: number;
  backstore: Backstore;
  /** Seed of the serial number and NAA name, stable across restarts (e.g. `${targetName}/${lun}`). */
  idSeed: string;
  identity?: Partial<Omit<LuIdentity, 'naa'>>;
  /** Refuse every write with DATA PROTECT, WRITE PROTECTED (and set WP in MODE SENSE). */
  readOnly?: boolean;
  /**
   * Offer COMPARE AND WRITE (default true). false: the opcode is unsupported and the Block
   * Limits page says so, the switch of arrays without VAAI ATS, so hosts fall back to SCSI
   * reservations for their locks.
   */
  ats?: boolean;
  /** Removable medium (RMB): START STOP UNIT with LOEJ ejects and loads, PREVENT ALLOW applies. */
  removable?: boolean;
  limits?: Partial<BlockLimits>;
  /** Told about backstore failures (the initiator gets MEDIUM ERROR). */
  onIoError?: (err: unknown, lun: number, op: string) => void;
}

export type ResetKind = 'lun' | 'warm' | 'cold';

interface RunningTask {
  nexusKey: string;
  /** Aborted by this LU (PREEMPT AND ABORT, reset, nexus loss); the request's signal covers task management. */
  aborted: boolean;
}

/** How many distinct nexuses a LU remembers having seen (for the power-on unit attention). */
const MAX_SEEN_NEXUSES = 4096;

export class LogicalUnit {
  readonly lun: number;
  readonly backstore: Backstore;
  readonly blockSize: number;
  readonly capacityBlocks: number;
  readonly thin: boolean;
  readonly ats: boolean;
  readonly identity: LuIdentity;
  readonly limits: BlockLimits;
  readonly readOnly: boolean;
  readonly removable: boolean;
  readonly modePages = new ModePages();
  readonly reservations = new Reservations();
  readonly ua = new UnitAttentions();
  /** Nexuses holding a PREVENT MEDIUM REMOVAL. */
  readonly preventers = new Set<string>();
  mediumPresent = true;
  /** Stopped by START STOP UNIT (START=0). */
  stopped = false;
  private readonly tasks = new TaskSet();
  private readonly rangeLock = new RangeLock();
  private readonly running = new Set<RunningTask>();
  /** Active I_T nexuses (for unit attentions to "all other" nexuses). */
  private readonly active = new Set<string>();
  private readonly seen = new Set<string>();
  private readonly onIoError: LogicalUnitOptions['onIoError'];

  constructor(opts: LogicalUnitOptions) {
    const bs = opts.backstore.blockSize;
    if (opts.backstore.sizeBytes % bs !== 0 || opts.backstore.sizeBytes < bs) throw new EsxError('INVALID_ARGUMENT', `LUN ${opts.lun}: size ${opts.backstore.sizeBytes} is not a multiple of ${bs}`);
    if (!Number.isInteger(opts.lun) || opts.lun < 0 || opts.lun > 16383) throw new EsxError('INVALID_ARGUMENT', `LUN ${opts.lun} out of range 0..16383`);
    this.lun = opts.lun;
    this.backstore = opts.backstore;
    this.blockSize = bs;
    this.capacityBlocks = opts.backstore.sizeBytes / bs;
    this.thin = opts.backstore.thin;
    this.ats = opts.ats ?? true;
    this.identity = deriveIdentity(opts.idSeed, opts.identity);
    this.limits = { ...defaultBlockLimits(bs, opts.backstore.granuleBytes ?? bs), ...opts.limits };
    checkLimits(this.limits, bs);
    this.readOnly = opts.readOnly ?? false;
    this.removable = opts.removable ?? false;
    this.onIoError = opts.onIoError;
  }

  get writeProtected(): boolean {
    return this.readOnly || this.modePages.swp;
  }

  /** Lock an LBA extent against other writers; resolves with the release function. */
  lock(lba: number, blocks: number): Promise<() => void> {
    return this.rangeLock.acquire(lba, blocks);
  }

  /** Establish a unit attention for every active nexus except `except`. */
  notifyOthers(asc: AscPair, except?: string): void {
    this.ua.establishFor(this.active, asc, except);
  }

  /** PREEMPT AND ABORT: abort the tasks of these nexuses. */
  abortTasksOf(nexusKeys: readonly string[]): void {
    const set = new Set(nexusKeys);
    for (const t of this.running) if (set.has(t.nexusKey)) t.aborted = true;
  }

  nexusAdded(nexusKey: string): void {
    this.active.add(nexusKey);
    if (this.seen.has(nexusKey)) return;
    this.seen.add(nexusKey);
    if (this.seen.size > MAX_SEEN_NEXUSES) this.seen.delete(this.seen.values().next().value!);
    this.ua.establish(nexusKey, ASC.POWER_ON_RESET);
  }

  nexusLost(nexusKey: string): void {
    this.active.delete(nexusKey);
    this.reservations.nexusLost(nexusKey);
    this.preventers.delete(nexusKey);
    this.abortTasksOf([nexusKey]);
    this.ua.establish(nexusKey, ASC.I_T_NEXUS_LOSS);
  }

  /**
   * LOGICAL UNIT RESET and target resets: SPC-2 reservations and PREVENT end, running tasks are
   * aborted, and every existing I_T nexus gets a unit attention (a nexus logged out meanwhile
   * already holds I_T NEXUS LOSS OCCURRED, which it will see when it logs in again).
   */
  reset(kind: ResetKind): void {
    this.reservations.reset();
    this.preventers.clear();
    for (const t of this.running) t.aborted = true;
    const asc = kind === 'lun' ? ASC.BUS_DEVICE_RESET : kind === 'cold' ? ASC.POWER_ON_OCCURRED : ASC.POWER_ON_RESET;
    this.ua.establishFor(this.active, asc);
  }

  async execute(req: ScsiRequest, nexusKey: string, visibleLuns: () => number[]): Promise<ScsiResponse> {
    const slot = this.tasks.enter(req.taskAttr);
    if (!slot) return { status: SAM_STAT.TASK_SET_FULL, data: null, sense: null };
    const task: RunningTask = { nexusKey, aborted: false };
    this.running.add(task);
    try {
      await slot.ready;
      const cmd: Command = {
        req,
        cdb: req.cdb,
        nexus: req.nexus,
        nexusKey,
        lu: this,
        visibleLuns,
        aborted: () => task.aborted || req.signal.aborted,
      };
      if (cmd.aborted()) return { status: SAM_STAT.TASK_ABORTED, data: null, sense: null };
      const { result, entry } = await this.dispatch(cmd);
      return this.respond(result, entry, req.cdb);
    } finally {
      this.running.delete(task);
      slot.done();
    }
  }

  private async dispatch(cmd: Command): Promise<{ result: CommandResult; entry?: OpcodeEntry }> {
    const cdb = cmd.cdb;
    if (cdb.length < 6) return { result: invalidCdbField(0) };
    const found = lookupOpcode(cdb);
    const entry = found && 'entry' in found ? found.entry : undefined;
    if (!entry?.uaExempt) {
      const ua = this.ua.take(cmd.nexusKey);
      if (ua) return { result: checkCondition(SENSE_KEY.UNIT_ATTENTION, ua) };
    }
    if (!found) return { result: invalidOpcode() };
    if (!entry) return { result: invalidCdbField(1, 4) };
    if (entry.supported && !entry.supported(this)) return { result: invalidOpcode() };
    if (cdb.length < entry.cdbLength) return { result: invalidCdbField(0) };
    if (cdb[entry.cdbLength - 1]! & 0x04) return { result: invalidCdbField(entry.cdbLength - 1, 2) }; // NACA: no ACA support
    const access = typeof entry.access === 'function' ? entry.access(cdb) : entry.access;
    const spc2Exempt = typeof entry.spc2Exempt === 'function' ? entry.spc2Exempt(cdb) : (entry.spc2Exempt ?? false);
    if (this.reservations.conflicts(cmd.nexusKey, access, spc2Exempt)) return { result: RESERVATION_CONFLICT, entry };
    if (entry.medium) {
      if (!this.mediumPresent) return { result: checkCondition(SENSE_KEY.NOT_READY, ASC.MEDIUM_NOT_PRESENT), entry };
      if (this.stopped) return { result: checkCondition(SENSE_KEY.NOT_READY, ASC.LUN_NOT_READY_INITIALIZING_COMMAND_REQUIRED), entry };
    }
    if (entry.writes && this.writeProtected) return { result: checkCondition(SENSE_KEY.DATA_PROTECT, ASC.WRITE_PROTECTED), entry };
    try {
      return { result: await entry.handler(cmd), entry };
    } catch (err) {
      this.onIoError?.(err, this.lun, entry.name);
      if (err instanceof EsxError && (err.code === 'INVALID_ARGUMENT' || err.code === 'PAYLOAD_TOO_LARGE' || err.code === 'INTERNAL')) {
        return { result: checkCondition(SENSE_KEY.HARDWARE_ERROR, ASC.INTERNAL_TARGET_FAILURE), entry };
      }
      return { result: checkCondition(SENSE_KEY.MEDIUM_ERROR, entry.direction === 'read' ? ASC.UNRECOVERED_READ_ERROR : ASC.WRITE_ERROR), entry };
    }
  }

  private respond(r: CommandResult, entry: OpcodeEntry | undefined, cdb: Buffer): ScsiResponse {
    const res: ScsiResponse = {
      status: r.status,
      data: r.status === SAM_STAT.GOOD ? (r.data ?? null) : null,
      sense: r.sense ? buildSense(r.sense, this.modePages.dSense) : null,
    };
    const out = entry?.dataOut?.(cdb, this.blockSize);
    if (out !== undefined) res.dataOutLength = out;
    return res;
  }
}
