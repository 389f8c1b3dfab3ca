/**
 * VMs in real VMM worker threads: the dirty-logging proof through a worker, determinism (same
 * seed, same step, same memory hash), power on/off and crash freeing every page, reset, and the
 * VMkernel's refusals.
 */
import t from 'tap';
import { PAGE_SIZE, silentLogger, waitFor, type VmConfig, type WorkloadSpec } from '@esxemu/shared';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import type { Pmap } from '../src/vmkernel/memory/pmap.js';
import { Vmkernel, type VmEvent } from '../src/vmkernel/vmkernel.js';

t.setTimeout(90_000);

const MEMSTRESS: WorkloadSpec = { kind: 'memstress', workingSetMiB: 2, dirtyPagesPerS: 2000 };

function cfg(id: string, over: Partial<VmConfig> = {}): VmConfig {
  return { id, name: id, memoryMiB: 8, vcpus: 1, workload: MEMSTRESS, seed: 42, ip: '127.77.250.1', ...over };
}

function vmkernel(memoryMiB = 64): Vmkernel {
  return new Vmkernel({ cpuCores: 2, cpuMhz: 2000, machine: MachineMemory.create(memoryMiB), logger: silentLogger(), sampleIntervalMs: 200 });
}

function snapshot(pmap: Pmap): Buffer[] {
  const pages: Buffer[] = [];
  for (let gpn = 0; gpn < pmap.pages; gpn++) pages.push(Buffer.from(pmap.readPage(gpn)));
  return pages;
}

function changed(a: Buffer[], b: Buffer[]): number[] {
  return a.flatMap((p, gpn) => (p.equals(b[gpn]!) ? [] : [gpn]));
}

t.test('dirty logging through a real VMM worker', async (t) => {
  const k = vmkernel();
  t.teardown(() => k.close());
  await k.powerOn(cfg('ms1'), { stopAtStep: 50 });
  const vm = k.get('ms1');
  t.equal(await vm.waitPaused(20_000), 50, 'the vCPU paused at step 50');
  t.equal(vm.pmap.dirty.count(), 0, 'nothing logged yet');

  const before = snapshot(vm.pmap);
  k.setDirtyLogging('ms1', true);
  t.equal(await vm.runUntil(400, 20_000), 400, 'ran to step 400 with dirty logging on');
  k.setDirtyLogging('ms1', false);
  const after = snapshot(vm.pmap);
  const dirty = vm.pmap.dirty.list();
  const ch = changed(before, after);
  t.ok(ch.length > 100, `pages changed in the worker (${ch.length})`);
  t.same(dirty, ch, 'dirty bitmap == pages the guest changed');

  t.equal(await vm.runUntil(700, 20_000), 700, 'ran on to step 700 with logging off');
  const later = snapshot(vm.pmap);
  t.ok(changed(after, later).some((g) => !dirty.includes(g)), 'pages outside the dirty set changed meanwhile');
  t.same(vm.pmap.dirty.list(), dirty, 'and none of them was logged');
  await k.powerOff('ms1');
});

t.test('same seed, same step: same memory hash', async (t) => {
  const k = vmkernel();
  t.teardown(() => k.close());
  const K = 600;
  // A runs straight to K; B stops twice on the way, is paused and resumed; C has another seed.
  await Promise.all([
    k.powerOn(cfg('a'), { stopAtStep: K }),
    k.powerOn(cfg('b'), { stopAtStep: 100 }),
    k.powerOn(cfg('c', { seed: 43 }), { stopAtStep: K }),
  ]);
  const a = k.get('a');
  const b = k.get('b');
  const c = k.get('c');
  t.equal(await b.waitPaused(20_000), 100);
  t.equal(await b.runUntil(250, 20_000), 250);
  // Resume and pause again straight away: B stops at whatever step boundary it reached.
  const [, bSteps] = await Promise.all([b.resume(), b.pause()]);
  t.ok(bSteps >= 250 && bSteps < K, `B paused on its way (step ${bSteps})`);
  t.equal(await b.runUntil(K, 20_000), K);
  t.equal(await a.waitPaused(20_000), K);
  t.equal(await c.waitPaused(20_000), K);
  const ha = await a.memoryHash();
  const hb = await b.memoryHash();
  const hc = await c.memoryHash();
  t.equal(ha.steps, K);
  t.equal(hb.steps, K);
  t.match(ha.hash, /^[0-9a-f]{64}$/);
  t.equal(hb.hash, ha.hash, 'same seed, same steps: same memory, whatever the pauses');
  t.not(hc.hash, ha.hash, 'another seed: other memory');

  await b.resume();
  await t.rejects(b.memoryHash(), { code: 'INVALID_STATE' }, 'no hash of a running vCPU (NotAllowed)');
  await t.rejects(a.runUntil(10, 1000), { code: 'INVALID_STATE' }, 'runUntil a step already past is not allowed');
});

t.test('power on/off frees every page; stats', async (t) => {
  const k = vmkernel();
  t.teardown(() => k.close());
  const mm = k.machine;
  t.equal(mm.usedPages, 0);
  await k.powerOn(cfg('m1'));
  await k.powerOn(cfg('i1', { workload: { kind: 'idle' } }));
  const m1 = k.get('m1');
  await waitFor('the working set to be filled', () => m1.pmap.consumedPages >= 512, 20_000);
  t.ok(mm.usedPages >= 513, `machine pages in use (${mm.usedPages})`);
  t.same(k.list().map((r) => r.config.id).sort(), ['i1', 'm1']);
  t.ok(k.list().every((r) => r.powerState === 'poweredOn'));

  await waitFor('steps', () => k.stats().vms.every((v) => v.steps > 10), 20_000);
  k.sample();
  const s = k.stats();
  t.equal(s.host.cpuCapacityMhz, 4000);
  t.equal(s.host.vmsRunning, 2);
  t.equal(s.host.memCapacityMiB, 64);
  t.equal(s.host.memConsumedMiB, mm.usedPages / 256);
  t.ok(s.host.rssMiB > 0);
  const idle = s.vms.find((v) => v.vmId === 'i1')!;
  t.equal(idle.cpuDemandMhz, 10, 'idle asks for 10 MHz');
  t.equal(s.vms.find((v) => v.vmId === 'm1')!.memConsumedMiB, m1.pmap.consumedPages / 256);

  await k.powerOff('m1');
  t.ok(mm.usedPages <= 1, 'the memstress pages are freed');
  await k.powerOff('i1');
  t.equal(mm.usedPages, 0, 'every page is freed');
  t.same(k.list(), []);
  await t.rejects(k.powerOff('i1'), { code: 'VM_NOT_FOUND' });
});

t.test('reset reboots the guest on fresh memory', async (t) => {
  const k = vmkernel();
  t.teardown(() => k.close());
  await k.powerOn(cfg('r1'), { stopAtStep: 300 });
  const vm = k.get('r1');
  await vm.waitPaused(20_000);
  const h300 = (await vm.memoryHash()).hash;
  t.equal(await vm.runUntil(500, 20_000), 500);
  const h500 = (await vm.memoryHash()).hash;
  t.not(h500, h300);
  await vm.resume();
  await k.reset('r1', { stopAtStep: 300 });
  t.equal(vm.state, 'poweredOn');
  // After a reset the same guest from the same seed reaches the same memory at the same step.
  t.equal(await vm.waitPaused(20_000), 300, 'the rebooted guest ran to step 300 again');
  t.equal((await vm.memoryHash()).hash, h300, 'reset = the same guest booted again on zeroed memory');
  await k.powerOff('r1');
  t.equal(k.machine.usedPages, 0);
});

t.test('a guest that runs out of machine memory crashes; its pages are freed', async (t) => {
  const k = vmkernel(4);
  t.teardown(() => k.close());
  const events: VmEvent[] = [];
  k.onVmEvent((e) => events.push(e));
  await k.powerOn(cfg('idle', { workload: { kind: 'idle' }, memoryMiB: 4 }));
  // 4 MiB of working set on a host of 4 MiB where the idle VM already holds a page.
  await k.powerOn(cfg('hog', { memoryMiB: 4, workload: { kind: 'memstress', workingSetMiB: 4, dirtyPagesPerS: 100 } }));
  await waitFor('the crash event', () => events.length > 0, 20_000);
  t.equal(events[0]!.vmId, 'hog');
  t.equal(events[0]!.event, 'crashed');
  t.match(events[0]!.message, /INSUFFICIENT_RESOURCES/);
  t.throws(() => k.get('hog'), { code: 'VM_NOT_FOUND' }, 'the crashed VM is gone from the host');
  t.equal(k.machine.usedPages, 1, 'only the idle VM page is left');
  t.same(
    k.list().map((r) => r.config.id),
    ['idle'],
    'the other VM runs on',
  );
});

t.test('a VMM worker that dies unexpectedly: VM crashed, pages freed, event sent', async (t) => {
  const k = vmkernel();
  t.teardown(() => k.close());
  const events: VmEvent[] = [];
  k.onVmEvent((e) => events.push(e));
  await k.powerOn(cfg('victim'));
  const vm = k.get('victim');
  await waitFor('pages in use', () => k.machine.usedPages > 0, 20_000);
  // Kill the worker behind the VMkernel's back (as an OOM or a native crash would).
  await vm.injectVmmCrash();
  await waitFor('the crash event', () => events.length > 0, 20_000);
  t.match(events[0], { vmId: 'victim', event: 'crashed', message: /exited/ });
  t.equal(vm.state, 'crashed');
  await waitFor('the pages of the crashed VM to be freed', () => k.machine.usedPages === 0, 20_000).catch(() => undefined);
  t.equal(k.machine.usedPages, 0, 'every page of the crashed VM is freed');
  t.same(k.list(), []);
  await t.rejects(vm.powerOff(), { code: 'INVALID_STATE' }, 'a crashed VM cannot be powered off');
});

t.test('refusals change nothing', async (t) => {
  const k = vmkernel(16);
  t.teardown(() => k.close());
  await t.rejects(k.powerOn(cfg('big', { memoryMiB: 32 })), { code: 'INSUFFICIENT_RESOURCES' });
  await t.rejects(k.powerOn({ ...cfg('bad'), vcpus: 0 }), { code: 'INVALID_ARGUMENT' });
  await t.rejects(k.powerOn({ ...cfg('bad'), workload: { kind: 'nope' } } as unknown as VmConfig), { code: 'INVALID_ARGUMENT' });
  // A workload that refuses its parameters at boot: power on fails, nothing stays.
  await t.rejects(k.powerOn(cfg('ws', { memoryMiB: 1, workload: { kind: 'memstress', workingSetMiB: 8, dirtyPagesPerS: 1 } })), { code: 'INVALID_ARGUMENT' });
  t.equal(k.machine.usedPages, 0);
  t.same(k.list(), []);
  await k.powerOn(cfg('one', { workload: { kind: 'idle' } }));
  await t.rejects(k.powerOn(cfg('one', { workload: { kind: 'idle' } })), { code: 'INVALID_STATE' }, 'duplicate id');
  t.equal(k.list().length, 1);
  await t.rejects(k.reset('nope'), { code: 'VM_NOT_FOUND' });
  t.equal(PAGE_SIZE, 4096);
});
