/**
 * The guest disk path above the datastore: a diskrecords guest in a real VMM worker writes,
 * flushes and verifies numbered records through the VMM's disk device and the VMkernel's disk
 * service into a backing file; the file is then read from outside and must hold every record
 * the guest was told was flushed. A cold boot on the same disk goes on after the last record.
 * The device and the service refuse bad requests with INVALID_ARGUMENT and stay usable.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import t from 'tap';
import { countRecords, diskioStatus, diskRecordsKey, diskRecordsStatus, DR_STATE, SECTOR_BYTES, type DiskCompletion } from '@esxemu/guest';
import { silentLogger, waitFor, type VmConfig } from '@esxemu/shared';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import { FileDiskBackend, VirtualDiskService, type DiskBackend } from '../src/vmkernel/virtual-disk.js';
import { Vmkernel } from '../src/vmkernel/vmkernel.js';
import { DiskDevice } from '../src/vmm/devices/disk/device.js';

t.setTimeout(90_000);
const dir = mkdtempSync(join(tmpdir(), 'esxemu-vdisk-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const SEED = 4242;
function cfg(over: Partial<VmConfig> = {}): VmConfig {
  return { id: 'dr1', name: 'dr1', memoryMiB: 4, vcpus: 1, workload: { kind: 'diskrecords', recordsPerS: 2000, flushEvery: 8 }, seed: SEED, ip: '127.77.251.1', diskMiB: 1, ...over };
}

function vmkernel(openDisk?: (c: VmConfig) => Promise<DiskBackend>): Vmkernel {
  return new Vmkernel({ cpuCores: 2, cpuMhz: 2000, machine: MachineMemory.create(32), logger: silentLogger(), sampleIntervalMs: 200, ...(openDisk ? { openDisk } : {}) });
}

t.test('diskrecords through VMM and VMkernel: every flushed record is in the file, a cold boot goes on after them', async (t) => {
  const path = join(dir, 'dr1.vmdk');
  const k = vmkernel((c) => FileDiskBackend.open(path, c.diskMiB! * 1024 * 1024));
  t.teardown(() => k.close());
  await k.powerOn(cfg());
  const vm = k.get('dr1');
  await waitFor('200 records flushed and 5 verified', () => diskRecordsStatus(vm.regs).flushed >= 200 && diskRecordsStatus(vm.regs).verified >= 5, 30_000);
  await k.powerOff('dr1');
  const st = diskRecordsStatus(vm.regs);
  t.equal(st.errors, 0, 'no I/O error');
  t.ok(st.acked >= st.flushed, `acknowledged ${st.acked} >= flushed ${st.flushed}`);
  const key = diskRecordsKey(SEED);
  t.equal(st.key, key, 'the guest derived its disk key from its seed, as an outside checker does');
  const onDisk = countRecords(readFileSync(path), key);
  t.ok(onDisk >= st.flushed, `the file holds ${onDisk} records from sector 0, at least the ${st.flushed} flushed`);
  t.ok(onDisk <= st.acked + 1, 'and at most the one write in flight at power-off besides (drained, its completion never seen)');

  // Cold boot on the same disk: the guest scans and continues after the last record.
  await k.powerOn(cfg());
  const vm2 = k.get('dr1');
  await waitFor('writing after the scan', () => diskRecordsStatus(vm2.regs).state !== DR_STATE.SCAN && diskRecordsStatus(vm2.regs).acked > onDisk + 50, 30_000);
  await k.powerOff('dr1');
  const again = diskRecordsStatus(vm2.regs);
  t.equal(again.errors, 0);
  const total = countRecords(readFileSync(path), key);
  t.ok(total >= again.acked && total <= again.acked + 1, `records continue from where the first boot stopped, no gap (${total} in the file, ${again.acked} acknowledged)`);
});

t.test('diskio: random 4 KiB writes at queue depth 8 land where the guest put them', async (t) => {
  const path = join(dir, 'dio.vmdk');
  const k = vmkernel((c) => FileDiskBackend.open(path, c.diskMiB! * 1024 * 1024));
  t.teardown(() => k.close());
  await k.powerOn(cfg({ id: 'dio', name: 'dio', workload: { kind: 'diskio', pattern: 'randwrite', blockKiB: 4, queueDepth: 8 } }));
  const vm = k.get('dio');
  let maxInflight = 0;
  await waitFor('500 writes completed', () => {
    const st = diskioStatus(vm.regs);
    maxInflight = Math.max(maxInflight, st.inflight);
    return st.ops >= 500;
  }, 30_000);
  await k.powerOff('dio');
  const st = diskioStatus(vm.regs);
  t.equal(st.errors, 0, 'no error');
  t.equal(st.kib, st.ops * 4, 'KiB counted per completed operation');
  t.ok(maxInflight >= 1 && maxInflight <= 8, `at most the queue depth in flight (saw ${maxInflight})`);
  const image = readFileSync(path);
  let written = 0;
  let wrong = 0;
  for (let n = 0; n < image.length / 4096; n++) {
    const b = image.subarray(n * 4096, (n + 1) * 4096);
    if (b.every((x) => x === 0)) continue;
    written++;
    if (!b.every((x) => x === (n & 0xff))) wrong++;
  }
  t.ok(written > 100, `${written} distinct blocks were written`);
  t.equal(wrong, 0, 'every written block holds its own number');
});

t.test('a VM with a disk on a host without a datastore: INVALID_STATE, nothing left behind', async (t) => {
  const k = vmkernel();
  t.teardown(() => k.close());
  await t.rejects(k.powerOn(cfg({ id: 'nodisk', name: 'nodisk' })), { code: 'INVALID_STATE' });
  t.equal(k.list().length, 0, 'no VM registered');
});

t.test('device and service: bad requests complete with INVALID_ARGUMENT, good ones still work', async (t) => {
  const path = join(dir, 'dev.img');
  const backend = await FileDiskBackend.open(path, 64 * SECTOR_BYTES);
  const ch = new MessageChannel();
  const service = new VirtualDiskService(ch.port1, backend, { log: silentLogger() });
  const dev = new DiskDevice({ port: ch.port2, sizeBytes: backend.sizeBytes, queueDepth: 4 });
  t.teardown(async () => {
    dev.close();
    await service.close();
  });
  const next = async (): Promise<DiskCompletion> => {
    let c: DiskCompletion | null = null;
    await waitFor('a completion', () => (c = dev.complete()) !== null, 5000);
    return c!;
  };
  const cases: [string, Parameters<DiskDevice['submit']>[0]][] = [
    ['past the end', { id: 1, op: 'read', offset: 64 * SECTOR_BYTES, length: SECTOR_BYTES }],
    ['unaligned', { id: 2, op: 'read', offset: 100, length: SECTOR_BYTES }],
    ['zero length', { id: 3, op: 'write', offset: 0, length: 0, data: new Uint8Array(0) }],
    ['data shorter than the length', { id: 4, op: 'write', offset: 0, length: 1024, data: new Uint8Array(512) }],
    ['unknown op', { id: 5, op: 'trim' as never, offset: 0, length: SECTOR_BYTES }],
    ['a fill value that is not a byte', { id: 6, op: 'write', offset: 0, length: SECTOR_BYTES, fill: 300 }],
  ];
  for (const [what, req] of cases) {
    t.equal(dev.submit(req), true, `${what}: taken`);
    const c = await next();
    t.same([c.id, c.ok, c.error?.code], [req.id, false, 'INVALID_ARGUMENT'], `${what}: INVALID_ARGUMENT`);
  }
  // The service checks again what reaches it, whatever the device let through.
  ch.port2.postMessage({ tag: 99, op: 'write', offset: 63 * SECTOR_BYTES, length: 2 * SECTOR_BYTES, data: new Uint8Array(2 * SECTOR_BYTES) });
  t.equal(service.stats.writes, 0);
  const data = new Uint8Array(SECTOR_BYTES).fill(7);
  t.ok(dev.submit({ id: 10, op: 'write', offset: 5 * SECTOR_BYTES, length: SECTOR_BYTES, data }));
  data.fill(9); // the guest reuses its buffer at once: the device copied it
  const w = await next();
  t.same([w.id, w.ok], [10, true], 'a good write completes');
  t.ok(dev.submit({ id: 11, op: 'flush', offset: 0, length: 0 }));
  t.same((await next()).ok, true, 'flush completes');
  t.ok(dev.submit({ id: 12, op: 'read', offset: 5 * SECTOR_BYTES, length: SECTOR_BYTES }));
  const r = await next();
  t.ok(r.ok && r.data && r.data.every((b) => b === 7), 'and reads back what was written, not the reused buffer');
  t.same([service.stats.writes, service.stats.flushes, service.stats.reads], [1, 1, 1], 'only the good calls reached the backend');
  t.ok(service.stats.refused >= 1, 'the out-of-range call sent around the device was refused by the service');
  // Queue depth bounds the device: 4 in flight or waiting, the 5th is refused until one is taken.
  for (let i = 0; i < 4; i++) t.ok(dev.submit({ id: 20 + i, op: 'read', offset: 0, length: SECTOR_BYTES }));
  t.equal(dev.submit({ id: 30, op: 'read', offset: 0, length: SECTOR_BYTES }), false, 'queue full: submit says false');
  await dev.drain(5000);
  for (let i = 0; i < 4; i++) t.ok(dev.complete()?.ok);
});
