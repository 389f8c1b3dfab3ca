/**
 * The HTTP side of vcenter: one Fastify instance serving the client API (JSON under /api, the
 * event stream) and the host link (WebSocket at HOSTLINK_PATH). WebSocket frames are capped at
 * HOSTLINK_MAX_FRAME_BYTES, request bodies at API_BODY_LIMIT_BYTES.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import websocket from '@fastify/websocket';
import { HOSTLINK_MAX_FRAME_BYTES, HOSTLINK_PATH, STREAM_PATH } from '@esxemu/shared';
import { bearerAuth } from './auth.js';
import type { ApiDeps } from './deps.js';
import { apiErrorHandler, notFoundHandler } from './errors.js';
import { registerEventRoutes } from './routes-events.js';
import { registerHealthRoutes } from './routes-health.js';
import { registerInventoryRoutes } from './routes-inventory.js';
import { registerTaskRoutes } from './routes-tasks.js';
import { registerVmRoutes } from './routes-vms.js';

export const API_BODY_LIMIT_BYTES = 64 * 1024;

export async function buildHttpServer(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'api' }) as unknown as FastifyBaseLogger,
    // Requests are logged at debug by the onResponse hook below, not at info by Fastify.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: API_BODY_LIMIT_BYTES,
    // Bounded waits on shutdown and on slow clients.
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    return503OnClosing: true,
    forceCloseConnections: true,
  });
  await app.register(websocket, { options: { maxPayload: HOSTLINK_MAX_FRAME_BYTES } });
  // A POST without a body (power-on, power-off) is fine even when it says application/json.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (typeof body === 'string' && body.trim() === '') return done(null, undefined);
    return jsonParser(req, body as string, done);
  });
  app.setErrorHandler(apiErrorHandler);
  app.setNotFoundHandler(notFoundHandler);
  app.addHook('onRequest', bearerAuth(deps.token));
  app.addHook('onResponse', async (req, reply) => {
    req.log.debug({ method: req.method, url: req.url.split('?', 1)[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request');
  });

  app.get(HOSTLINK_PATH, { websocket: true }, (socket, req) => deps.hostServer.accept(socket, `${req.ip}:${req.socket.remotePort ?? 0}`));
  app.get(STREAM_PATH, { websocket: true }, (socket, req) => deps.stream.accept(socket, req.ip));

  registerHealthRoutes(app);
  registerInventoryRoutes(app, deps);
  registerVmRoutes(app, deps);
  registerTaskRoutes(app, deps);
  registerEventRoutes(app, deps);
  return app;
}
