/**
 * One ESX host for the VMFS integration tests, as a separate process with its own iSCSI
 * session: argv[2] is a JSON ChildArgs (vmfs-iscsi-helpers.ts). Reports JSON lines on stdout.
 *
 *   churn           create a VM folder with a .vmx and a disk, write, flush, read back, and
 *                   remove every other VM; `iterations` times; then unmount and exit 0
 *   hold-and-churn  open locks/h<id>.lck exclusively ('ready'), then create / write / remove
 *                   files forever ('progress' each round) until killed; SIGTERM = clean unmount
 */
import { EsxError } from '@esxemu/shared';
import { mount, type Vmfs } from '../src/vmfs/index.js';
import { connectHost, type ChildArgs } from './vmfs-iscsi-helpers.js';
import { pattern } from './vmfs-helpers.js';

const args = JSON.parse(process.argv[2] ?? '{}') as ChildArgs;
const say = (event: string, extra: Record<string, unknown> = {}): void => void process.stdout.write(JSON.stringify({ event, hostId: args.hostId, ...extra }) + '\n');

async function mkdirp(fs: Vmfs, path: string): Promise<void> {
  try {
    await fs.mkdir(path);
  } catch (err) {
    if (!(err instanceof EsxError && err.code === 'NAME_IN_USE')) throw err;
  }
}

async function oneVm(fs: Vmfs, dir: string, seed: number): Promise<void> {
  await fs.mkdir(dir);
  await fs.writeFile(`${dir}/vm.vmx`, Buffer.from(`displayName = "${dir}"\nseed = ${seed}\n`));
  const disk = await fs.open(`${dir}/disk-flat.vmdk`, 'exclusive', { create: true });
  const data = pattern(100 * 1024 + seed, seed);
  await disk.write(4096, data);
  await disk.flush();
  const back = await disk.read(4096, data.length);
  await disk.close();
  if (!back.equals(data)) throw new Error(`${dir}: read back differs`);
}

async function removeVm(fs: Vmfs, dir: string): Promise<void> {
  await fs.unlink(`${dir}/disk-flat.vmdk`);
  await fs.unlink(`${dir}/vm.vmx`);
  await fs.rmdir(dir);
}

async function main(): Promise<void> {
  const { init, dev } = await connectHost(args.portal, args.hostId, args.ats ?? true);
  const fs = await mount(dev, { hostId: args.hostId, hostName: `esx0${args.hostId}`, heartbeatMs: args.heartbeatMs, leaseMs: args.leaseMs });
  say('mounted');
  let stopping = false;
  process.on('SIGTERM', () => {
    stopping = true;
  });
  if (args.mode === 'churn') {
    const kept: string[] = [];
    for (let i = 0; i < (args.iterations ?? 5); i++) {
      const dir = `h${args.hostId}-vm${i}`;
      await oneVm(fs, dir, args.hostId * 1000 + i);
      if (i % 2 === 1) await removeVm(fs, dir);
      else kept.push(dir);
      say('progress', { n: i });
    }
    say('done', { kept });
  } else {
    await mkdirp(fs, 'locks');
    await mkdirp(fs, `h${args.hostId}`);
    const held = await fs.open(`locks/h${args.hostId}.lck`, 'exclusive', { create: true });
    await held.write(0, Buffer.from(`held by host ${args.hostId}`));
    say('ready');
    for (let n = 0; !stopping; n++) {
      await oneVm(fs, `h${args.hostId}/vm${n}`, n);
      await removeVm(fs, `h${args.hostId}/vm${n}`);
      say('progress', { n });
    }
    await held.close();
  }
  await fs.unmount();
  await init.close();
  say('exit');
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    say('error', { code: (err as EsxError).code ?? null, message: err.message });
    process.exit(1);
  },
);
