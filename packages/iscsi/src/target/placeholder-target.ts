/**
 * The iSCSI target process, walking-skeleton stage: a real TCP listener on the iSCSI port that
 * reads Basic Header Segments (48 bytes, length-checked) and answers every Login Request with a
 * Login Response of status class 3 (target error), detail 1 (service unavailable), then closes,
 * as RFC 7143 section 11.13.5 allows a target that cannot serve yet. The full target (login
 * negotiation, SCSI command sets, backing stores) replaces this in the iSCSI issue; the process
 * shape (flags, ready file, logs) stays.
 */
import net from 'node:net';
import { EsxError, toEsxError, type Logger } from '@esxemu/shared';

export const ISCSI_DEFAULT_PORT = 3260;
const BHS_BYTES = 48;
const OP_LOGIN_REQUEST = 0x03;
const OP_LOGIN_RESPONSE = 0x23;
/** Never buffer more than this from a peer before a header is complete. */
const MAX_BUFFERED_BYTES = 64 * 1024;

export interface IscsiTargetOptions {
  listenHost: string;
  port: number;
  logger: Logger;
}

export interface IscsiTarget {
  address: string;
  port: number;
  close(): Promise<void>;
}

export function buildLoginReject(request: Buffer): Buffer {
  const rsp = Buffer.alloc(BHS_BYTES);
  rsp[0] = OP_LOGIN_RESPONSE;
  request.copy(rsp, 8, 8, 14); // ISID
  request.copy(rsp, 16, 16, 20); // Initiator Task Tag
  rsp[36] = 0x03; // status class: target error
  rsp[37] = 0x01; // status detail: service unavailable
  return rsp;
}

export async function startIscsiTarget(opts: IscsiTargetOptions): Promise<IscsiTarget> {
  const log = opts.logger;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    log.info({ peer }, 'initiator connected');
    let buffered = Buffer.alloc(0);
    socket.setTimeout(30_000, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length > MAX_BUFFERED_BYTES) {
        log.warn({ peer, code: 'PROTOCOL_ERROR' }, 'peer sent too much before login; disconnecting');
        socket.destroy();
        return;
      }
      if (buffered.length < BHS_BYTES) return;
      const bhs = buffered.subarray(0, BHS_BYTES);
      const opcode = bhs[0]! & 0x3f;
      if (opcode === OP_LOGIN_REQUEST) {
        log.info({ peer }, 'login refused: target not serving LUNs yet (status 0x0301)');
        socket.end(buildLoginReject(bhs));
      } else {
        log.warn({ peer, opcode, code: 'PROTOCOL_ERROR' }, 'first PDU is not a Login Request; disconnecting');
        socket.destroy();
      }
    });
    socket.on('error', (err) => log.debug({ peer, err: err.message }, 'socket error'));
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(toEsxError(err)));
    server.listen(opts.port, opts.listenHost, () => resolve());
  });
  server.on('error', (err) => log.error({ err: err.message }, 'listener error'));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new EsxError('INTERNAL', 'listener has no TCP address');
  log.info({ address: `${addr.address}:${addr.port}` }, 'iSCSI target listening');
  return {
    address: `${addr.address}:${addr.port}`,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
