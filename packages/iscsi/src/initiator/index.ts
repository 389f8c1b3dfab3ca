/**
 * The iSCSI initiator the hosts use (a software iSCSI adapter): one normal session to one
 * target, kept alive across connection losses and target restarts, with typed SCSI commands.
 *
 *   const s = await IscsiInitiator.connect({ portal: '127.0.0.1:3260', targetName, initiatorName, chap, logger });
 *   const r = await s.read(1, 0, 8);             // ScsiResult<Buffer>: { ok, value } or { ok: false, status, sense }
 *   await s.write(1, 0, data, { fua: true });
 *   await s.flush(1);
 *   await s.compareAndWrite(1, lba, expected, next); // { match: true } | { match: false, offset }
 *   await s.execute(1, cdb, { dataOut, expectedLength });
 *   await s.close();
 *
 * A SCSI failure (CHECK CONDITION, RESERVATION CONFLICT...) is a result carrying decoded sense;
 * transport failures (target unreachable, protocol errors, timeouts) reject with an EsxError.
 * Bounded: queue length, commands on the wire, per-command time, transfer (reassembly) size,
 * login/connect time, the recovery window, unit attention and busy retries.
 */
import { randomBytes } from 'node:crypto';
import { EsxError, silentLogger, sleep, type Logger } from '@esxemu/shared';
import { SAM_STAT } from '../scsi/types.js';
import { validateChap, type ChapCredentials } from './chap.js';
import { parsePortal, portalString } from './connection.js';
import { discover, type DiscoveredTarget } from './discovery.js';
import { DEFAULT_OFFER, validateOffer, type DigestName, type OperationalOffer, type SessionParams } from './params.js';
import { SessionSupervisor, type RecoveryTimeouts } from './recovery.js';
import * as cmd from './scsi-commands.js';
import { decodeSense, SENSE_KEY, type SenseData } from './sense.js';
import { Task, type CommandResult, type ReplayPolicy, type TaskAttribute } from './task.js';

export interface InitiatorTimeouts extends RecoveryTimeouts {
  /** Per command, once on the wire: then ABORT TASK and TIMEOUT. */
  commandMs: number;
  /** close(): how long commands on the wire may take to finish before logout. */
  closeMs: number;
}

export const DEFAULT_TIMEOUTS: InitiatorTimeouts = {
  connectMs: 5_000,
  loginMs: 10_000,
  commandMs: 30_000,
  recoveryMs: 30_000,
  backoffMinMs: 100,
  backoffMaxMs: 2_000,
  maxTime2WaitMs: 2_000,
  nopIntervalMs: 5_000,
  nopTimeoutMs: 10_000,
  requestMs: 10_000,
  queueWaitMs: 30_000,
  closeMs: 5_000,
};

export interface InitiatorOptions {
  /** host:port of the target portal. */
  portal: string;
  targetName: string;
  /** Our iSCSI name (iqn....). */
  initiatorName: string;
  initiatorAlias?: string;
  chap?: ChapCredentials;
  /** 12 hex digits; default random, stable for this instance (kept across recoveries). */
  isid?: string;
  logger?: Logger;
  /** Digest preference, e.g. ['CRC32C', 'None']; default ['None', 'CRC32C']. */
  headerDigest?: DigestName[];
  dataDigest?: DigestName[];
  /** Other operational keys to offer (RFC defaults otherwise, see params.ts). */
  offer?: Partial<Omit<OperationalOffer, 'headerDigest' | 'dataDigest'>>;
  timeouts?: Partial<InitiatorTimeouts>;
  /** Commands on the wire at once (default 32). */
  queueDepth?: number;
  /** Commands waiting to be sent (default 1024); more are refused with INSUFFICIENT_RESOURCES. */
  maxQueued?: number;
  /** Largest read or write of one command, bytes (default 16 MiB): bounds reassembly buffers. */
  maxTransferBytes?: number;
  /** Times one command may be sent across recoveries (default 5). */
  maxAttempts?: number;
  /** Typed commands retry after a UNIT ATTENTION this many times (default 3). */
  unitAttentionRetries?: number;
  /** Typed commands retry BUSY / TASK SET FULL this many times with a short backoff (default 5). */
  busyRetries?: number;
  /** Told about every UNIT ATTENTION (reservations preempted, capacity changed, reset...). */
  onUnitAttention?: (lun: number, sense: SenseData) => void;
}

export interface ExecuteOptions {
  dataOut?: Buffer | null;
  expectedLength?: number;
  attr?: TaskAttribute;
  /** Default from the opcode (see defaultReplayPolicy). */
  replay?: ReplayPolicy;
  timeoutMs?: number;
  /** Abort: dequeue the command, or ABORT TASK it if it is on the wire. */
  signal?: AbortSignal;
}

export interface ExecuteResult {
  status: number;
  statusName: string;
  data: Buffer | null;
  sense: SenseData | null;
  residual: number;
  underflow: boolean;
  overflow: boolean;
  attempts: number;
}

export interface DiscoverRequest {
  portal: string;
  initiatorName: string;
  chap?: ChapCredentials;
  logger?: Logger;
  timeouts?: Partial<Pick<InitiatorTimeouts, 'connectMs' | 'loginMs' | 'requestMs'>>;
}

const MAX_CDB = 16;

function newIsid(): Buffer {
  const b = randomBytes(6);
  b[0] = 0x80 | (b[0]! & 0x3f); // T=10b: random format (RFC 7143 11.12.5)
  return b;
}

function parseIsid(hex: string): Buffer {
  if (!/^[0-9a-fA-F]{12}$/.test(hex)) throw new EsxError('INVALID_ARGUMENT', `ISID must be 12 hex digits, got '${hex}'`);
  return Buffer.from(hex, 'hex');
}

function positiveInt(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new EsxError('INVALID_ARGUMENT', `${name} must be an integer in 1..${max}`);
  return v;
}

export class IscsiInitiator {
  readonly isid: string;
  readonly targetName: string;
  readonly portal: string;
  private readonly sup: SessionSupervisor;
  private readonly o: InitiatorOptions;
  private readonly t: InitiatorTimeouts;
  private readonly log: Logger;
  private readonly maxTransferBytes: number;
  private readonly blockSizes = new Map<number, Promise<number>>();

  private constructor(sup: SessionSupervisor, o: InitiatorOptions, t: InitiatorTimeouts, isid: Buffer, log: Logger) {
    this.sup = sup;
    this.o = o;
    this.t = t;
    this.log = log;
    this.isid = isid.toString('hex');
    this.targetName = o.targetName;
    this.portal = o.portal;
    this.maxTransferBytes = o.maxTransferBytes ?? 16 * 1024 * 1024;
  }

  /** Log in to `targetName` at `portal` (one attempt; errors say why: UNAUTHORIZED, NOT_FOUND...). */
  static async connect(o: InitiatorOptions): Promise<IscsiInitiator> {
    const portal = parsePortal(o.portal);
    if (!o.targetName || !o.initiatorName) throw new EsxError('INVALID_ARGUMENT', 'targetName and initiatorName are required');
    if (o.chap) validateChap(o.chap);
    const t: InitiatorTimeouts = { ...DEFAULT_TIMEOUTS, ...o.timeouts };
    for (const [k, v] of Object.entries(t)) if (!Number.isFinite(v) || v < 0) throw new EsxError('INVALID_ARGUMENT', `timeouts.${k} must be a non-negative number`);
    const offer: OperationalOffer = { ...DEFAULT_OFFER, ...o.offer, headerDigest: o.headerDigest ?? DEFAULT_OFFER.headerDigest, dataDigest: o.dataDigest ?? DEFAULT_OFFER.dataDigest };
    validateOffer(offer);
    const queueDepth = positiveInt('queueDepth', o.queueDepth ?? 32, 4096);
    const maxQueued = positiveInt('maxQueued', o.maxQueued ?? 1024, 1 << 20);
    positiveInt('maxTransferBytes', o.maxTransferBytes ?? 16 * 1024 * 1024, 1 << 30);
    const isid = o.isid ? parseIsid(o.isid) : newIsid();
    const log = (o.logger ?? silentLogger()).child({ component: 'iscsi-initiator', target: o.targetName, isid: isid.toString('hex') });
    const sup = await SessionSupervisor.start({
      portal,
      login: { initiatorName: o.initiatorName, ...(o.initiatorAlias ? { initiatorAlias: o.initiatorAlias } : {}), targetName: o.targetName, sessionType: 'Normal', isid, offer, ...(o.chap ? { chap: o.chap } : {}) },
      timeouts: t,
      queueDepth,
      maxQueued,
      maxAttempts: positiveInt('maxAttempts', o.maxAttempts ?? 5, 100),
      log,
    });
    return new IscsiInitiator(sup, o, t, isid, log);
  }

  /** SendTargets on a discovery session: the targets the portal offers us. */
  static async discover(o: DiscoverRequest): Promise<DiscoveredTarget[]> {
    if (o.chap) validateChap(o.chap);
    const t = { ...DEFAULT_TIMEOUTS, ...o.timeouts };
    return discover({ portal: o.portal, initiatorName: o.initiatorName, isid: newIsid(), ...(o.chap ? { chap: o.chap } : {}), timeouts: { connectMs: t.connectMs, loginMs: t.loginMs, requestMs: t.requestMs }, logger: o.logger ?? silentLogger() });
  }

  /** READY, RECOVERING (commands wait), DOWN (commands fail fast; reconnecting), CLOSED. */
  get state(): 'READY' | 'RECOVERING' | 'DOWN' | 'CLOSED' {
    return this.sup.state.kind;
  }

  /** Negotiated parameters of the current session (null while there is none). */
  get params(): SessionParams | null {
    return this.sup.session?.params ?? null;
  }

  stats(): Record<string, unknown> {
    const s = this.sup.session;
    return { state: this.state, portal: portalString(parsePortal(this.portal)), queued: this.sup.queue.length, inflight: s?.inflightCount ?? 0, window: s?.windowState ?? null, session: s ? { tsih: s.tsih, ...s.stats } : null, ...this.sup.stats };
  }

  // ---- raw commands -------------------------------------------------------------------------

  /** Send any CDB. No retries of SCSI statuses: what the target answered is returned. */
  async execute(lun: number, cdb: Buffer, opts: ExecuteOptions = {}): Promise<ExecuteResult> {
    const r = await this.submit(lun, cdb, opts);
    return { status: r.status, statusName: cmd.statusName(r.status), data: r.data, sense: r.sense ? decodeSense(r.sense) : null, residual: r.residual, underflow: r.underflow, overflow: r.overflow, attempts: r.attempts };
  }

  private submit(lun: number, cdb: Buffer, opts: ExecuteOptions): Promise<CommandResult> {
    if (!Number.isInteger(lun) || lun < 0 || lun > 0x3fff) throw new EsxError('INVALID_ARGUMENT', `LUN ${lun} out of range 0..16383`);
    if (cdb.length < 6 || cdb.length > MAX_CDB) throw new EsxError('INVALID_ARGUMENT', `CDB of ${cdb.length} bytes (6..${MAX_CDB} supported)`);
    const dataOut = opts.dataOut && opts.dataOut.length > 0 ? opts.dataOut : null;
    const expectedLength = opts.expectedLength ?? 0;
    if (!Number.isInteger(expectedLength) || expectedLength < 0) throw new EsxError('INVALID_ARGUMENT', `bad expectedLength ${expectedLength}`);
    if (dataOut && expectedLength > 0) throw new EsxError('NOT_IMPLEMENTED', 'bidirectional commands are not supported');
    const size = dataOut?.length ?? expectedLength;
    if (size > this.maxTransferBytes) throw new EsxError('PAYLOAD_TOO_LARGE', `transfer of ${size} bytes exceeds maxTransferBytes ${this.maxTransferBytes}`, { reason: 'TRANSFER_TOO_LARGE' });
    const task = new Task({ lun, cdb: Buffer.from(cdb), dataOut, expectedLength, attr: opts.attr ?? 'simple', replay: opts.replay ?? cmd.defaultReplayPolicy(cdb), timeoutMs: opts.timeoutMs ?? this.t.commandMs });
    const signal = opts.signal;
    if (signal) {
      if (signal.aborted) return Promise.reject(new EsxError('CANCELLED', 'aborted before it was sent', { reason: 'CANCELLED' }));
      const onAbort = (): void => void this.sup.cancel(task).catch((err: Error) => this.log.warn({ err: err.message }, 'iscsi initiator: abort failed'));
      signal.addEventListener('abort', onAbort, { once: true });
      void task.promise.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => undefined);
    }
    return this.sup.submit(task);
  }

  /**
   * Run a typed command. UNIT ATTENTION is reported (onUnitAttention, log) and the command
   * retried, as the Linux SCSI midlayer does; BUSY and TASK SET FULL are retried after a short
   * backoff. Both bounded.
   */
  async run<T>(lun: number, c: cmd.ScsiCommand<T>, opts: Omit<ExecuteOptions, 'dataOut' | 'expectedLength' | 'replay'> = {}): Promise<cmd.ScsiResult<T>> {
    const uaRetries = this.o.unitAttentionRetries ?? 3;
    const busyRetries = this.o.busyRetries ?? 5;
    let ua = 0;
    let busy = 0;
    for (;;) {
      const raw = await this.submit(lun, c.cdb, { ...opts, dataOut: c.dataOut, expectedLength: c.expectedLength, replay: c.replay });
      const r = cmd.toScsiResult(c, raw);
      if (r.ok) return r;
      if (r.sense?.key === SENSE_KEY.UNIT_ATTENTION && ua < uaRetries) {
        ua++;
        this.log.info({ lun, command: c.name, sense: r.sense.description }, 'iscsi initiator: unit attention; retrying');
        if (r.sense.asc === 0x2a && r.sense.ascq === 0x09) this.blockSizes.delete(lun); // CAPACITY DATA HAS CHANGED
        this.o.onUnitAttention?.(lun, r.sense);
        continue;
      }
      if ((r.status === SAM_STAT.BUSY || r.status === SAM_STAT.TASK_SET_FULL) && busy < busyRetries) {
        busy++;
        await sleep(Math.min(1000, 10 * 2 ** busy));
        continue;
      }
      return r;
    }
  }

  // ---- typed commands -------------------------------------------------------------------------

  testUnitReady(lun: number): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.testUnitReady());
  }

  inquiry(lun: number): Promise<cmd.ScsiResult<cmd.StandardInquiry>> {
    return this.run(lun, cmd.inquiry());
  }

  inquiryVpd(lun: number, page: number): Promise<cmd.ScsiResult<cmd.VpdPage>> {
    return this.run(lun, cmd.inquiryVpd(page));
  }

  reportLuns(): Promise<cmd.ScsiResult<number[]>> {
    return this.run(0, cmd.reportLuns());
  }

  async readCapacity(lun: number): Promise<cmd.ScsiResult<cmd.Capacity>> {
    const r = await this.run(lun, cmd.readCapacity16());
    if (r.ok) this.blockSizes.set(lun, Promise.resolve(r.value.blockSize));
    return r;
  }

  /** Logical block size of a LUN (READ CAPACITY(16) once, cached; dropped on capacity change). */
  blockSize(lun: number): Promise<number> {
    let p = this.blockSizes.get(lun);
    if (!p) {
      p = this.run(lun, cmd.readCapacity16()).then((r) => cmd.scsiValue(r, `READ CAPACITY(16) of LUN ${lun}`).blockSize);
      this.blockSizes.set(lun, p);
      p.catch(() => this.blockSizes.delete(lun));
    }
    return p;
  }

  async read(lun: number, lba: number, blocks: number, opts: { fua?: boolean } = {}): Promise<cmd.ScsiResult<Buffer>> {
    return this.run(lun, cmd.read16(lba, blocks, await this.blockSize(lun), opts));
  }

  async write(lun: number, lba: number, data: Buffer, opts: { fua?: boolean } = {}): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.write16(lba, data, await this.blockSize(lun), opts));
  }

  /** SYNCHRONIZE CACHE(16) of the whole LUN (or a range). */
  flush(lun: number, lba = 0, blocks = 0): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.synchronizeCache16(lba, blocks));
  }

  async compareAndWrite(lun: number, lba: number, compare: Buffer, write: Buffer, opts: { fua?: boolean } = {}): Promise<cmd.ScsiResult<cmd.CompareAndWriteResult>> {
    return this.run(lun, cmd.compareAndWrite(lba, compare, write, await this.blockSize(lun), opts));
  }

  unmap(lun: number, ranges: readonly cmd.UnmapRange[]): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.unmap(ranges));
  }

  async writeSame(lun: number, lba: number, blocks: number, block: Buffer, opts: { unmap?: boolean } = {}): Promise<cmd.ScsiResult<void>> {
    const bs = await this.blockSize(lun);
    if (block.length !== bs) throw new EsxError('INVALID_ARGUMENT', `WRITE SAME takes one ${bs}-byte block, got ${block.length} bytes`);
    return this.run(lun, cmd.writeSame16(lba, blocks, block, opts));
  }

  reserve(lun: number): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.reserve6());
  }

  release(lun: number): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.release6());
  }

  prReadKeys(lun: number): Promise<cmd.ScsiResult<cmd.PrKeys>> {
    return this.run(lun, cmd.persistentReserveInReadKeys());
  }

  prReadReservation(lun: number): Promise<cmd.ScsiResult<cmd.PrReservation>> {
    return this.run(lun, cmd.persistentReserveInReadReservation());
  }

  prOut(lun: number, action: cmd.PrOutAction, params: cmd.PrOutParams): Promise<cmd.ScsiResult<void>> {
    return this.run(lun, cmd.persistentReserveOut(action, params));
  }

  // ---- task management, close ---------------------------------------------------------------

  /** LOGICAL UNIT RESET; resolves with the TMF response code (0 = function complete). */
  lunReset(lun: number): Promise<number> {
    return this.sup.taskManagement('lunReset', lun);
  }

  abortTaskSet(lun: number): Promise<number> {
    return this.sup.taskManagement('abortTaskSet', lun);
  }

  /** Let commands on the wire finish (bounded), log out, close. Later calls fail INVALID_STATE. */
  async close(): Promise<void> {
    await this.sup.close(this.t.closeMs);
  }
}

export { discover, parseSendTargets, type DiscoveredTarget } from './discovery.js';
export { loginStatusError, loginStatusName } from './login-status.js';
export { LoginMachine, type LoginOptions, type LoginResult } from './login.js';
export { parseIscsiUrl, formatIscsiUrl, type IscsiUrl } from './url.js';
export { DEFAULT_OFFER, Negotiation, RFC_DEFAULTS, type DigestName, type OperationalOffer, type SessionParams } from './params.js';
export { decodeSense, describeSense, SENSE_KEY, type SenseData } from './sense.js';
export * from './scsi-commands.js';
export type { ChapCredentials } from './chap.js';
export type { CommandResult, ReplayPolicy, TaskAttribute } from './task.js';
export type { RecoveryTimeouts } from './recovery.js';
