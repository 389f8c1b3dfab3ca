/** Client commands over vcenter's public API: hosts, VMs, tasks, events. */
import { Command, Option } from 'commander';
import { DISKIO_PATTERNS, type DiskioPattern } from '@esxemu/guest';
import { EsxError, WORKLOAD_KINDS, type CreateVmRequest, type DatastoreStatus, type EventInfo, type VmInfo, type WorkloadSpec } from '@esxemu/shared';
import { clientFor, globals } from '../context.js';
import { intArg, portArg, sizeMiBArg } from '../options.js';
import { ago, fixed, printJson, printKeyValues, printTable, time } from '../output.js';
import { assertTaskSucceeded, followTask } from '../task-progress.js';

export function group(program: Command, name: string, description: string): Command {
  return program.commands.find((c) => c.name() === name) ?? program.command(name).description(description);
}

function datastoreText(d: DatastoreStatus | null | undefined): string {
  if (!d) return '-';
  if (d.state !== 'mounted') return `${d.state}${d.error ? ` (${d.error.slice(0, 60)})` : ''}`;
  const free = d.freeBytes === null ? '?' : (d.freeBytes / 2 ** 30).toFixed(2);
  return `${d.name} ${free} GiB free`;
}

function workloadText(w: WorkloadSpec): string {
  switch (w.kind) {
    case 'idle':
      return 'idle';
    case 'memstress':
      return `memstress ${w.workingSetMiB}MiB@${w.dirtyPagesPerS}p/s`;
    case 'cpuburn':
      return `cpuburn ${w.demandMhz}MHz`;
    case 'webserver':
      return `webserver :${w.port}`;
    case 'diskrecords':
      return `diskrecords ${w.recordsPerS}rec/s flush/${w.flushEvery}`;
    case 'diskio':
      return `diskio ${w.pattern} ${w.blockKiB}KiB QD${w.queueDepth}`;
  }
}

export function registerInventoryCommands(program: Command): void {
  const host = group(program, 'host', 'ESX hosts');
  host
    .command('ls')
    .description('list the hosts vcenter knows, with their load')
    .action(async (_o, cmd: Command) => {
      const hosts = await clientFor(cmd).hosts();
      if (globals(cmd).json) return printJson(hosts);
      printTable(
        ['NAME', 'STATE', 'CPU MHz used/cap', 'MEM MiB used/cap', 'VMS', 'DATASTORE', 'MIGRATION', 'LAST SEEN'],
        hosts.map((h) => [
          h.name,
          h.connectionState,
          h.stats ? `${fixed(h.stats.cpuUsageMhz)}/${h.stats.cpuCapacityMhz}` : `-/${h.cpuCores * h.cpuMhz}`,
          h.stats ? `${fixed(h.stats.memConsumedMiB)}/${h.memoryMiB}` : `-/${h.memoryMiB}`,
          h.vmCount,
          datastoreText(h.stats?.datastore),
          h.migrationAddress,
          ago(h.lastSeenAt),
        ]),
      );
    });

  const vm = group(program, 'vm', 'virtual machines');
  vm.command('create <name>')
    .description('create a VM in the inventory (powered off)')
    .option('--memory <size>', 'guest memory, e.g. 256 or 1GiB', sizeMiBArg('memory'), 256)
    .option('--vcpus <n>', 'virtual CPUs', intArg('vcpus', 1, 64), 1)
    .addOption(new Option('--workload <kind>', 'what the guest runs').choices([...WORKLOAD_KINDS]).default('idle'))
    .option('--working-set <size>', 'memstress: working set', sizeMiBArg('working set'), 64)
    .option('--dirty-rate <pages/s>', 'memstress: pages dirtied per second', intArg('dirty rate', 0, 10_000_000), 1000)
    .option('--demand <MHz>', 'cpuburn: CPU demand in MHz', intArg('demand', 1, 1_000_000), 1000)
    .option('--port <port>', 'webserver: HTTP port at the VM IP', portArg(), 8080)
    .option('--records-per-s <n>', 'diskrecords: records written per second', intArg('records per second', 1, 100_000), 100)
    .option('--flush-every <n>', 'diskrecords: flush after this many records', intArg('flush every', 1, 65_536), 16)
    .addOption(new Option('--pattern <p>', 'diskio: what the guest does to its disk').choices([...DISKIO_PATTERNS]).default('randread'))
    .option('--block <KiB>', 'diskio: block size in KiB', intArg('block', 1, 1024), 4)
    .option('--queue-depth <n>', 'diskio: requests in flight', intArg('queue depth', 1, 64), 32)
    .option('--disk <size>', 'virtual disk (.vmdk on the datastore), e.g. 64 or 1GiB; diskrecords and diskio need one (default 64 MiB for them)', sizeMiBArg('disk'))
    .option('--seed <n>', 'guest PRNG seed (deterministic runs)', intArg('seed', 0, 0xffffffff))
    .option('--ip <addr>', 'the VM IP (default: next free one of the VM network)')
    .option('--host <host>', 'register on this host')
    .action(async (name: string, o: { memory: number; vcpus: number; workload: WorkloadSpec['kind']; workingSet: number; dirtyRate: number; demand: number; port: number; recordsPerS: number; flushEvery: number; pattern: DiskioPattern; block: number; queueDepth: number; disk?: number; seed?: number; ip?: string; host?: string }, cmd: Command) => {
      if (o.port === 0) throw new EsxError('INVALID_ARGUMENT', 'webserver port must be 1-65535');
      const workload: WorkloadSpec =
        o.workload === 'memstress'
          ? { kind: 'memstress', workingSetMiB: o.workingSet, dirtyPagesPerS: o.dirtyRate }
          : o.workload === 'cpuburn'
            ? { kind: 'cpuburn', demandMhz: o.demand }
            : o.workload === 'webserver'
              ? { kind: 'webserver', port: o.port }
              : o.workload === 'diskrecords'
                ? { kind: 'diskrecords', recordsPerS: o.recordsPerS, flushEvery: o.flushEvery }
                : o.workload === 'diskio'
                  ? { kind: 'diskio', pattern: o.pattern, blockKiB: o.block, queueDepth: o.queueDepth }
                  : { kind: 'idle' };
      const req: CreateVmRequest = { name, memoryMiB: o.memory, vcpus: o.vcpus, workload };
      const diskMiB = o.disk ?? (o.workload === 'diskrecords' || o.workload === 'diskio' ? 64 : undefined);
      if (diskMiB !== undefined) req.diskMiB = Math.ceil(diskMiB);
      if (o.seed !== undefined) req.seed = o.seed;
      if (o.ip) req.ip = o.ip;
      if (o.host) req.host = o.host;
      const created = await clientFor(cmd).createVm(req);
      if (globals(cmd).json) return printJson(created);
      process.stdout.write(`created ${created.name} (${workloadText(created.workload)}, ${created.memoryMiB} MiB) at ${created.ip}\n`);
    });

  vm.command('ls')
    .description('list VMs')
    .action(async (_o, cmd: Command) => {
      const vms = await clientFor(cmd).vms();
      if (globals(cmd).json) return printJson(vms);
      printTable(
        ['NAME', 'POWER', 'HOST', 'IP', 'MEM MiB', 'WORKLOAD', 'CPU MHz', 'MEM USED MiB'],
        vms.map((v) => [v.name, v.powerState, v.host ?? '-', v.ip, v.memoryMiB, workloadText(v.workload), fixed(v.stats?.cpuUsageMhz), fixed(v.stats?.memConsumedMiB, 1)]),
      );
    });

  vm.command('info <vm>')
    .description('show one VM')
    .action(async (name: string, _o, cmd: Command) => {
      const v: VmInfo = await clientFor(cmd).vm(name);
      if (globals(cmd).json) return printJson(v);
      printKeyValues([
        ['name', v.name],
        ['id', v.id],
        ['power', v.powerState],
        ['host', v.host ?? '-'],
        ['ip', v.ip],
        ['memory', `${v.memoryMiB} MiB`],
        ['vcpus', v.vcpus],
        ['workload', workloadText(v.workload)],
        ['disk', v.diskMiB ? `${v.diskMiB} MiB` : '-'],
        ['files', v.vmxPath ?? '-'],
        ['seed', v.seed],
        ['created', time(v.createdAt)],
        ['cpu demand/usage', v.stats ? `${fixed(v.stats.cpuDemandMhz)}/${fixed(v.stats.cpuUsageMhz)} MHz` : '-'],
        ['memory consumed/active', v.stats ? `${fixed(v.stats.memConsumedMiB, 1)}/${fixed(v.stats.memActiveMiB, 1)} MiB` : '-'],
        ['guest steps', v.stats ? v.stats.steps : '-'],
        ['guest reports', v.stats?.guest ? Object.entries(v.stats.guest).map(([k, n]) => `${k} ${n}`).join(', ') : '-'],
      ]);
    });

  vm.command('register <vmx>')
    .description('add a VM to the inventory from its .vmx on the datastore, e.g. "[datastore1] vm1/vm1.vmx"')
    .option('--host <host>', 'register on this host (it reads the file)')
    .action(async (path: string, o: { host?: string }, cmd: Command) => {
      const v = await clientFor(cmd).registerVm({ path, ...(o.host ? { host: o.host } : {}) });
      if (globals(cmd).json) return printJson(v);
      process.stdout.write(`registered ${v.name} (${workloadText(v.workload)}, ${v.memoryMiB} MiB) from ${v.vmxPath ?? path}\n`);
    });

  vm.command('rm <vm>')
    .description('delete a powered-off VM from the inventory, and its files from the datastore')
    .action(async (name: string, _o, cmd: Command) => {
      const r = await clientFor(cmd).deleteVm(name);
      if (globals(cmd).json) return printJson(r);
      process.stdout.write(`deleted ${name}\n`);
    });

  const power = vm.command('power').description('power operations (they run as tasks)');
  const powerOp = (op: 'on' | 'off' | 'reset') =>
    power
      .command(`${op} <vm>`)
      .description(op === 'on' ? 'power a VM on (placed on --host, its host, or the host with most free memory)' : op === 'off' ? 'power a VM off' : 'reset a running VM (reboot its guest)')
      .option('--no-wait', 'return once the task is queued')
      .option('--timeout <ms>', 'how long to wait for the task', intArg('timeout', 100, 3_600_000), 120_000);
  for (const op of ['on', 'off', 'reset'] as const) {
    const c = powerOp(op);
    if (op === 'on') c.option('--host <host>', 'run it on this host');
    c.action(async (name: string, o: { wait: boolean; timeout: number; host?: string }, cmd: Command) => {
      const client = clientFor(cmd);
      const json = globals(cmd).json;
      const task = op === 'on' ? await client.powerOn(name, o.host) : op === 'off' ? await client.powerOff(name) : await client.reset(name);
      if (!o.wait) return json ? printJson(task) : void process.stdout.write(`task ${task.id} ${task.state}\n`);
      const final = await followTask(client, task, { json, timeoutMs: o.timeout });
      if (json) printJson(final);
      assertTaskSucceeded(final);
      if (!json) {
        const v = await client.vm(name);
        process.stdout.write(`${v.name}: ${v.powerState}${v.host ? ` on ${v.host}` : ''} (${v.ip})\n`);
      }
    });
  }

  const task = group(program, 'task', 'tasks (long operations)');
  task
    .command('ls')
    .description('list recent tasks, newest first')
    .option('--limit <n>', 'how many', intArg('limit', 1, 1000), 20)
    .action(async (o: { limit: number }, cmd: Command) => {
      const tasks = await clientFor(cmd).tasks(o.limit);
      if (globals(cmd).json) return printJson(tasks);
      printTable(
        ['ID', 'OP', 'TARGET', 'STATE', '%', 'QUEUED', 'TOOK', 'RESULT'],
        tasks.map((t) => [
          t.id.slice(0, 8),
          t.op,
          t.targetName,
          t.state,
          t.progress,
          time(t.queuedAt),
          t.completedAt && t.startedAt ? `${t.completedAt - t.startedAt} ms` : '-',
          t.error ? `${t.error.code}: ${t.error.message}` : t.description,
        ]),
      );
    });

  program
    .command('events')
    .description('show the cluster events (oldest first); --follow streams new ones')
    .option('--limit <n>', 'how many of the latest', intArg('limit', 1, 10_000), 30)
    .option('-f, --follow', 'keep streaming new events until Ctrl-C')
    .action(async (o: { limit: number; follow?: boolean }, cmd: Command) => {
      const client = clientFor(cmd);
      const json = globals(cmd).json;
      const show = (e: EventInfo) =>
        json ? process.stdout.write(JSON.stringify(e) + '\n') : process.stdout.write(`${time(e.time)} ${e.severity.padEnd(7)} ${e.type.padEnd(18)} ${e.message}\n`);
      const events = await client.events(o.limit);
      if (json && !o.follow) return printJson(events);
      for (const e of events) show(e);
      if (!o.follow) return;
      let lastId = events.length ? events[events.length - 1]!.id : 0;
      await new Promise<void>((resolve) => {
        const close = client.stream(
          (m) => {
            if (m.kind === 'event' && m.event.id > lastId) {
              lastId = m.event.id;
              show(m.event);
            }
          },
          (reason) => {
            process.stderr.write(`event stream ended: ${reason}\n`);
            resolve();
          },
        );
        process.once('SIGINT', () => {
          close();
          resolve();
        });
      });
    });
}
