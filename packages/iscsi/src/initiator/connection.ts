/**
 * One TCP connection to a target portal, seen as a stream of PDUs: the transport's PduReader on
 * the receiving side, writePdus on the sending side, digests switched at the end of login.
 *
 * The owner (login, then the session) installs a handler; PDUs that arrive while no handler is
 * installed (between the final Login Response and the session taking over) wait in a small
 * bounded inbox. The connection ends once: `onClose` is called exactly one time with the reason.
 */
import net from 'node:net';
import { EsxError, type Logger } from '@esxemu/shared';
import { PduReader, TARGET_OPCODES, writePdus, type DigestSettings, type Pdu } from '../transport/index.js';

export interface ConnectionHandler {
  onPdu(pdu: Pdu): void;
  /** The connection ended (error, peer close or our close). Called once. */
  onClose(reason: EsxError): void;
}

export interface Portal {
  host: string;
  port: number;
}

/** Login-phase limit on a received data segment (RFC 7143 13.12: 8192 until negotiated). */
export const LOGIN_MAX_RECV_SEGMENT = 8192;
/** PDUs kept while no handler is installed. */
const MAX_INBOX = 64;

export function parsePortal(portal: string, defaultPort = 3260): Portal {
  // host:port, [v6]:port, host (default port); a ",tpgt" suffix as in TargetAddress is dropped.
  const s = portal.split(',')[0]!.trim();
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
  if (!m) throw new EsxError('INVALID_ARGUMENT', `bad iSCSI portal '${portal}' (want host:port)`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new EsxError('INVALID_ARGUMENT', `bad port in iSCSI portal '${portal}'`);
  return { host: m[1]!, port };
}

export function portalString(p: Portal): string {
  return p.host.includes(':') ? `[${p.host}]:${p.port}` : `${p.host}:${p.port}`;
}

export class IscsiConnection {
  readonly portal: Portal;
  readonly reader: PduReader;
  digests: DigestSettings = { headerDigest: false, dataDigest: false };
  private readonly socket: net.Socket;
  private readonly log: Logger;
  private handler: ConnectionHandler | null = null;
  private inbox: Pdu[] = [];
  private closedWith: EsxError | null = null;
  /** Time of the last PDU received (for NOP-Out pings on idle). */
  lastReceiveMs = Date.now();
  bytesSent = 0;

  private constructor(socket: net.Socket, portal: Portal, log: Logger) {
    this.socket = socket;
    this.portal = portal;
    this.log = log;
    this.reader = new PduReader(
      { maxRecvDataSegmentLength: LOGIN_MAX_RECV_SEGMENT, headerDigest: false, dataDigest: false },
      {
        onPdu: (pdu) => this.deliver(pdu),
        // At ErrorRecoveryLevel 0 a data digest error cannot be repaired: drop the connection,
        // recovery reissues what was not acknowledged (RFC 7143 7.8).
        onDataDigestError: (pdu) => this.close(new EsxError('PROTOCOL_ERROR', `data digest mismatch on ${pdu.opcodeName} from the target`, { reason: 'DATA_DIGEST' })),
        onError: (err) => this.close(err),
      },
    );
    socket.on('data', (chunk: Buffer) => {
      this.lastReceiveMs = Date.now();
      this.reader.push(chunk);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.close(new EsxError('TARGET_UNREACHABLE', `connection to ${portalString(portal)} failed: ${err.message}`, { reason: 'CONNECTION_ERROR', errno: err.code })));
    socket.on('close', () => this.close(new EsxError('TARGET_UNREACHABLE', `connection to ${portalString(portal)} closed by the target`, { reason: 'CONNECTION_CLOSED' })));
  }

  /** Open a TCP connection, bounded by `timeoutMs`. */
  static open(portal: Portal, timeoutMs: number, log: Logger): Promise<IscsiConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: portal.host, port: portal.port });
      const fail = (err: EsxError): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new EsxError('TIMEOUT', `TCP connect to ${portalString(portal)} timed out after ${timeoutMs} ms`, { reason: 'CONNECT_TIMEOUT', portal: portalString(portal) })), timeoutMs);
      socket.once('error', (err: NodeJS.ErrnoException) => fail(new EsxError('TARGET_UNREACHABLE', `TCP connect to ${portalString(portal)} failed: ${err.message}`, { reason: 'CONNECT_FAILED', errno: err.code, portal: portalString(portal) })));
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 10_000);
        log.debug({ portal: portalString(portal), local: `${socket.localAddress}:${socket.localPort}` }, 'iscsi connection: TCP connected');
        resolve(new IscsiConnection(socket, portal, log));
      });
    });
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  get closeReason(): EsxError | null {
    return this.closedWith;
  }

  setHandler(h: ConnectionHandler | null): void {
    this.handler = h;
    if (!h) return;
    if (this.closedWith) {
      h.onClose(this.closedWith);
      return;
    }
    while (this.inbox.length && this.handler === h && !this.closedWith) h.onPdu(this.inbox.shift()!);
  }

  /** Switch digests (both directions) and our receive limit, at the end of login. */
  enterFullFeature(digests: DigestSettings, maxRecvDataSegmentLength: number): void {
    this.digests = { ...digests };
    this.reader.settings = { ...digests, maxRecvDataSegmentLength };
  }

  send(pdus: readonly Pdu[]): void {
    if (this.closedWith) return;
    for (const p of pdus) this.bytesSent += 48 + p.data.length;
    writePdus(this.socket, pdus, this.digests);
  }

  close(reason: EsxError = new EsxError('CANCELLED', 'connection closed by the initiator', { reason: 'LOCAL_CLOSE' })): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    this.reader.destroy();
    this.socket.destroy();
    this.inbox = [];
    this.log.debug({ portal: portalString(this.portal), reason: reason.details?.['reason'], err: reason.message }, 'iscsi connection: closed');
    this.handler?.onClose(reason);
  }

  private deliver(pdu: Pdu): void {
    if (!TARGET_OPCODES.has(pdu.opcode)) {
      this.close(new EsxError('PROTOCOL_ERROR', `target sent ${pdu.opcodeName}, which is not a target opcode`, { reason: 'BAD_OPCODE', opcode: pdu.opcode }));
      return;
    }
    if (this.handler) {
      this.handler.onPdu(pdu);
      return;
    }
    if (this.inbox.length >= MAX_INBOX) {
      this.close(new EsxError('PROTOCOL_ERROR', `more than ${MAX_INBOX} PDUs arrived before the session started`, { reason: 'INBOX_FULL' }));
      return;
    }
    this.inbox.push(pdu);
  }
}
