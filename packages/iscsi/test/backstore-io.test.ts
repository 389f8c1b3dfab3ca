/**
 * How the file backstore moves bytes (sync, thread pool, auto) and the pool its reads use. The
 * pool is only safe if a buffer is reused strictly after the socket has written it, so the last
 * test reads many distinct patterns at queue depth 32 through the real target and checks every
 * byte that came back, in each I/O mode.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { silentLogger } from '@esxemu/shared';
import { BufferPool, dataBuffers } from '../src/backstore/buffer-pool.js';
import { FileIo } from '../src/backstore/file-io.js';
import { FileBackstore } from '../src/backstore/file.js';
import { IscsiInitiator } from '../src/initiator/index.js';
import { configFromFlags, DEFAULT_TARGET_NAME, startIscsiTarget } from '../src/index.js';
import { FILE_IO_MODES } from '../src/index.js';
import { pattern } from './pattern.js';

t.setTimeout(120_000);
const dir = mkdtempSync(join(tmpdir(), 'esxemu-bsio-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('FileIo: every mode writes and reads the same bytes, and counts where they went', async (t) => {
  for (const mode of FILE_IO_MODES) {
    const fh = await open(join(dir, `io-${mode}.img`), 'w+');
    try {
      // A clock that stands still: auto mode's choice does not depend on how fast this disk is.
      const io = new FileIo(fh, { mode, now: () => 0 });
      const data = pattern(3 * 4096 + 512, 7);
      await io.writeFully(data, 8192);
      const back = Buffer.alloc(data.length + 1024, 0xee);
      await io.readFully(back, 0, data.length, 8192);
      t.ok(back.subarray(0, data.length).equals(data), `${mode}: read back what was written`);
      const tail = Buffer.alloc(4096, 0xee);
      await io.readFully(tail, 0, 4096, 8192 + data.length - 100);
      t.ok(tail.subarray(0, 100).equals(data.subarray(-100)) && tail.subarray(100).equals(Buffer.alloc(4096 - 100)), `${mode}: past the end of the file reads as zeros`);
      const st = io.stats;
      if (mode === 'threadpool') t.same([st.syncOps > 0, st.poolOps > 0], [false, true], 'threadpool: every I/O on the pool');
      else t.same([st.syncOps > 0, st.poolOps > 0], [true, false], `${mode}: every I/O sync (no I/O was slow by the clock)`);
    } finally {
      await fh.close();
    }
  }
});

t.test('FileIo auto: a slow sync I/O moves the file to the thread pool for the cooldown, then sync again', async (t) => {
  const fh = await open(join(dir, 'auto.img'), 'w+');
  t.teardown(() => fh.close());
  let clock = 0;
  let step = 0; // how far the clock moves on each reading: simulates the duration of a sync I/O
  const io = new FileIo(fh, { mode: 'auto', slowMs: 2, cooldownMs: 1000, now: () => (clock += step) });
  const buf = Buffer.alloc(4096, 1);
  step = 0.1;
  await io.writeFully(buf, 0);
  t.same(io.stats, { mode: 'auto', syncOps: 1, poolOps: 0, slowSwitches: 0 }, 'a fast I/O stays sync');
  step = 5;
  await io.readFully(buf, 0, 4096, 0);
  t.same(io.stats, { mode: 'auto', syncOps: 2, poolOps: 0, slowSwitches: 1 }, 'a 5 ms I/O switches');
  step = 0;
  await io.readFully(buf, 0, 4096, 0);
  await io.writeFully(buf, 4096);
  t.same(io.stats, { mode: 'auto', syncOps: 2, poolOps: 2, slowSwitches: 1 }, 'during the cooldown: the thread pool');
  clock += 1001;
  await io.readFully(buf, 0, 4096, 0);
  t.same(io.stats, { mode: 'auto', syncOps: 3, poolOps: 2, slowSwitches: 1 }, 'after it: sync again');
});

t.test('FileIo: an unknown mode is INVALID_ARGUMENT', async (t) => {
  const fh = await open(join(dir, 'bad.img'), 'w+');
  t.teardown(() => fh.close());
  t.throws(() => new FileIo(fh, { mode: 'fast' as never }), { code: 'INVALID_ARGUMENT' });
});

t.test('BufferPool: reuse, ownership, bounds', (t) => {
  const pool = new BufferPool({ maxFreeBytes: 128 * 1024 });
  const a = pool.take(65536);
  t.equal(a.length, 65536);
  pool.release(a);
  const b = pool.take(60000);
  t.equal(b.length, 60000, 'exactly the length asked for');
  t.equal(b.buffer, a.buffer, 'from the same size class: the same memory again');
  const c = pool.take(65536);
  t.not(c.buffer, b.buffer, 'a buffer that is out is never handed out twice');
  pool.release(b);
  pool.release(b);
  const d = pool.take(65536);
  const e = pool.take(65536);
  t.not(d.buffer, e.buffer, 'releasing twice puts it back once');
  const foreign = Buffer.alloc(65536);
  pool.release(foreign);
  pool.release(Buffer.from('sense'));
  pool.release(null);
  t.equal(pool.stats.released, 2, 'buffers the pool did not issue are ignored');
  const big = pool.take(4 * 1024 * 1024);
  t.equal(big.length, 4 * 1024 * 1024, 'above the largest class: a plain allocation');
  pool.release(big);
  t.equal(pool.stats.freeBytes, 0, 'and not kept');
  for (const x of [c, d, e, pool.take(65536)]) pool.release(x);
  t.equal(pool.stats.freeBytes, 128 * 1024, 'free buffers are kept up to maxFreeBytes only');
  t.end();
});

t.test('FileBackstore reads come from the pool and stay correct when it is reused', async (t) => {
  const bs = await FileBackstore.open({ path: join(dir, 'pool.img'), sizeBytes: 4 << 20 });
  t.teardown(() => bs.close());
  const p1 = pattern(65536, 1);
  const p2 = pattern(65536, 2);
  await bs.write(0, p1);
  await bs.write(65536, p2);
  const r1 = await bs.read(0, 65536);
  t.ok(r1.equals(p1));
  const before = dataBuffers.stats.reused;
  dataBuffers.release(r1);
  const r2 = await bs.read(65536, 65536);
  t.equal(dataBuffers.stats.reused, before + 1, 'the released buffer was reused');
  t.ok(r2.equals(p2), 'with the new data in it');
});

for (const mode of FILE_IO_MODES) {
  t.test(`the real target, LUN io=${mode}: 512 reads of distinct data at queue depth 32 all return their own bytes`, async (t) => {
    const config = configFromFlags({ dataDir: join(dir, `target-${mode}`), lunSize: 64, lunIo: mode });
    const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config, closeGraceMs: 300 });
    t.teardown(() => target.close());
    const s = await IscsiInitiator.connect({ portal: `127.0.0.1:${target.port}`, targetName: DEFAULT_TARGET_NAME, initiatorName: 'iqn.2026-11.io.esxemu:test-pool', queueDepth: 32 });
    t.teardown(() => s.close());
    const REGIONS = 128;
    const blocks = 128; // 64 KiB
    const data = Array.from({ length: REGIONS }, (_, i) => pattern(blocks * 512, 100 + i));
    const w = await Promise.all(data.map((b, i) => s.write(0, i * blocks, b)));
    t.ok(w.every((r) => r.ok), 'writes GOOD');
    const reusedBefore = dataBuffers.stats.reused;
    let bad = 0;
    await Promise.all(
      Array.from({ length: 512 }, async (_, k) => {
        const i = (k * 37) % REGIONS;
        const len = k % 3 === 0 ? blocks : 8; // 64 KiB and 4 KiB reads share the pool
        const r = await s.read(0, i * blocks, len);
        if (!r.ok || !r.value.equals(data[i]!.subarray(0, len * 512))) bad++;
      }),
    );
    t.equal(bad, 0, 'no read saw bytes of another');
    t.ok(dataBuffers.stats.reused > reusedBefore, `the pool was reused (${dataBuffers.stats.reused - reusedBefore} times)`);
  });
}
