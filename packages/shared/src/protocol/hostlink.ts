/**
 * The host <-> vcenter link: WebSocket, binary frames, each one msgpackr-encoded message.
 *
 *   host                                   vcenter
 *    | -- hello {secret, host, vms} -------> |   registration (or reconnect after a drop)
 *    | <------------- welcome {hostId} ------ |   or reject {code} and close
 *    | -- heartbeat {seq} (every 1 s) ------> |
 *    | <--------------- heartbeatAck {seq} -- |
 *    | -- stats {host, vms} (every few s) --> |
 *    | <---- request {id, op, args} --------- |   power on/off, reset
 *    | -- response {id, ok, result|error} --> |
 *    | -- vmEvent {vmId, event} ------------> |   unsolicited VM state changes
 *
 * Every frame is size-capped and validated against these schemas; a peer that sends garbage
 * gets a PROTOCOL_ERROR and is disconnected.
 */
import { Packr } from 'msgpackr';
import { z } from 'zod';
import { EsxError, ERROR_CODES } from '../errors.js';
import { nameSchema, vmConfigSchema } from './vm.js';

export const HOSTLINK_VERSION = 1;
export const HOSTLINK_PATH = '/hostlink';
/** Largest frame either side accepts. */
export const HOSTLINK_MAX_FRAME_BYTES = 1024 * 1024;

const errorBodySchema = z.object({
  code: z.enum(Object.keys(ERROR_CODES) as [keyof typeof ERROR_CODES, ...(keyof typeof ERROR_CODES)[]]),
  message: z.string(),
});

export const hostIdentitySchema = z.object({
  name: nameSchema,
  cpuCores: z.number().int().min(1).max(1024),
  cpuMhz: z.number().int().min(1).max(100_000),
  memoryMiB: z.number().int().min(1).max(16 * 1024 * 1024),
  /** host:port where this host accepts incoming migrations. */
  migrationAddress: z.string().min(1).max(255),
  version: z.string().max(64),
});
export type HostIdentity = z.infer<typeof hostIdentitySchema>;

export const vmRuntimeSchema = z.object({
  config: vmConfigSchema,
  powerState: z.enum(['poweredOn', 'poweredOff', 'suspended']),
  startedAt: z.number(),
});
export type VmRuntime = z.infer<typeof vmRuntimeSchema>;

const vmStatsSchema = z.object({
  vmId: z.string(),
  cpuDemandMhz: z.number(),
  cpuUsageMhz: z.number(),
  memConsumedMiB: z.number(),
  memActiveMiB: z.number(),
  steps: z.number(),
  uptimeS: z.number(),
  guest: z.record(z.string().max(64), z.number()).nullable().optional(),
});

/** The host's mount of the shared datastore, as it reports it. */
export const datastoreStatusSchema = z.object({
  url: z.string().max(512),
  state: z.enum(['mounting', 'mounted', 'error']),
  name: z.string().max(128).nullable(),
  uuid: z.string().max(64).nullable(),
  capacityBytes: z.number().nullable(),
  freeBytes: z.number().nullable(),
  liveHosts: z.array(z.string().max(128)).max(1024),
  error: z.string().max(2048).nullable(),
});

const hostStatsSchema = z.object({
  cpuCapacityMhz: z.number(),
  cpuDemandMhz: z.number(),
  cpuUsageMhz: z.number(),
  memCapacityMiB: z.number(),
  memConsumedMiB: z.number(),
  memActiveMiB: z.number(),
  rssMiB: z.number(),
  vmsRunning: z.number(),
  datastore: datastoreStatusSchema.nullable().optional(),
});

/** Operations vcenter asks of a host, with their argument and result shapes. */
export const hostOpSchemas = {
  'vm.powerOn': { args: z.object({ config: vmConfigSchema }), result: vmRuntimeSchema },
  'vm.powerOff': { args: z.object({ vmId: z.string() }), result: z.object({ vmId: z.string() }) },
  'vm.reset': { args: z.object({ vmId: z.string() }), result: vmRuntimeSchema },
  'vm.list': { args: z.object({}), result: z.object({ vms: z.array(vmRuntimeSchema) }) },
  /** Write a new VM's folder and files on the datastore; the .vmx as "[datastore] path". */
  'vm.createFiles': { args: z.object({ config: vmConfigSchema }), result: z.object({ vmxPath: z.string() }) },
  /** Remove a powered-off VM's files (FILE_LOCKED while a host holds them). */
  'vm.deleteFiles': { args: z.object({ name: z.string().max(64) }), result: z.object({}) },
  /** Read a .vmx from the datastore (registering a VM from its path). */
  'vm.readVmx': { args: z.object({ path: z.string().min(1).max(512) }), result: z.object({ config: vmConfigSchema }) },
} as const;
export type HostOp = keyof typeof hostOpSchemas;
export type HostOpArgs<O extends HostOp> = z.infer<(typeof hostOpSchemas)[O]['args']>;
export type HostOpResult<O extends HostOp> = z.infer<(typeof hostOpSchemas)[O]['result']>;
export const HOST_OPS = Object.keys(hostOpSchemas) as HostOp[];

export const hostToVcenterSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('hello'), protocol: z.number().int(), secret: z.string().max(1024), host: hostIdentitySchema, vms: z.array(vmRuntimeSchema).max(10_000) }),
  z.object({ type: z.literal('heartbeat'), seq: z.number().int().min(0), sentAt: z.number() }),
  z.object({ type: z.literal('stats'), host: hostStatsSchema, vms: z.array(vmStatsSchema).max(10_000) }),
  z.discriminatedUnion('ok', [
    z.object({ type: z.literal('response'), id: z.number().int().min(1), ok: z.literal(true), result: z.unknown() }),
    z.object({ type: z.literal('response'), id: z.number().int().min(1), ok: z.literal(false), error: errorBodySchema }),
  ]),
  z.object({
    type: z.literal('vmEvent'),
    vmId: z.string(),
    event: z.enum(['poweredOn', 'poweredOff', 'reset', 'crashed', 'diskError']),
    message: z.string().max(4096),
  }),
]);
export type HostToVcenter = z.infer<typeof hostToVcenterSchema>;

export const vcenterToHostSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('welcome'), hostId: z.string(), heartbeatIntervalMs: z.number().int().positive(), statsIntervalMs: z.number().int().positive() }),
  z.object({ type: z.literal('reject'), error: errorBodySchema }),
  z.object({ type: z.literal('heartbeatAck'), seq: z.number().int().min(0) }),
  z.object({ type: z.literal('request'), id: z.number().int().min(1), op: z.enum(HOST_OPS as [HostOp, ...HostOp[]]), args: z.unknown() }),
]);
export type VcenterToHost = z.infer<typeof vcenterToHostSchema>;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encodeFrame(msg: HostToVcenter | VcenterToHost): Buffer {
  return packr.pack(msg);
}

/** Decode and validate one frame; throws EsxError PROTOCOL_ERROR on anything malformed. */
export function decodeFrame<T>(data: Buffer | ArrayBuffer | Buffer[], schema: z.ZodType<T>): T {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  if (buf.length > HOSTLINK_MAX_FRAME_BYTES) {
    throw new EsxError('PAYLOAD_TOO_LARGE', `frame of ${buf.length} bytes exceeds ${HOSTLINK_MAX_FRAME_BYTES}`);
  }
  let raw: unknown;
  try {
    raw = packr.unpack(buf);
  } catch (err) {
    throw new EsxError('PROTOCOL_ERROR', `undecodable frame: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new EsxError('PROTOCOL_ERROR', `invalid message: ${summarizeZodError(parsed.error)}`);
  }
  return parsed.data;
}

export function summarizeZodError(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}
