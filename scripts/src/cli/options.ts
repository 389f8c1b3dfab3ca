/** Flag parsing helpers shared by the commands: flags > environment > defaults. */
import { InvalidArgumentError } from 'commander';
import { EsxError, LOG_LEVELS, parseIntArg, parseSizeMiB } from '@esxemu/shared';

function wrap<T>(fn: (v: string) => T): (v: string) => T {
  return (v) => {
    try {
      return fn(v);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof EsxError ? err.message : String(err));
    }
  };
}

export const intArg = (what: string, min: number, max: number) => wrap((v) => parseIntArg(v, what, min, max));
export const portArg = (what = 'port') => intArg(what, 0, 65535);
export const sizeMiBArg = (what: string) =>
  wrap((v) => {
    const mib = parseSizeMiB(v, what);
    if (!Number.isInteger(mib)) throw new EsxError('INVALID_ARGUMENT', `${what} must be a whole number of MiB, got '${v}'`);
    return mib;
  });
export const logLevelArg = wrap((v) => {
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new EsxError('INVALID_ARGUMENT', `log level must be one of ${LOG_LEVELS.join(', ')}`);
  return v;
});

export function envOr(name: string, fallback: string): string {
  const v = process.env[name];
  return v !== undefined && v !== '' ? v : fallback;
}
