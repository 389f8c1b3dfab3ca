/**
 * Secrets kept in the data directory (the client API token, the cluster secret): random at
 * first start, written 0600 atomically (temp file + rename), read back on every later start.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '@esxemu/shared';
import { EsxError } from '@esxemu/shared';

export const TOKEN_FILE = 'token';
export const CLUSTER_SECRET_FILE = 'cluster-secret';
const SECRET_MAX_BYTES = 1024;

export function loadOrCreateSecret(dataDir: string, file: string, logger: Logger): string {
  const path = join(dataDir, file);
  let existing: string | null = null;
  try {
    existing = readFileSync(path, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new EsxError('INVALID_ARGUMENT', `cannot read ${path}: ${(err as Error).message}`);
    }
  }
  if (existing !== null && existing.length > SECRET_MAX_BYTES) {
    throw new EsxError('INVALID_ARGUMENT', `${path} holds more than ${SECRET_MAX_BYTES} bytes; it should hold one secret`);
  }
  if (existing) return existing;
  if (existing !== null) logger.warn({ path }, 'secret file is empty, writing a new secret');
  const secret = randomBytes(32).toString('base64url');
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, secret + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
  logger.info({ path }, 'wrote new secret');
  return secret;
}
