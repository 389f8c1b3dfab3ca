/**
 * Logging: pino, JSON, one file per process, plus readable output on a terminal (pino-pretty)
 * or JSON lines on stdout when stdout is not a terminal.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import pretty from 'pino-pretty';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** Process name shown in every line, e.g. `vcenter`, `host esx01`. */
  name: string;
  /** Minimum level: trace, debug, info, warn, error, fatal, silent. */
  level?: string;
  /** JSON log file of this process; created with its directory. */
  file?: string;
  /** Write to stdout too (default: true). */
  stdout?: boolean;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? process.env['ESXEMU_LOG_LEVEL'] ?? 'info';
  const streams: pino.StreamEntry[] = [];
  if (opts.file) {
    mkdirSync(dirname(opts.file), { recursive: true });
    streams.push({ level: 'trace', stream: pino.destination({ dest: opts.file, mkdir: true, sync: true }) });
  }
  if (opts.stdout !== false) {
    if (process.stdout.isTTY) {
      streams.push({ level: 'trace', stream: pretty({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname', sync: true }) });
    } else {
      streams.push({ level: 'trace', stream: pino.destination({ dest: 1, sync: true }) });
    }
  }
  return pino({ name: opts.name, level, base: { pid: process.pid } }, pino.multistream(streams));
}

/** A logger that writes nothing (for library use and tests that do not care). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
