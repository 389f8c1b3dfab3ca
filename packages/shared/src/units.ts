/** Sizes and units. Units go last in names: `memoryMiB`, `intervalMs`, `bandwidthBytesPerS`. */
import { EsxError } from './errors.js';

export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;
export const PAGES_PER_MIB = (1024 * 1024) / PAGE_SIZE;
export const MIB = 1024 * 1024;

export function mibToPages(mib: number): number {
  return Math.ceil(mib * PAGES_PER_MIB);
}

export function pagesToMiB(pages: number): number {
  return pages / PAGES_PER_MIB;
}

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?$/i;

/**
 * Parse a size given to a CLI flag ("512", "512M", "512MiB", "2G") into MiB. A bare number is
 * MiB. Anything else is rejected with INVALID_ARGUMENT.
 */
export function parseSizeMiB(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input <= 0) throw new EsxError('INVALID_ARGUMENT', `${what} must be a positive number of MiB, got ${input}`);
    return input;
  }
  const m = SIZE_RE.exec(input.trim());
  if (!m) throw new EsxError('INVALID_ARGUMENT', `${what} must look like 512, 512MiB or 2GiB, got '${input}'`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 'm').toLowerCase()[0];
  const mib = unit === 'b' ? n / MIB : unit === 'k' ? n / 1024 : unit === 'm' ? n : unit === 'g' ? n * 1024 : n * 1024 * 1024;
  if (!(mib > 0)) throw new EsxError('INVALID_ARGUMENT', `${what} must be positive, got '${input}'`);
  return mib;
}

/** Parse a positive integer CLI value, with bounds. */
export function parseIntArg(input: string | number, what: string, min: number, max: number): number {
  const n = typeof input === 'number' ? input : Number(input);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new EsxError('INVALID_ARGUMENT', `${what} must be an integer from ${min} to ${max}, got '${input}'`);
  }
  return n;
}
