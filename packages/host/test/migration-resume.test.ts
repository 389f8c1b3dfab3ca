/**
 * A VM resumed on another host from its memory and registers, the core of vMotion's phase D:
 * a memstress VM runs to step 300 on host A and stops; its pages (through the stream's PAGES
 * records) and registers go to host B, which starts the VM's VMM without booting it. Run on to
 * step 800 on both hosts, the two copies have the same memory hash: the guest went on from
 * where it was, not from a reboot. A restore that fails leaves nothing behind on B.
 */
import t from 'tap';
import { silentLogger, type VmConfig } from '@esxemu/shared';
import { applyPages, pageBatches } from '../src/migration/pages.js';
import { encodePages, StreamReader, encodePreamble, encodeControl, REC, type PageEntry } from '../src/migration/stream.js';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import type { Pmap } from '../src/vmkernel/memory/pmap.js';
import { Vmkernel } from '../src/vmkernel/vmkernel.js';

t.setTimeout(90_000);

const cfg: VmConfig = { id: 'mig1', name: 'mig1', memoryMiB: 8, vcpus: 1, workload: { kind: 'memstress', workingSetMiB: 2, dirtyPagesPerS: 2000 }, seed: 42, ip: '127.77.254.1' };

function host(): Vmkernel {
  return new Vmkernel({ cpuCores: 2, cpuMhz: 2000, machine: MachineMemory.create(64), logger: silentLogger(), sampleIntervalMs: 200 });
}

/** The source's pages, encoded as a stream and decoded again, as they would cross the wire. */
function overTheWire(src: Pmap): PageEntry[][] {
  const parts: Buffer[] = [encodePreamble(), ...encodeControl(REC.HELLO, { migrationId: 'm', vmId: cfg.id, pages: src.pages })];
  for (const batch of pageBatches(src, Array.from({ length: src.pages }, (_, i) => i))) parts.push(...encodePages(batch));
  parts.push(...encodeControl(REC.SWITCHOVER), ...encodeControl(REC.DEVICE_STATE, {}), ...encodeControl(REC.COMPLETE));
  const received: PageEntry[][] = [];
  const reader = new StreamReader({ side: 'destination', onEvent: (e) => e.type === 'pages' && received.push(e.pages), onError: (e) => { throw e; } });
  reader.push(Buffer.concat(parts));
  return received;
}

t.test('a VM stopped on one host goes on on another from the same step with the same memory', async (t) => {
  const a = host();
  const b = host();
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  await a.powerOn(cfg, { stopAtStep: 300 });
  const va = a.get(cfg.id);
  t.equal(await va.waitPaused(20_000), 300, 'stopped at step 300 on host A');
  const records = overTheWire(va.pmap);
  const regs = va.regs.save();

  await b.powerOn(cfg, { stopAtStep: 800, restore: { load: (pmap) => { for (const r of records) applyPages(pmap, r); return regs; } } });
  const vb = b.get(cfg.id);
  t.equal(await vb.waitPaused(20_000), 800, 'host B ran it on to step 800');
  t.equal(await va.runUntil(800, 20_000), 800, 'host A ran its copy to step 800 too');
  const [ha, hb] = await Promise.all([va.memoryHash(), vb.memoryHash()]);
  t.equal(hb.hash, ha.hash, 'same memory: the guest went on where it was, it was not rebooted');
  t.equal(vb.pmap.consumedPages, va.pmap.consumedPages, 'and backs the same number of pages');
});

t.test('a restore that fails frees what it took', async (t) => {
  const b = host();
  t.teardown(() => b.close());
  await t.rejects(b.powerOn(cfg, { restore: { load: () => { throw new Error('the stream broke'); } } }), /the stream broke/);
  t.equal(b.list().length, 0, 'no VM left on the host');
  await t.rejects(b.powerOn(cfg, { restore: { load: () => new Uint32Array(3) } }), /register state/);
  t.equal(b.list().length, 0, 'a register image of the wrong size is refused too');
});
