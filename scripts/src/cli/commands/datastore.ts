/**
 * Datastore commands: `esxemu datastore ls|hosts|browse|cat|fsck|mkfs` and the vmkfstools-style
 * `esxemu vmkfstools create|inflate|locks`. They talk straight to the iSCSI target, as ESX's own
 * tools talk to the LUN, not to vcenter:
 *
 *   --target iscsi://host:port/iqn/lun  >  ESXEMU_TARGET  >  the local cluster's target
 *   (cluster.json: the iscsi process's urls.iscsi, target DEFAULT_TARGET_NAME, LUN 0)
 *
 * Read-only commands (ls, hosts, browse, cat, fsck, locks) use the VMFS observer or fsck: no
 * heartbeat slot, no lock, not one write, so they are safe against a live cluster. Commands
 * that change the datastore (mkfs, create, inflate) log in, mount with hostId 'auto' under the
 * name cli-<hostname>-<pid> (a slot of its own, freed again by a clean unmount) and take the
 * same on-disk locks as the hosts: a disk a running VM holds is FILE_LOCKED, and mkfs refuses
 * while any host's heartbeat moves.
 *
 * Errors (printed by main.ts as `esxemu: CODE: message`, exit 1): TARGET_UNREACHABLE (nothing
 * listens, or no target configured), NOT_FORMATTED, NOT_FOUND (bad path), FILE_LOCKED,
 * NAME_IN_USE, INVALID_ARGUMENT, INVALID_STATE. fsck exits 1 when it finds errors.
 */
import { hostname } from 'node:os';
import { posix } from 'node:path';
import { Command } from 'commander';
import { encodeVmdkDescriptor, parseDatastorePath, parseVmdkDescriptor, vmfs } from '@esxemu/host';
import { DEFAULT_TARGET_NAME, formatIscsiUrl, IscsiInitiator, parseIscsiUrl, type IscsiUrl } from '@esxemu/iscsi';
import { EsxError, MIB, parseSizeMiB } from '@esxemu/shared';
import { clusterLayout } from '../../cluster/layout.js';
import { readClusterState } from '../../cluster/state.js';
import { globals, homeOf } from '../context.js';
import { intArg } from '../options.js';
import { printJson, printKeyValues, printTable, time } from '../output.js';
import { group } from './inventory.js';

const SECTOR = 512;

interface LunOpts {
  target?: string;
  window?: number;
}

/** The LUN to talk to: --target > ESXEMU_TARGET > the local cluster's iSCSI target. */
export function resolveTarget(cmd: Command, o: LunOpts): IscsiUrl {
  const given = o.target ?? process.env['ESXEMU_TARGET'];
  if (given) return parseIscsiUrl(given);
  const layout = clusterLayout(homeOf(globals(cmd)));
  const portal = readClusterState(layout.stateFile)?.processes.find((p) => p.role === 'iscsi')?.urls['iscsi'];
  if (!portal) throw new EsxError('TARGET_UNREACHABLE', `no iSCSI target to talk to: no local cluster in ${layout.home} (start one with 'esxemu cluster up') and no --target / ESXEMU_TARGET`);
  return { portal, targetName: DEFAULT_TARGET_NAME, lun: 0 };
}

/** This CLI process as a datastore host: unique per process, at most 64 bytes. */
function cliHostName(): string {
  return `cli-${hostname().slice(0, 40)}-${process.pid}`;
}

/** Log in, open the LUN, run `fn`, log out (whatever happens). */
async function withLun<T>(cmd: Command, o: LunOpts, fn: (dev: vmfs.IscsiBlockDevice, url: string) => Promise<T>): Promise<T> {
  const u = resolveTarget(cmd, o);
  const name = cliHostName();
  const init = await IscsiInitiator.connect({
    portal: u.portal,
    targetName: u.targetName,
    initiatorName: `iqn.2026-11.io.esxemu:${name.toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`,
    timeouts: { connectMs: 5000, loginMs: 5000, recoveryMs: 5000, commandMs: 15_000 },
  });
  try {
    return await fn(await vmfs.IscsiBlockDevice.open(init, { lun: u.lun, name }), formatIscsiUrl(u));
  } finally {
    await init.close().catch(() => undefined);
  }
}

function withObserver<T>(cmd: Command, o: LunOpts, fn: (obs: vmfs.VmfsObserver, url: string) => Promise<T>): Promise<T> {
  return withLun(cmd, o, async (dev, url) => fn(await vmfs.observe(dev, { windowMs: o.window ?? vmfs.DEFAULT_OBSERVE_WINDOW_MS }), url));
}

/** Mount with a slot of our own ('auto'), run `fn`, unmount cleanly (also after a failure). */
function withMount<T>(cmd: Command, o: LunOpts, fn: (fs: vmfs.Vmfs) => Promise<T>): Promise<T> {
  return withLun(cmd, o, async (dev) => {
    const fs = await vmfs.mount(dev, { hostId: 'auto', hostName: cliHostName() });
    let result: T;
    try {
      result = await fn(fs);
    } catch (err) {
      await fs.unmount().catch(() => undefined);
      throw err;
    }
    await fs.unmount();
    return result;
  });
}

function lunCommand(parent: Command, spec: string, description: string, window = false): Command {
  const c = parent.command(spec).description(description).option('--target <url>', 'the LUN: iscsi://host:port/iqn/lun (env ESXEMU_TARGET, default: the local cluster\'s target)');
  return window ? c.option('--window <ms>', 'how long heartbeats are watched to judge hosts alive', intArg('window', 0, 60_000), vmfs.DEFAULT_OBSERVE_WINDOW_MS) : c;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

function owners(holders: { hostId: number; hostName: string }[]): string {
  return holders.map((h) => `${h.hostName || '?'}(${h.hostId})`).join(', ') || '-';
}

/** `<dir>/<name>.vmdk` -> the descriptor, its extent and the disk name. */
function diskPaths(p: string): { descriptor: string; extent: string; name: string; dir: string } {
  const path = parseDatastorePath(p);
  const m = /^(?:(.*)\/)?([^/]+)\.vmdk$/.exec(path);
  if (!m || m[2]!.endsWith('-flat')) throw new EsxError('INVALID_ARGUMENT', `'${p}' is not a disk descriptor path like vm1/vm1.vmdk`);
  const dir = m[1] ?? '';
  const name = m[2]!;
  return { descriptor: path, extent: posix.join(dir, `${name}-flat.vmdk`), name, dir };
}

/** The data extent behind a path: a -flat.vmdk itself, or the extent a descriptor names. */
async function extentOf(fs: vmfs.Vmfs, p: string): Promise<{ extent: string; descriptor: { path: string; text: Buffer } | null }> {
  const path = parseDatastorePath(p);
  if (path.endsWith('-flat.vmdk')) return { extent: path, descriptor: null };
  if (!path.endsWith('.vmdk')) throw new EsxError('INVALID_ARGUMENT', `'${p}' is not a virtual disk (.vmdk)`);
  const text = await fs.readFile(path);
  const { extent } = parseVmdkDescriptor(text, path);
  return { extent: posix.join(posix.dirname(path), extent), descriptor: { path, text } };
}

const THIN_LINE = /^ddb\.thinProvisioned = "1"\n/m;

async function mkdirs(fs: vmfs.Vmfs, dir: string): Promise<void> {
  let at = '';
  for (const part of dir.split('/').filter(Boolean)) {
    at = at ? `${at}/${part}` : part;
    if (await fs.exists(at)) continue;
    await fs.mkdir(at).catch((err: unknown) => {
      if (!(err instanceof EsxError && err.code === 'NAME_IN_USE')) throw err; // made by someone else meanwhile
    });
  }
}

function registerDatastore(program: Command): void {
  const ds = group(program, 'datastore', 'the shared VMFS datastore on the iSCSI LUN (read-only commands are safe on a live cluster)');

  lunCommand(ds, 'ls', 'the datastore: label, capacity, free space, hosts with a live heartbeat', true).action(async (o: LunOpts, cmd: Command) => {
    await withObserver(cmd, o, async (obs, url) => {
      const [df, hosts] = await Promise.all([obs.df(), obs.hosts()]);
      const live = hosts.filter((h) => h.liveness === 'alive').map((h) => h.name);
      const sb = obs.superblock;
      const row = { ...df, url, formatVersion: sb.version, maxHosts: sb.maxHosts, maxFiles: sb.maxFiles, liveHosts: live, hosts };
      if (globals(cmd).json) return printJson([row]);
      printTable(['LABEL', 'UUID', 'CAPACITY', 'FREE', 'USED', 'FILE BLOCK', 'LIVE HOSTS'], [[df.label, df.uuid, bytes(df.capacityBytes), bytes(df.freeBytes), bytes(df.usedBytes), bytes(df.fileBlockSize), live.join(', ') || '-']]);
    });
  });

  lunCommand(ds, 'hosts', 'heartbeat slots: which host holds which id, and whether it beats', true).action(async (o: LunOpts, cmd: Command) => {
    await withObserver(cmd, o, async (obs) => {
      const hosts = await obs.hosts();
      if (globals(cmd).json) return printJson(hosts);
      printTable(['ID', 'NAME', 'SLOT', 'LIVENESS', 'INCARNATION', 'BEATS SEEN', 'LAST BEAT (its clock)'], hosts.map((h) => [h.hostId, h.name, h.state, h.liveness, h.incarnation, h.beatsSeen, time(h.lastBeatWallMs || null)]));
    });
  });

  lunCommand(ds, 'browse [path]', 'files and folders: type, size, allocated space, lock mode and owner').action(async (path: string | undefined, o: LunOpts, cmd: Command) => {
    await withObserver(cmd, o, async (obs) => {
      const at = path === undefined || /^\/*$/.test(path.trim()) ? '/' : parseDatastorePath(path);
      const st = await obs.stat(at);
      const names = st.type === 'directory' ? (await obs.readdir(at)).map((e) => posix.join(at, e.name)) : [at];
      const rows = [];
      for (const p of names) {
        const [s, lock] = await Promise.all([obs.stat(p), obs.lockInfo(p, { wait: false })]);
        rows.push({ ...s, lock: { mode: lock.mode, gen: lock.gen, holders: lock.holders.map((h) => ({ hostId: h.hostId, hostName: h.hostName, incarnation: h.incarnation })) } });
      }
      if (globals(cmd).json) return printJson(rows);
      printTable(['NAME', 'TYPE', 'SIZE', 'ALLOCATED', 'LOCK', 'OWNER', 'MODIFIED'], rows.map((r) => [r.name + (r.type === 'directory' ? '/' : ''), r.type, bytes(r.size), bytes(r.allocatedBytes), r.lock.mode, owners(r.lock.holders), time(r.mtimeMs)]));
    });
  });

  lunCommand(ds, 'cat <path>', 'print a file (a .vmx, a .vmdk descriptor, vmware.log), read without a lock').action(async (path: string, o: LunOpts, cmd: Command) => {
    await withObserver(cmd, o, async (obs) => {
      process.stdout.write(await obs.readFile(parseDatastorePath(path)));
    });
  });

  lunCommand(ds, 'fsck', 'check the whole file system, read-only; exit code 1 when it finds errors')
    .option('--observe <ms>', 'watch heartbeats this long to flag locks of hosts that do not beat', intArg('observe', 0, 60_000), 0)
    .action(async (o: LunOpts & { observe: number }, cmd: Command) => {
      await withLun(cmd, o, async (dev, url) => {
        const r = await vmfs.fsck(dev, { observeMs: o.observe });
        process.exitCode = r.clean ? 0 : 1;
        if (globals(cmd).json) return printJson({ url, ...r });
        const findings = [...r.errors, ...r.warnings];
        if (findings.length) printTable(['SEVERITY', 'KIND', 'MESSAGE'], findings.map((f) => [f.severity, f.kind, f.message]));
        const s = r.stats;
        process.stdout.write(`${r.superblock.label}: ${r.clean ? 'clean' : `${r.errors.length} error(s)`}, ${r.warnings.length} warning(s); ${s.files} files, ${s.directories} directories, ${s.usedBlocks} blocks used, ${s.freeBlocks} free\n`);
      });
    });

  lunCommand(ds, 'mkfs', 'format the LUN as a VMFS datastore (refuses a formatted LUN without --force, and any LUN a live host uses)')
    .option('--label <label>', 'datastore name', 'datastore1')
    .option('--force', 'overwrite an existing file system (still refused while a host heartbeats on it)')
    .action(async (o: LunOpts & { label: string; force?: boolean }, cmd: Command) => {
      await withLun(cmd, o, async (dev, url) => {
        const { superblock: sb } = await vmfs.mkfs(dev, { label: o.label, force: o.force ?? false }).catch((err: unknown) => {
          if (err instanceof EsxError && err.code === 'INVALID_STATE' && !o.force && ['ALREADY_FORMATTED', 'NOT_EMPTY'].includes(String(err.details?.['reason']))) {
            throw new EsxError('INVALID_STATE', `${err.message.replace(/; use force to overwrite it$/, '')}; pass --force to overwrite it`, err.details);
          }
          throw err;
        });
        const out = { url, label: sb.label, uuid: sb.uuid, capacityBytes: sb.dataBlocks * sb.fileBlockSize, fileBlockSize: sb.fileBlockSize, maxHosts: sb.maxHosts, maxFiles: sb.maxFiles };
        if (globals(cmd).json) return printJson(out);
        process.stdout.write(`formatted VMFS '${sb.label}' (${sb.uuid}) on ${url}: ${bytes(out.capacityBytes)} in ${bytes(sb.fileBlockSize)} blocks, ${sb.maxHosts} hosts, ${sb.maxFiles} files\n`);
      });
    });
}

function registerVmkfstools(program: Command): void {
  const vk = group(program, 'vmkfstools', "virtual disks and their locks on the datastore, as ESX's vmkfstools");

  lunCommand(vk, 'create <path>', 'create a thin virtual disk: <name>.vmdk descriptor and <name>-flat.vmdk extent (vmkfstools -c)')
    .requiredOption('--size <size>', 'disk size, e.g. 512M, 10G (a whole number of 512-byte sectors)', (v: string) => {
      const b = Math.round(parseSizeMiB(v, 'size') * MIB);
      if (b % SECTOR !== 0 || b < SECTOR) throw new EsxError('INVALID_ARGUMENT', `size must be a whole number of ${SECTOR}-byte sectors, got '${v}'`);
      return b;
    })
    .action(async (path: string, o: LunOpts & { size: number }, cmd: Command) => {
      const d = diskPaths(path);
      await withMount(cmd, o, async (fs) => {
        if (await fs.exists(d.descriptor)) throw new EsxError('NAME_IN_USE', `'${d.descriptor}' already exists`, { path: d.descriptor });
        await mkdirs(fs, d.dir);
        await fs.create(d.extent); // NAME_IN_USE when it exists: never truncate someone's disk
        let descriptorMade = false;
        try {
          const f = await fs.open(d.extent, 'exclusive');
          try {
            await f.truncate(o.size);
          } finally {
            await f.close();
          }
          await fs.create(d.descriptor);
          descriptorMade = true;
          await fs.writeFile(d.descriptor, encodeVmdkDescriptor(d.name, o.size));
        } catch (err) {
          // Leave nothing half-made behind.
          if (descriptorMade) await fs.unlink(d.descriptor).catch(() => undefined);
          await fs.unlink(d.extent).catch(() => undefined);
          throw err;
        }
        const st = await fs.stat(d.extent);
        const out = { descriptor: d.descriptor, extent: d.extent, sizeBytes: st.size, allocatedBytes: st.allocatedBytes, label: fs.superblock.label };
        if (globals(cmd).json) return printJson(out);
        process.stdout.write(`created [${out.label}] ${out.descriptor} (thin, ${bytes(out.sizeBytes)}, extent ${out.extent}, ${bytes(out.allocatedBytes)} allocated)\n`);
      });
    });

  lunCommand(vk, 'inflate <path>', 'allocate and zero every block of a thin disk (vmkfstools --inflatedisk); FILE_LOCKED while a VM runs on it').action(async (path: string, o: LunOpts, cmd: Command) => {
    await withMount(cmd, o, async (fs) => {
      const { extent, descriptor } = await extentOf(fs, path);
      const before = await fs.stat(extent);
      const f = await fs.open(extent, 'exclusive');
      try {
        await f.inflate();
        await f.flush();
      } finally {
        await f.close();
      }
      // The descriptor no longer says thin, as vmkfstools --inflatedisk leaves it.
      if (descriptor && THIN_LINE.test(descriptor.text.toString('utf8'))) await fs.writeFile(descriptor.path, Buffer.from(descriptor.text.toString('utf8').replace(THIN_LINE, ''), 'utf8'));
      const after = await fs.stat(extent);
      const out = { extent, sizeBytes: after.size, allocatedBeforeBytes: before.allocatedBytes, allocatedBytes: after.allocatedBytes };
      if (globals(cmd).json) return printJson(out);
      process.stdout.write(`inflated ${extent}: ${bytes(out.sizeBytes)}, allocated ${bytes(out.allocatedBeforeBytes)} -> ${bytes(out.allocatedBytes)}\n`);
    });
  });

  lunCommand(vk, 'locks <path>', 'the on-disk lock of a file: mode, generation, holders and their liveness (vmkfstools -D)', true).action(async (path: string, o: LunOpts, cmd: Command) => {
    await withObserver(cmd, o, async (obs) => {
      const info = await obs.lockInfo(parseDatastorePath(path));
      if (globals(cmd).json) return printJson(info);
      printKeyValues([
        ['path', info.path],
        ['mode', info.mode],
        ['generation', info.gen],
        ['holders', info.holders.length],
      ]);
      if (info.holders.length) printTable(['HOST ID', 'HOST', 'INCARNATION', 'LIVENESS'], info.holders.map((h) => [h.hostId, h.hostName || '?', h.incarnation, h.liveness]));
    });
  });
}

export function registerDatastoreCommands(program: Command): void {
  registerDatastore(program);
  registerVmkfstools(program);
}
