/**
 * webserver: a guest that answers HTTP through its virtual NIC and keeps its counters in guest
 * RAM, so a client polling it during a migration sees the count go on from where it was.
 *
 *   GET /       200 text/plain        "hello from <ip>: request <n>\n"
 *   GET /stats  200 application/json  {"requests":n,"ok":..,"notFound":..,"methodNotAllowed":..,
 *                                      "bytesServed":..,"port":..,"ip":".."} (read from RAM)
 *   GET other   404, any other method 405.
 * A query string is ignored. Counters count the request being answered; bytesServed counts
 * the bodies of the replies sent before it.
 *
 * Each step takes at most WEBSERVER_MAX_REQUESTS_PER_STEP requests from the NIC (with no NIC
 * it only ticks). Cost: WEBSERVER_IDLE_STEP_CYCLES plus WEBSERVER_REQUEST_CYCLES per request.
 * Demand: the guest wants WEBSERVER_TICK_HZ steps per second of virtual time, each costing the
 * idle tick plus the smoothed number of requests per step (R_WS_LOAD, an exponential average
 * over about 2^WEBSERVER_LOAD_SHIFT steps, 16.16 fixed point) times the cost of a request:
 *   demandMhz = WEBSERVER_TICK_HZ * (IDLE + load * REQUEST) / 1e6  (10 MHz idle, +100 MHz per
 *   request per step, i.e. per 1,000 requests/s).
 * When the VMM grants less, steps come slower, more requests wait per step, and the estimate,
 * hence the demand, rises: an overloaded guest asks for more CPU.
 *
 * Registers: R_WS_PORT, R_WS_LOAD. Page 0: the WS_OFF_* counters (u32, bytes served u64).
 */
import { EsxError, type WorkloadSpec } from '@esxemu/shared/core';
import type { GuestMemory } from '../sdk/guest-memory.js';
import type { NicReply, NicRequest } from '../sdk/nic.js';
import { R_GP0, type Registers } from '../sdk/registers.js';
import type { Workload } from '../sdk/workload.js';

export const R_WS_PORT = R_GP0;
export const R_WS_LOAD = R_GP0 + 1;

export const WS_OFF_REQUESTS = 0;
export const WS_OFF_OK = 4;
export const WS_OFF_NOT_FOUND = 8;
export const WS_OFF_METHOD_NOT_ALLOWED = 12;
export const WS_OFF_BYTES_LO = 16;
export const WS_OFF_BYTES_HI = 20;

/** Requests taken from the NIC per step at most. */
export const WEBSERVER_MAX_REQUESTS_PER_STEP = 16;
/** Virtual cycles of a step, before its requests. */
export const WEBSERVER_IDLE_STEP_CYCLES = 10_000;
/** Virtual cycles per request answered. */
export const WEBSERVER_REQUEST_CYCLES = 100_000;
/** Steps per second of virtual time the guest wants (its timer tick). */
export const WEBSERVER_TICK_HZ = 1_000;
/** The load estimate moves by 1/2^shift of the difference each step. */
export const WEBSERVER_LOAD_SHIFT = 6;

const LOAD_ONE = 0x1_0000;
const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json';
const utf8 = new TextEncoder();

export type WebserverSpec = Extract<WorkloadSpec, { kind: 'webserver' }>;

/** Requests per step, smoothed, as the guest last estimated it. */
export function webserverLoad(regs: Registers): number {
  return regs.get(R_WS_LOAD) / LOAD_ONE;
}

function bump(mem: GuestMemory, off: number): number {
  const n = (mem.readU32(off) + 1) >>> 0;
  mem.writeU32(off, n);
  return n;
}

function bytesServed(mem: GuestMemory): number {
  return mem.readU32(WS_OFF_BYTES_HI) * 0x1_0000_0000 + mem.readU32(WS_OFF_BYTES_LO);
}

function addBytesServed(mem: GuestMemory, n: number): void {
  const v = bytesServed(mem) + n;
  mem.writeU32(WS_OFF_BYTES_LO, v >>> 0);
  mem.writeU32(WS_OFF_BYTES_HI, Math.floor(v / 0x1_0000_0000) >>> 0);
}

/** Answer one request; all counters are read and written in guest memory. */
function serve(mem: GuestMemory, ip: string, port: number, req: NicRequest): NicReply {
  const requests = bump(mem, WS_OFF_REQUESTS);
  const q = req.path.search(/[?#]/);
  const path = q < 0 ? req.path : req.path.slice(0, q);
  let status: number;
  let contentType = TEXT;
  let text: string;
  if (req.method !== 'GET') {
    bump(mem, WS_OFF_METHOD_NOT_ALLOWED);
    status = 405;
    text = `method ${req.method.slice(0, 32)} not allowed: this server answers GET\n`;
  } else if (path === '/') {
    bump(mem, WS_OFF_OK);
    status = 200;
    text = `hello from ${ip}: request ${requests}\n`;
  } else if (path === '/stats') {
    bump(mem, WS_OFF_OK);
    status = 200;
    contentType = JSON_TYPE;
    text = JSON.stringify({
      requests: mem.readU32(WS_OFF_REQUESTS),
      ok: mem.readU32(WS_OFF_OK),
      notFound: mem.readU32(WS_OFF_NOT_FOUND),
      methodNotAllowed: mem.readU32(WS_OFF_METHOD_NOT_ALLOWED),
      bytesServed: bytesServed(mem),
      port,
      ip,
    });
  } else {
    bump(mem, WS_OFF_NOT_FOUND);
    status = 404;
    text = `not found: ${path.slice(0, 200)}\n`;
  }
  const body = utf8.encode(text);
  addBytesServed(mem, body.length);
  return { id: req.id, status, contentType, body };
}

export const webserver: Workload<WebserverSpec> = {
  kind: 'webserver',

  boot(ctx, spec) {
    if (!(Number.isInteger(spec.port) && spec.port >= 1 && spec.port <= 65535)) {
      throw new EsxError('INVALID_ARGUMENT', `webserver port must be an integer from 1 to 65535, got ${spec.port}`);
    }
    ctx.regs.set(R_WS_PORT, spec.port);
    ctx.regs.set(R_WS_LOAD, 0);
    for (const off of [WS_OFF_REQUESTS, WS_OFF_OK, WS_OFF_NOT_FOUND, WS_OFF_METHOD_NOT_ALLOWED, WS_OFF_BYTES_LO, WS_OFF_BYTES_HI]) {
      ctx.mem.writeU32(off, 0);
    }
  },

  step(ctx) {
    const { mem, regs, nic } = ctx;
    let served = 0;
    if (nic) {
      const port = regs.get(R_WS_PORT);
      while (served < WEBSERVER_MAX_REQUESTS_PER_STEP) {
        const req = nic.receive();
        if (!req) break;
        nic.transmit(serve(mem, nic.ip, port, req));
        served++;
      }
    }
    const load = regs.get(R_WS_LOAD);
    regs.set(R_WS_LOAD, load + Math.trunc((served * LOAD_ONE - load) / (1 << WEBSERVER_LOAD_SHIFT)));
    return WEBSERVER_IDLE_STEP_CYCLES + served * WEBSERVER_REQUEST_CYCLES;
  },

  demandMhz(ctx) {
    return (WEBSERVER_TICK_HZ * (WEBSERVER_IDLE_STEP_CYCLES + webserverLoad(ctx.regs) * WEBSERVER_REQUEST_CYCLES)) / 1e6;
  },
};
