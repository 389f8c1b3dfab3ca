/**
 * One host link: a WebSocket speaking the binary msgpackr protocol of shared/protocol/hostlink.
 *
 * State machine (one log line per transition):
 *   hello  --hello accepted-->  active  --socket closed / terminated-->  closed
 *   hello  --rejected, bad frame, no hello in time-->  closed
 * In `hello` only a hello frame is accepted; in `active` everything but hello. A frame that does
 * not decode or validate is a PROTOCOL_ERROR: logged, the link closed (code 1002), nothing else
 * changes. Heartbeats are answered here; requests to the host go through a bounded pending map
 * and fail with HOST_DISCONNECTED when the link goes.
 */
import type { WebSocket } from 'ws';
import type { HostOp, HostOpArgs, HostOpResult, HostToVcenter, Logger, VcenterToHost } from '@esxemu/shared';
import { EsxError, decodeFrame, encodeFrame, hostOpSchemas, hostToVcenterSchema, summarizeZodError, toEsxError } from '@esxemu/shared';
import { PendingRequests } from './pending-requests.js';

export type HelloMessage = Extract<HostToVcenter, { type: 'hello' }>;
/** Messages the server handles once the session is active (responses and heartbeats stay here). */
export type SessionMessage = Extract<HostToVcenter, { type: 'heartbeat' | 'stats' | 'vmEvent' }>;

export type HelloOutcome = { ok: true; hostId: string; welcome: Extract<VcenterToHost, { type: 'welcome' }> } | { ok: false; error: EsxError };

export interface SessionHandlers {
  /** Decide on a hello (registration). Synchronous: the session is active right after. */
  onHello(session: HostSession, hello: HelloMessage): HelloOutcome;
  onMessage(session: HostSession, msg: SessionMessage): void;
  /** Called once when an active session ends, with the reason. */
  onClose(session: HostSession, reason: string): void;
}

export interface SessionOptions {
  helloTimeoutMs: number;
  requestTimeoutMs: number;
  maxPendingRequests: number;
  logger: Logger;
  remoteAddress: string;
}

type SessionState = { phase: 'hello' } | { phase: 'active'; hostId: string; hostName: string } | { phase: 'closed'; reason: string };

/** WebSocket close codes used here. */
const CLOSE_POLICY = 1008;
const CLOSE_PROTOCOL = 1002;
const CLOSE_GOING_AWAY = 1001;

let nextSessionId = 1;

export class HostSession {
  readonly id = nextSessionId++;
  private state: SessionState = { phase: 'hello' };
  private readonly helloTimer: NodeJS.Timeout;
  private pending: PendingRequests | null = null;
  private logger: Logger;
  private identity: { hostId: string; hostName: string } | null = null;
  /** Last time anything valid came from the host (ms since epoch). */
  lastSeenAt = Date.now();

  constructor(
    private readonly socket: WebSocket,
    private readonly handlers: SessionHandlers,
    private readonly opts: SessionOptions,
  ) {
    this.logger = opts.logger.child({ session: this.id, remote: opts.remoteAddress });
    this.logger.debug('host link opened, waiting for hello');
    this.helloTimer = setTimeout(() => {
      this.fail(new EsxError('PROTOCOL_ERROR', `no hello within ${opts.helloTimeoutMs} ms`), CLOSE_POLICY);
    }, opts.helloTimeoutMs);
    socket.on('message', (data, isBinary) => this.onFrame(data as Buffer | ArrayBuffer | Buffer[], isBinary));
    socket.on('error', (err) => {
      // ws reports oversized frames (1009) and framing violations (1002) here, then closes.
      const wsCode = (err as NodeJS.ErrnoException).code ?? '';
      const code = wsCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'PAYLOAD_TOO_LARGE' : wsCode.startsWith('WS_ERR_') ? 'PROTOCOL_ERROR' : toEsxError(err).code;
      this.logger.warn({ code, wsCode, reason: err.message }, 'host link error, closing');
    });
    socket.on('close', (code, reason) => {
      this.cleanup(`link closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`);
    });
  }

  get phase(): SessionState['phase'] {
    return this.state.phase;
  }

  /** Set once the hello is accepted; kept after close (the server needs it in onClose). */
  get hostId(): string | null {
    return this.identity?.hostId ?? null;
  }

  get hostName(): string | null {
    return this.identity?.hostName ?? null;
  }

  get remoteAddress(): string {
    return this.opts.remoteAddress;
  }

  /** Send a request to the host and wait (bounded) for its validated result. */
  async request<O extends HostOp>(op: O, args: HostOpArgs<O>, timeoutMs?: number): Promise<HostOpResult<O>> {
    if (this.state.phase !== 'active' || !this.pending) {
      throw new EsxError('HOST_DISCONNECTED', `host link ${this.id} is not connected`);
    }
    const { id, promise } = this.pending.add(op, timeoutMs);
    this.send({ type: 'request', id, op, args });
    const raw = await promise;
    const parsed = hostOpSchemas[op].result.safeParse(raw);
    if (!parsed.success) {
      throw new EsxError('PROTOCOL_ERROR', `host ${this.state.phase === 'active' ? this.state.hostName : ''} answered ${op} with an invalid result: ${summarizeZodError(parsed.error)}`);
    }
    return parsed.data as HostOpResult<O>;
  }

  /** End the link now (no close handshake: the peer may be frozen). */
  terminate(reason: string): void {
    this.cleanup(reason);
    this.socket.terminate();
  }

  /** End the link with a close frame. */
  close(reason: string, code = CLOSE_GOING_AWAY): void {
    this.cleanup(reason);
    this.closeSocket(code, reason);
  }

  private onFrame(data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.state.phase === 'closed') return;
    let msg: HostToVcenter;
    try {
      if (!isBinary) throw new EsxError('PROTOCOL_ERROR', 'text frame on the host link; frames are binary msgpack');
      msg = decodeFrame(data as Buffer | ArrayBuffer | Buffer[], hostToVcenterSchema);
    } catch (err) {
      this.fail(toEsxError(err), CLOSE_PROTOCOL);
      return;
    }
    this.lastSeenAt = Date.now();
    if (this.state.phase === 'hello') {
      if (msg.type !== 'hello') {
        this.fail(new EsxError('PROTOCOL_ERROR', `expected hello first, got ${msg.type}`), CLOSE_PROTOCOL);
        return;
      }
      this.onHello(msg);
      return;
    }
    switch (msg.type) {
      case 'hello':
        this.fail(new EsxError('PROTOCOL_ERROR', 'hello on an already registered link'), CLOSE_PROTOCOL);
        return;
      case 'response':
        this.onResponse(msg);
        return;
      case 'heartbeat':
        this.send({ type: 'heartbeatAck', seq: msg.seq });
        this.dispatch(msg);
        return;
      case 'stats':
      case 'vmEvent':
        this.dispatch(msg);
        return;
    }
  }

  /** Hand a message to the server; a failure there is logged, never thrown into ws. */
  private dispatch(msg: SessionMessage): void {
    try {
      this.handlers.onMessage(this, msg);
    } catch (err) {
      this.logger.error({ err, type: msg.type }, 'handling a host message failed');
    }
  }

  private onHello(hello: HelloMessage): void {
    clearTimeout(this.helloTimer);
    let outcome: HelloOutcome;
    try {
      outcome = this.handlers.onHello(this, hello);
    } catch (err) {
      outcome = { ok: false, error: toEsxError(err) };
    }
    if (!outcome.ok) {
      this.logger.warn({ host: hello.host.name, code: outcome.error.code, reason: outcome.error.message }, 'host rejected');
      this.send({ type: 'reject', error: { code: outcome.error.code, message: outcome.error.message } });
      this.cleanup(`rejected: ${outcome.error.code}`);
      this.closeSocket(CLOSE_POLICY, outcome.error.code);
      return;
    }
    this.identity = { hostId: outcome.hostId, hostName: hello.host.name };
    this.state = { phase: 'active', ...this.identity };
    this.logger = this.logger.child({ host: hello.host.name });
    this.pending = new PendingRequests(this.opts.maxPendingRequests, this.opts.requestTimeoutMs, hello.host.name);
    this.send(outcome.welcome);
    this.logger.info({ hostId: outcome.hostId }, 'host link: hello -> active');
  }

  private onResponse(msg: Extract<HostToVcenter, { type: 'response' }>): void {
    const pending = this.pending!;
    const known = msg.ok ? pending.resolve(msg.id, msg.result) : pending.reject(msg.id, new EsxError(msg.error.code, msg.error.message));
    if (!known) this.logger.warn({ id: msg.id }, 'response to an unknown or timed-out request ignored');
  }

  /** A protocol violation: log it, tell the peer if it is still registering, close. */
  private fail(err: EsxError, code: number): void {
    if (this.state.phase === 'closed') return;
    this.logger.warn({ code: err.code, reason: err.message, phase: this.state.phase }, 'host link protocol error, closing');
    if (this.state.phase === 'hello') this.send({ type: 'reject', error: { code: err.code, message: err.message } });
    this.cleanup(`${err.code}: ${err.message}`);
    this.closeSocket(code, err.code);
  }

  private send(msg: VcenterToHost): void {
    if (this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(encodeFrame(msg), { binary: true }, (err) => {
      if (err) this.logger.debug({ err: err.message }, 'send on host link failed');
    });
  }

  private closeSocket(code: number, reason: string): void {
    try {
      this.socket.close(code, reason.slice(0, 120));
    } catch {
      this.socket.terminate();
    }
    // A peer that does not answer the close handshake is cut off (bounded wait).
    setTimeout(() => this.socket.terminate(), 2000).unref();
  }

  /** Idempotent end of the session: timers, pending requests, the handler. */
  private cleanup(reason: string): void {
    if (this.state.phase === 'closed') return;
    const was = this.state;
    this.state = { phase: 'closed', reason };
    clearTimeout(this.helloTimer);
    this.pending?.failAll(new EsxError('HOST_DISCONNECTED', `host ${was.phase === 'active' ? was.hostName : ''} disconnected: ${reason}`));
    this.logger.info({ reason }, `host link: ${was.phase} -> closed`);
    if (was.phase !== 'active') return;
    try {
      this.handlers.onClose(this, reason);
    } catch (err) {
      this.logger.error({ err }, 'recording the host disconnection failed');
    }
  }
}
