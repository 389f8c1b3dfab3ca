/**
 * The target process's configuration: targets (IQN, alias, portal group tag, portals to
 * announce), their LUNs (number, backing file or memory, size, block size), the initiator ACL,
 * optional LUN masking per initiator, CHAP (one-way and mutual), and the session tunables.
 *
 * Sources, in order: a JSON file (`loadTargetConfig`), flags (`configFromFlags`), or the default
 * (`defaultTargetConfig`): one target `iqn.2026-11.io.esxemu:datastore1` whose LUN 0 is a sparse
 * file `<dataDir>/lun0.img` of 1 GiB, or a memory LUN when there is no data directory.
 *
 * Example file:
 *   {
 *     "targets": [{
 *       "name": "iqn.2026-11.io.esxemu:datastore1", "alias": "datastore1", "tpgt": 1,
 *       "luns": [{ "lun": 0, "file": "lun0.img", "size": "10GiB", "io": "auto", "ats": true }, { "lun": 1, "memory": true, "size": 64 }],
 *       "acl": ["iqn.2026-11.io.esxemu:esx01", "iqn.2026-11.io.esxemu:esx02"],
 *       "lunMasking": { "iqn.2026-11.io.esxemu:esx02": [0] },
 *       "chap": { "user": "esx", "secret": "0123456789ab", "mutualUser": "san", "mutualSecret": "ba9876543210" }
 *     }],
 *     "session": { "queueDepth": 128, "maxRecvDataSegmentLength": 262144 }
 *   }
 * Sizes are MiB numbers or strings with a unit ("512MiB", "2GiB"). Relative file paths are
 * resolved against the data directory (or the config file's directory). Every validation error
 * is an EsxError INVALID_ARGUMENT naming the field.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { EsxError, MIB, parseSizeMiB } from '@esxemu/shared';
import { FILE_IO_MODES, type FileIoMode } from '../backstore/file-io.js';
import type { ChapSecrets } from '../session/chap.js';
import { isIscsiName } from '../session/keys.js';
import { DEFAULT_SESSION_LIMITS, type SessionLimits } from '../session/limits.js';
import { DEFAULT_TARGET_KEY_SETTINGS, validateTargetKeySettings, type TargetKeySettings } from '../session/negotiation.js';

export const DEFAULT_TARGET_NAME = 'iqn.2026-11.io.esxemu:datastore1';
export const DEFAULT_LUN_SIZE_MIB = 1024;
export const DEFAULT_LUN_FILE = 'lun0.img';

export type LunBacking = { kind: 'file'; path: string } | { kind: 'memory' };

export interface LunConfig {
  lun: number;
  backing: LunBacking;
  sizeBytes: number;
  blockSize: number;
  readOnly: boolean;
  /** File LUNs: how data moves to and from the file (backstore/file-io.ts). */
  io: FileIoMode;
  /** Offer COMPARE AND WRITE (VAAI ATS); false makes hosts lock with reservations. */
  ats: boolean;
}

export interface TargetDefinition {
  name: string;
  alias?: string;
  tpgt: number;
  /** `host:port` to announce in SendTargets; empty = the address the initiator reached. */
  portals: string[];
  luns: LunConfig[];
  /** Initiators allowed to log in: 'all' or a list of iSCSI names. */
  acl: 'all' | string[];
  /** LUNs each listed initiator sees; initiators not listed see every LUN. */
  lunMasking?: Record<string, number[]>;
  chap?: ChapSecrets;
}

export interface TargetConfig {
  targets: TargetDefinition[];
  discoveryChap?: ChapSecrets;
  keys: TargetKeySettings;
  limits: SessionLimits;
}

const iscsiName = z.string().refine(isIscsiName, { message: 'must be an iSCSI name (iqn.yyyy-mm.reversed.domain[:id], eui.<16 hex> or naa.<16 or 32 hex>)' });
const chapValue = z.string().min(1).max(255);
const chapSchema = z
  .object({ user: chapValue, secret: chapValue, mutualUser: chapValue.optional(), mutualSecret: chapValue.optional() })
  .strict()
  .refine((c) => (c.mutualUser === undefined) === (c.mutualSecret === undefined), { message: 'mutualUser and mutualSecret go together' })
  .refine((c) => c.mutualSecret === undefined || c.mutualSecret !== c.secret, { message: 'the mutual secret must differ from the initiator secret (RFC 7143 12.1.3)', path: ['mutualSecret'] });
const size = z.union([z.number().positive(), z.string().min(1)]);
const lunSchema = z
  .object({
    lun: z.number().int().min(0).max(16383),
    file: z.string().min(1).optional(),
    memory: z.boolean().optional(),
    size: size.optional(),
    blockSize: z.union([z.literal(512), z.literal(4096)]).default(512),
    readOnly: z.boolean().default(false),
    io: z.enum(FILE_IO_MODES).default('auto'),
    ats: z.boolean().default(true),
  })
  .strict()
  .refine((l) => !(l.file !== undefined && l.memory === true), { message: 'a LUN is either a file or memory, not both' });
const targetSchema = z
  .object({
    name: iscsiName,
    alias: z.string().min(1).max(255).optional(),
    tpgt: z.number().int().min(1).max(65535).default(1),
    portals: z.array(z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port')).default([]),
    luns: z.array(lunSchema).min(1).max(256),
    acl: z.union([z.literal('all'), z.array(iscsiName).min(1)]).default('all'),
    lunMasking: z.record(z.string(), z.array(z.number().int().min(0).max(16383))).optional(),
    chap: chapSchema.optional(),
  })
  .strict();
const sessionSchema = z
  .object({
    queueDepth: z.number().int().min(1).max(1024),
    maxRecvDataSegmentLength: z.number().int(),
    maxBurstLength: z.number().int(),
    firstBurstLength: z.number().int(),
    maxOutstandingR2T: z.number().int(),
    initialR2T: z.boolean(),
    immediateData: z.boolean(),
    headerDigest: z.array(z.enum(['CRC32C', 'None'])).min(1),
    dataDigest: z.array(z.enum(['CRC32C', 'None'])).min(1),
    maxCommandBytes: z.number().int().min(512).max(64 * MIB),
    loginTimeoutMs: z.number().int().min(100).max(600_000),
    nopIntervalMs: z.number().int().min(0).max(3_600_000),
    nopTimeoutMs: z.number().int().min(100).max(3_600_000),
    maxSessions: z.number().int().min(1).max(65534),
  })
  .partial()
  .strict();
const configSchema = z
  .object({
    targets: z.array(targetSchema).min(1).max(1024),
    discoveryChap: chapSchema.optional(),
    session: sessionSchema.optional(),
  })
  .strict();

function invalid(field: string, message: string): EsxError {
  return new EsxError('INVALID_ARGUMENT', `target config: ${field}: ${message}`, { field });
}

export interface ConfigPaths {
  /** Where relative LUN files go (the target's data directory). */
  dataDir?: string;
  /** Fallback base for relative paths: the config file's directory. */
  baseDir?: string;
}

/** Validate a parsed JSON configuration and resolve it (paths, sizes, defaults). */
export function parseTargetConfig(input: unknown, paths: ConfigPaths = {}): TargetConfig {
  const r = configSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw invalid(issue.path.length ? issue.path.join('.') : '(root)', issue.message);
  }
  const c = r.data;
  const base = paths.dataDir ?? paths.baseDir;
  const names = new Set<string>();
  const files = new Set<string>();
  const targets: TargetDefinition[] = c.targets.map((t, ti) => {
    const at = `targets.${ti}`;
    if (names.has(t.name)) throw invalid(`${at}.name`, `duplicate target ${t.name}`);
    names.add(t.name);
    const lunNumbers = new Set<number>();
    const luns: LunConfig[] = t.luns.map((l, li) => {
      const field = `${at}.luns.${li}`;
      if (lunNumbers.has(l.lun)) throw invalid(`${field}.lun`, `duplicate LUN ${l.lun} in ${t.name}`);
      lunNumbers.add(l.lun);
      let sizeMiB: number;
      try {
        sizeMiB = parseSizeMiB(l.size ?? DEFAULT_LUN_SIZE_MIB, 'size');
      } catch (err) {
        throw invalid(`${field}.size`, (err as Error).message);
      }
      const sizeBytes = Math.floor((sizeMiB * MIB) / l.blockSize) * l.blockSize;
      if (sizeBytes < l.blockSize) throw invalid(`${field}.size`, `must hold at least one ${l.blockSize}-byte block`);
      let backing: LunBacking;
      if (l.memory) backing = { kind: 'memory' };
      else {
        const file = l.file ?? `${safeFileName(t.name)}-lun${l.lun}.img`;
        if (!isAbsolute(file) && !base) throw invalid(`${field}.file`, `relative path '${file}' needs a data directory (or use "memory": true)`);
        const path = isAbsolute(file) ? file : resolve(base!, file);
        if (files.has(path)) throw invalid(`${field}.file`, `${path} is used by two LUNs`);
        files.add(path);
        backing = { kind: 'file', path };
      }
      return { lun: l.lun, backing, sizeBytes, blockSize: l.blockSize, readOnly: l.readOnly, io: l.io, ats: l.ats };
    });
    if (t.lunMasking) {
      for (const [initiator, list] of Object.entries(t.lunMasking)) {
        if (!isIscsiName(initiator)) throw invalid(`${at}.lunMasking`, `'${initiator}' is not an iSCSI name`);
        for (const n of list) if (!lunNumbers.has(n)) throw invalid(`${at}.lunMasking.${initiator}`, `LUN ${n} does not exist in ${t.name}`);
      }
    }
    return {
      name: t.name,
      ...(t.alias !== undefined ? { alias: t.alias } : {}),
      tpgt: t.tpgt,
      portals: t.portals,
      luns,
      acl: t.acl,
      ...(t.lunMasking ? { lunMasking: t.lunMasking } : {}),
      ...(t.chap ? { chap: stripUndefined(t.chap) } : {}),
    };
  });

  const s = c.session ?? {};
  const keys: TargetKeySettings = {
    ...DEFAULT_TARGET_KEY_SETTINGS,
    ...pick(s, ['maxRecvDataSegmentLength', 'maxBurstLength', 'firstBurstLength', 'maxOutstandingR2T', 'initialR2T', 'immediateData', 'headerDigest', 'dataDigest']),
  };
  if (s.maxBurstLength !== undefined && s.firstBurstLength === undefined) keys.firstBurstLength = Math.min(keys.firstBurstLength, keys.maxBurstLength);
  const bad = validateTargetKeySettings(keys);
  if (bad) throw invalid('session', bad);
  const limits: SessionLimits = { ...DEFAULT_SESSION_LIMITS, ...pick(s, ['queueDepth', 'maxCommandBytes', 'loginTimeoutMs', 'nopIntervalMs', 'nopTimeoutMs', 'maxSessions']) };
  limits.maxTasks = Math.max(limits.maxTasks, limits.queueDepth * 2);
  return { targets, ...(c.discoveryChap ? { discoveryChap: stripUndefined(c.discoveryChap) } : {}), keys, limits };
}

/** Read and validate a JSON configuration file. */
export function loadTargetConfig(file: string, paths: ConfigPaths = {}): TargetConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new EsxError('INVALID_ARGUMENT', `cannot read the target config ${file}: ${(err as Error).message}`, { field: 'config' });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new EsxError('INVALID_ARGUMENT', `target config ${file} is not valid JSON: ${(err as Error).message}`, { field: 'config' });
  }
  return parseTargetConfig(json, { ...paths, baseDir: paths.baseDir ?? dirname(resolve(file)) });
}

export interface TargetFlags {
  dataDir?: string;
  targetName?: string;
  alias?: string;
  /** Size of LUN 0 (MiB number or "2GiB"). */
  lunSize?: string | number;
  /** How LUN 0's file is read and written (auto, sync, threadpool). */
  lunIo?: string;
  /** LUN 0 offers COMPARE AND WRITE (default true). */
  ats?: boolean;
  /** Use a memory LUN even with a data directory. */
  memory?: boolean;
  /** Allowed initiators; absent = all. */
  acl?: string[];
  chapUser?: string;
  chapSecret?: string;
  mutualUser?: string;
  mutualSecret?: string;
  /** Portals to announce (`host:port`). */
  portals?: string[];
}

/** A one-target configuration from command-line flags (defaults as in `defaultTargetConfig`). */
export function configFromFlags(f: TargetFlags): TargetConfig {
  const chap =
    f.chapUser !== undefined || f.chapSecret !== undefined
      ? { user: f.chapUser, secret: f.chapSecret, ...(f.mutualUser !== undefined ? { mutualUser: f.mutualUser } : {}), ...(f.mutualSecret !== undefined ? { mutualSecret: f.mutualSecret } : {}) }
      : undefined;
  const useMemory = f.memory === true || f.dataDir === undefined;
  return parseTargetConfig(
    {
      targets: [
        {
          name: f.targetName ?? DEFAULT_TARGET_NAME,
          alias: f.alias ?? 'datastore1',
          luns: [{ lun: 0, ...(useMemory ? { memory: true } : { file: DEFAULT_LUN_FILE }), size: f.lunSize ?? DEFAULT_LUN_SIZE_MIB, ...(f.lunIo !== undefined ? { io: f.lunIo } : {}), ...(f.ats !== undefined ? { ats: f.ats } : {}) }],
          ...(f.acl && f.acl.length ? { acl: f.acl } : {}),
          ...(chap ? { chap } : {}),
          ...(f.portals && f.portals.length ? { portals: f.portals } : {}),
        },
      ],
    },
    f.dataDir !== undefined ? { dataDir: f.dataDir } : {},
  );
}

/** The configuration used when none is given. */
export function defaultTargetConfig(dataDir?: string): TargetConfig {
  return configFromFlags(dataDir !== undefined ? { dataDir } : {});
}

function safeFileName(iqn: string): string {
  return iqn.replace(/[^A-Za-z0-9.-]+/g, '_');
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

function stripUndefined(c: { user: string; secret: string; mutualUser?: string | undefined; mutualSecret?: string | undefined }): ChapSecrets {
  return { user: c.user, secret: c.secret, ...(c.mutualUser !== undefined ? { mutualUser: c.mutualUser } : {}), ...(c.mutualSecret !== undefined ? { mutualSecret: c.mutualSecret } : {}) };
}

/** Where a data directory's LUN 0 lives by default. */
export function defaultLunPath(dataDir: string): string {
  return join(dataDir, DEFAULT_LUN_FILE);
}
