/**
 * One iSCSI session on the target (RFC 7143 3.4): identified by ISID + TSIH, bound to one
 * target (normal) or none (discovery), with its negotiated parameters, its CmdSN window, its task
 * table and its single connection (MaxConnections=1, ErrorRecoveryLevel=0).
 *
 *   active --logout / connection lost / reinstatement / target close--> closed
 *
 * Closing a session aborts its tasks (no response is sent for them), releases the I_T nexus on
 * the SCSI side (nexusLost: SPC-2 reservations released, unit attention set) and removes it from
 * the registry. At ERL 0 a session lives exactly as long as its connection.
 */
import type { Logger } from '@esxemu/shared';
import type { Nexus } from '../scsi/types.js';
import { CmdSnWindow } from './cmdsn-window.js';
import type { SessionLimits } from './limits.js';
import type { OperationalParams, SessionKind } from './negotiation.js';
import type { OutPdu } from './outbound.js';
import type { TargetNode } from './target-node.js';
import { TaskOrder } from './task-order.js';
import { TaskTable, type Task } from './task-table.js';

/** What a session needs from its connection. */
export interface SessionConnection {
  readonly cid: number;
  send(items: OutPdu[]): Promise<void>;
  close(reason: string): void;
  /** A fresh Target Transfer Tag (never the reserved tag). */
  newTag(): number;
}

export type SessionState = 'active' | 'closed';

export interface SessionInit {
  tsih: number;
  isid: Buffer;
  initiatorName: string;
  initiatorAlias?: string;
  kind: SessionKind;
  target: TargetNode | null;
  params: OperationalParams;
  cmdSN: number;
  limits: SessionLimits;
  log: Logger;
  onClosed: (s: Session) => void;
}

export class Session {
  readonly tsih: number;
  readonly isid: Buffer;
  readonly isidHex: string;
  readonly initiatorName: string;
  readonly initiatorAlias: string | undefined;
  readonly kind: SessionKind;
  readonly target: TargetNode | null;
  readonly nexus: Nexus | null;
  readonly params: OperationalParams;
  readonly window: CmdSnWindow;
  readonly tasks: TaskTable;
  readonly order = new TaskOrder();
  readonly limits: SessionLimits;
  readonly log: Logger;
  /** Bytes of write buffers the session's tasks hold. */
  writeBytes = 0;
  connection: SessionConnection | null = null;
  private st: SessionState = 'active';
  private readonly onClosed: (s: Session) => void;

  constructor(o: SessionInit) {
    this.tsih = o.tsih;
    this.isid = Buffer.from(o.isid);
    this.isidHex = this.isid.toString('hex');
    this.initiatorName = o.initiatorName;
    this.initiatorAlias = o.initiatorAlias;
    this.kind = o.kind;
    this.target = o.target;
    this.params = o.params;
    this.limits = o.limits;
    this.window = new CmdSnWindow(o.cmdSN, o.limits.queueDepth);
    this.tasks = new TaskTable(o.limits.maxTasks);
    this.onClosed = o.onClosed;
    this.log = o.log.child({ tsih: o.tsih, initiator: o.initiatorName, isid: this.isidHex, ...(o.target ? { target: o.target.name } : { discovery: true }) });
    if (o.target) {
      const initiatorPortName = `${o.initiatorName},i,0x${this.isidHex}`;
      const tpgtHex = o.target.tpgt.toString(16).padStart(4, '0');
      this.nexus = {
        id: `${initiatorPortName}|${o.target.name},t,0x${tpgtHex}`,
        initiatorName: o.initiatorName,
        isid: this.isidHex,
        initiatorPortName,
        targetName: o.target.name,
        tpgt: o.target.tpgt,
      };
    } else {
      this.nexus = null;
    }
  }

  get state(): SessionState {
    return this.st;
  }

  /** Called once the final Login Response is on its way: the nexus now exists. */
  open(): void {
    this.log.info({ params: this.params }, 'session opened');
    if (this.nexus && this.target) this.target.device.nexusAdded(this.nexus);
  }

  /** MaxCmdSN to advertise now. */
  maxCmdSN(): number {
    return this.window.maxCmdSN(this.tasks.size);
  }

  /** Abort the tasks matching `pred`; returns them (their `settled` tells when they are over). */
  abortTasks(pred: (t: Task) => boolean): Task[] {
    const hit = this.tasks.values().filter(pred);
    for (const t of hit) t.markAborted();
    return hit;
  }

  /** End the session (idempotent). */
  close(reason: string): void {
    if (this.st === 'closed') return;
    this.log.info({ from: this.st, to: 'closed', reason }, 'session state');
    this.st = 'closed';
    this.abortTasks(() => true);
    this.window.clear();
    if (this.nexus && this.target) {
      try {
        this.target.device.nexusLost(this.nexus);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'the SCSI layer failed on nexusLost');
      }
    }
    const conn = this.connection;
    this.connection = null;
    conn?.close(`session closed: ${reason}`);
    this.onClosed(this);
  }
}
