/**
 * A VM's files on the datastore, as ESX lays them out (one folder per VM):
 *
 *   <vm>/<vm>.vmx         configuration, `key = "value"` lines (VMware's .vmx syntax)
 *   <vm>/<vm>.vmdk        disk descriptor (text), pointing at the extent below
 *   <vm>/<vm>-flat.vmdk   the disk's data extent, thin
 *   <vm>/<vm>.vswp        swap file: created at power-on, removed at power-off; its exclusive
 *                         lock is the "this VM runs on that host" lock
 *   <vm>/vmware.log       one line per power operation, appended by the host that runs the VM
 *
 * Parsing treats the files as hostile (anyone with the LUN can write them): sizes are bounded,
 * every field is checked through the shared VM schema, and a file that does not parse is
 * CORRUPT with the file's path, never a crash or a half-registered VM.
 */
import { EsxError, vmConfigSchema, type VmConfig } from '@esxemu/shared';

export const MAX_VMX_BYTES = 64 * 1024;
export const SECTOR = 512;

export interface VmPaths {
  dir: string;
  vmx: string;
  vmdk: string;
  flat: string;
  vswp: string;
  log: string;
}

export function vmPaths(name: string): VmPaths {
  return { dir: name, vmx: `${name}/${name}.vmx`, vmdk: `${name}/${name}.vmdk`, flat: `${name}/${name}-flat.vmdk`, vswp: `${name}/${name}.vswp`, log: `${name}/vmware.log` };
}

/** "[datastore1] vm1/vm1.vmx": a datastore path as vSphere writes it. */
export function datastorePath(label: string, path: string): string {
  return `[${label}] ${path}`;
}

/** "[label] path" or a bare path -> the path inside the datastore. */
export function parseDatastorePath(p: string): string {
  const m = /^\[([^\]]+)\]\s*(.+)$/.exec(p.trim());
  const path = (m ? m[2]! : p).trim().replace(/^\/+/, '');
  if (!path || path.includes('..')) throw new EsxError('INVALID_ARGUMENT', `'${p}' is not a datastore path like "[datastore1] vm1/vm1.vmx"`);
  return path;
}

const quote = (v: string | number): string => `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

export function encodeVmx(c: VmConfig): Buffer {
  const lines: [string, string | number][] = [
    ['.encoding', 'UTF-8'],
    ['config.version', '8'],
    ['virtualHW.version', '7'],
    ['displayName', c.name],
    ['memSize', c.memoryMiB],
    ['numvcpus', c.vcpus],
    ['esxemu.id', c.id],
    ['esxemu.seed', c.seed],
    ['esxemu.ip', c.ip],
    ['esxemu.workload', JSON.stringify(c.workload)],
  ];
  if (c.diskMiB !== undefined) lines.push(['scsi0.present', 'TRUE'], ['scsi0:0.present', 'TRUE'], ['scsi0:0.fileName', `${c.name}.vmdk`], ['esxemu.diskMiB', c.diskMiB]);
  lines.push(['sched.swap.derivedName', `${c.name}.vswp`]);
  return Buffer.from(lines.map(([k, v]) => `${k} = ${quote(v)}`).join('\n') + '\n', 'utf8');
}

export function parseVmx(data: Buffer, path: string): VmConfig {
  const corrupt = (why: string): EsxError => new EsxError('CORRUPT', `${path}: ${why}`, { path });
  if (data.length > MAX_VMX_BYTES) throw corrupt(`${data.length} bytes, more than a .vmx may hold (${MAX_VMX_BYTES})`);
  const kv = new Map<string, string>();
  const text = data.toString('utf8');
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9_.:]+)\s*=\s*"((?:[^"\\]|\\.)*)"$/.exec(line);
    if (!m) throw corrupt(`line ${i + 1} is not key = "value"`);
    kv.set(m[1]!, m[2]!.replace(/\\(.)/g, '$1'));
  }
  let workload: unknown;
  try {
    workload = JSON.parse(kv.get('esxemu.workload') ?? 'null');
  } catch {
    throw corrupt('esxemu.workload is not JSON');
  }
  const num = (k: string): number | undefined => (kv.has(k) ? Number(kv.get(k)) : undefined);
  const r = vmConfigSchema.safeParse({
    id: kv.get('esxemu.id'),
    name: kv.get('displayName'),
    memoryMiB: num('memSize'),
    vcpus: num('numvcpus'),
    workload,
    seed: num('esxemu.seed'),
    ip: kv.get('esxemu.ip'),
    ...(kv.has('esxemu.diskMiB') ? { diskMiB: num('esxemu.diskMiB') } : {}),
  });
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw corrupt(`${issue.path.join('.') || 'config'}: ${issue.message}`);
  }
  return r.data;
}

/** The text descriptor of a monolithic flat disk, as VMware writes it. */
export function encodeVmdkDescriptor(name: string, sizeBytes: number): Buffer {
  const sectors = Math.ceil(sizeBytes / SECTOR);
  return Buffer.from(
    ['# Disk DescriptorFile', 'version=1', 'CID=fffffffe', 'parentCID=ffffffff', 'createType="vmfs"', '', '# Extent description', `RW ${sectors} VMFS "${name}-flat.vmdk"`, '', '# The Disk Data Base', '#DDB', 'ddb.adapterType = "lsilogic"', 'ddb.thinProvisioned = "1"', ''].join('\n'),
    'utf8',
  );
}

/** The extent's file name and size from a descriptor (CORRUPT when it has none). */
export function parseVmdkDescriptor(data: Buffer, path: string): { extent: string; sizeBytes: number } {
  if (data.length > MAX_VMX_BYTES) throw new EsxError('CORRUPT', `${path}: too large for a disk descriptor`, { path });
  const m = /^RW\s+(\d+)\s+VMFS\s+"([^"/]+)"\s*$/m.exec(data.toString('utf8'));
  if (!m) throw new EsxError('CORRUPT', `${path}: no "RW <sectors> VMFS <file>" extent line`, { path });
  const sectors = Number(m[1]);
  if (!Number.isSafeInteger(sectors) || sectors < 1) throw new EsxError('CORRUPT', `${path}: bad extent size ${m[1]}`, { path });
  return { extent: m[2]!, sizeBytes: sectors * SECTOR };
}
