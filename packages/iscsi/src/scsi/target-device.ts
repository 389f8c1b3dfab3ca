/**
 * The SCSI side of one iSCSI target (implements ScsiTargetDevice): its logical units by LUN,
 * LUN masking per initiator name, REPORT LUNS from the masked view, and the answers for a LUN
 * the initiator may not see (SPC-4 4.6.3 / SAM-5 5.11): INQUIRY returns peripheral qualifier
 * 011b, REPORT LUNS works, REQUEST SENSE returns LOGICAL UNIT NOT SUPPORTED as its parameter
 * data, anything else is CHECK CONDITION, ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED.
 */
import { EsxError } from '@esxemu/shared';
import type { Backstore } from '../backstore/backstore.js';
import { be16, truncateTo } from './cdb.js';
import { deriveIdentity, standardInquiry, type LuIdentity } from './identity.js';
import { LogicalUnit, type LogicalUnitOptions, type ResetKind } from './logical-unit.js';
import { nexusKeyOf } from './reservations.js';
import { ASC, buildSense, fixedSense, senseInfo, SENSE_KEY } from './sense.js';
import { OP, reportLuns } from './spc.js';
import { SAM_STAT, TMF_RESPONSE, type Nexus, type ScsiRequest, type ScsiResponse, type ScsiTargetDevice, type TmfFunction } from './types.js';

export interface LunSpec extends Omit<LogicalUnitOptions, 'idSeed'> {
  /** Defaults to `${targetName}/${lun}`. */
  idSeed?: string;
}

export interface ScsiTargetOptions {
  targetName: string;
  luns: readonly (LunSpec | LogicalUnit)[];
  /**
   * LUN masking: initiator name (compared case-insensitively) -> the LUNs it may see. An
   * initiator not listed sees `defaultLuns`.
   */
  lunMasking?: Readonly<Record<string, readonly number[]>>;
  /** What an initiator without a masking entry sees: 'all' (default), 'none', or a list. */
  defaultLuns?: 'all' | 'none' | readonly number[];
}

export function nexusKey(n: Nexus): string {
  return nexusKeyOf(n.initiatorPortName, n.tpgt);
}

export class ScsiTarget implements ScsiTargetDevice {
  readonly targetName: string;
  private readonly units = new Map<number, LogicalUnit>();
  private masking = new Map<string, number[]>();
  private defaultLuns: 'all' | 'none' | number[] = 'all';
  private readonly noLuIdentity: LuIdentity;
  private readonly active = new Map<string, Nexus>();
  private readonly viewCache = new Map<string, readonly number[]>();

  constructor(opts: ScsiTargetOptions) {
    this.targetName = opts.targetName;
    for (const l of opts.luns) {
      const lu = l instanceof LogicalUnit ? l : new LogicalUnit({ ...l, idSeed: l.idSeed ?? `${opts.targetName}/${l.lun}` });
      if (this.units.has(lu.lun)) throw new EsxError('INVALID_ARGUMENT', `LUN ${lu.lun} defined twice`);
      this.units.set(lu.lun, lu);
    }
    this.setLunMasking(opts.lunMasking ?? {}, opts.defaultLuns ?? 'all', false);
    this.noLuIdentity = deriveIdentity(opts.targetName);
  }

  /** A convenience for one LUN over one backstore. */
  static single(targetName: string, backstore: Backstore, lun = 0): ScsiTarget {
    return new ScsiTarget({ targetName, luns: [{ lun, backstore }] });
  }

  logicalUnit(lun: number): LogicalUnit | undefined {
    return this.units.get(lun);
  }

  get logicalUnits(): LogicalUnit[] {
    return [...this.units.values()];
  }

  /** Change the masking; every connected initiator is told REPORTED LUNS DATA HAS CHANGED. */
  setLunMasking(masking: Readonly<Record<string, readonly number[]>>, defaultLuns: 'all' | 'none' | readonly number[] = this.defaultLuns, notify = true): void {
    this.masking = new Map(Object.entries(masking).map(([name, luns]) => [name.toLowerCase(), [...luns]]));
    this.defaultLuns = typeof defaultLuns === 'string' ? defaultLuns : [...defaultLuns];
    this.viewCache.clear();
    if (!notify) return;
    for (const [key, n] of this.active) for (const l of this.lunsFor(n.initiatorName)) this.units.get(l)?.ua.establish(key, ASC.REPORTED_LUNS_DATA_HAS_CHANGED);
  }

  lunsFor(initiatorName: string): number[] {
    return [...this.visible(initiatorName)];
  }

  /** The masked view of an initiator, cached until the masking changes (bounded cache). */
  private visible(initiatorName: string): readonly number[] {
    const name = initiatorName.toLowerCase();
    let v = this.viewCache.get(name);
    if (!v) {
      const listed = this.masking.get(name);
      const wanted = listed ?? (this.defaultLuns === 'all' ? [...this.units.keys()] : this.defaultLuns === 'none' ? [] : this.defaultLuns);
      v = wanted.filter((l) => this.units.has(l)).sort((a, b) => a - b);
      if (this.viewCache.size >= 1024) this.viewCache.clear();
      this.viewCache.set(name, v);
    }
    return v;
  }

  async execute(req: ScsiRequest): Promise<ScsiResponse> {
    const visible = this.visible(req.nexus.initiatorName);
    const lu = visible.includes(req.lun) ? this.units.get(req.lun) : undefined;
    if (!lu) return this.noLogicalUnit(req, visible);
    return lu.execute(req, nexusKey(req.nexus), () => [...visible]);
  }

  nexusAdded(nexus: Nexus): void {
    const key = nexusKey(nexus);
    this.active.set(key, nexus);
    for (const lu of this.units.values()) lu.nexusAdded(key);
  }

  nexusLost(nexus: Nexus): void {
    const key = nexusKey(nexus);
    this.active.delete(key);
    for (const lu of this.units.values()) lu.nexusLost(key);
  }

  taskManagement(nexus: Nexus, fn: TmfFunction, lun: number): number {
    const lu = this.visible(nexus.initiatorName).includes(lun) ? this.units.get(lun) : undefined;
    switch (fn) {
      case 'abortTask':
      case 'abortTaskSet':
      case 'clearTaskSet':
        return lu ? TMF_RESPONSE.COMPLETE : TMF_RESPONSE.LUN_DOES_NOT_EXIST;
      case 'lunReset':
        if (!lu) return TMF_RESPONSE.LUN_DOES_NOT_EXIST;
        lu.reset('lun');
        return TMF_RESPONSE.COMPLETE;
      case 'targetWarmReset':
      case 'targetColdReset':
        this.reset(fn === 'targetWarmReset' ? 'warm' : 'cold');
        return TMF_RESPONSE.COMPLETE;
      case 'clearAca':
        return TMF_RESPONSE.NOT_SUPPORTED;
      case 'taskReassign':
        return TMF_RESPONSE.REASSIGNMENT_NOT_SUPPORTED;
      default:
        return TMF_RESPONSE.NOT_SUPPORTED;
    }
  }

  reset(kind: ResetKind): void {
    for (const lu of this.units.values()) lu.reset(kind);
  }

  /** Flush and close every backstore. */
  async close(): Promise<void> {
    const errors: unknown[] = [];
    for (const lu of this.units.values()) await lu.backstore.close().catch((e: unknown) => errors.push(e));
    if (errors.length) throw errors[0];
  }

  private noLogicalUnit(req: ScsiRequest, visible: readonly number[]): ScsiResponse {
    const cdb = req.cdb;
    const op = cdb[0];
    if (op === OP.INQUIRY && cdb.length >= 6 && (cdb[1]! & 0x03) === 0 && cdb[2] === 0) {
      return { status: SAM_STAT.GOOD, data: truncateTo(standardInquiry(this.noLuIdentity, { removable: false, noLu: true }), be16(cdb, 3)), sense: null };
    }
    if (op === OP.REPORT_LUNS && cdb.length >= 12) {
      const r = reportLuns(cdb, visible);
      return { status: r.status, data: r.data ?? null, sense: r.sense ? fixedSense(r.sense) : null };
    }
    const notSupported = senseInfo(SENSE_KEY.ILLEGAL_REQUEST, ASC.LOGICAL_UNIT_NOT_SUPPORTED);
    if (op === OP.REQUEST_SENSE && cdb.length >= 6) {
      return { status: SAM_STAT.GOOD, data: truncateTo(buildSense(notSupported, (cdb[1]! & 0x01) !== 0), cdb[4]!), sense: null };
    }
    return { status: SAM_STAT.CHECK_CONDITION, data: null, sense: fixedSense(notSupported) };
  }
}
