/**
 * The vMotion listener: where other hosts connect to send this host a running VM. vMotion
 * itself comes later; for now the listener holds the host's migration address and answers any
 * connection with one JSON error line (NOT_IMPLEMENTED) and closes it.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { EsxError, toEsxError, type Logger } from '@esxemu/shared';

/** Connections open at once at most. */
const MAX_CONNECTIONS = 64;
/** A connection is closed after this long whatever the peer does. */
const SOCKET_TIMEOUT_MS = 5000;

export class MigrationListener {
  private constructor(
    private readonly server: Server,
    private readonly logger: Logger,
  ) {}

  /** Bind host:port (0 = ephemeral). PORT_IN_USE / ADDRESS_UNAVAILABLE if it cannot. */
  static async listen(host: string, port: number, logger: Logger): Promise<MigrationListener> {
    const server = createServer((socket) => answer(socket));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(toEsxError(err));
      server.once('error', onError);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => logger.error({ err }, 'migration listener error'));
    return new MigrationListener(server, logger);
  }

  /** host and port actually bound. */
  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 2000);
      this.server.close(() => {
        clearTimeout(t);
        resolve();
      });
    });
    this.logger.debug('migration listener closed');
  }
}

function answer(socket: Socket): void {
  socket.setTimeout(SOCKET_TIMEOUT_MS, () => socket.destroy());
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  const err = new EsxError('NOT_IMPLEMENTED', 'vMotion is not implemented on this host yet');
  socket.end(`${JSON.stringify({ error: err.toJSON() })}\n`);
}

/** host:port, with brackets around an IPv6 host. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
