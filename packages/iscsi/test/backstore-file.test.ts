/**
 * The file backstore: a sparse file per LUN with its allocation map. Durability is tested the
 * hard way: a child process writes with FUA and UNMAPs, then kills itself with SIGKILL; a fresh
 * open must read the data back and find the map as it was acknowledged.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { FileBackstore, GRANULE_BYTES } from '../src/backstore/file.js';
import { fallocateBinary } from '../src/backstore/punch-hole.js';

t.setTimeout(60_000);
const dir = mkdtempSync(join(tmpdir(), 'esxemu-bs-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const SIZE = 64 * GRANULE_BYTES; // 4 MiB
const G = GRANULE_BYTES;

t.test('create, write, read, map survives a clean reopen', async (t) => {
  const path = join(dir, 'a.img');
  const bs = await FileBackstore.open({ path, sizeBytes: SIZE });
  t.equal(statSync(path).size, SIZE, 'file has the LUN size');
  t.ok(statSync(path).blocks * 512 < SIZE / 4, 'and is sparse');
  t.ok(existsSync(`${path}.map`), 'sidecar map created');
  t.same(await bs.mapping(0, SIZE), [{ offset: 0, length: SIZE, mapped: false }], 'nothing allocated');
  await bs.write(G + 512, Buffer.alloc(1024, 0x5a));
  await bs.write(5 * G, Buffer.alloc(2 * G, 0x6b), { fua: true });
  t.ok((await bs.read(G + 512, 1024)).equals(Buffer.alloc(1024, 0x5a)), 'read back');
  t.same((await bs.mapping(0, 8 * G)).map((r) => [r.offset / G, r.length / G, r.mapped]), [[0, 1, false], [1, 1, true], [2, 3, false], [5, 2, true], [7, 1, false]], 'granules touched are mapped');
  await bs.unmap(5 * G, G);
  t.ok((await bs.read(5 * G, G)).equals(Buffer.alloc(G)), 'unmapped granule reads zero');
  await bs.unmap(6 * G + 512, 512);
  t.ok((await bs.read(6 * G, 1024)).equals(Buffer.concat([Buffer.alloc(512, 0x6b), Buffer.alloc(512)])), 'partial unmap zeroes just its blocks');
  await bs.close();
  const again = await FileBackstore.open({ path, sizeBytes: SIZE });
  t.equal(again.mapRebuilt, false, 'the map was loaded, not rebuilt');
  t.same((await again.mapping(0, 8 * G)).map((r) => [r.offset / G, r.length / G, r.mapped]), [[0, 1, false], [1, 1, true], [2, 4, false], [6, 1, true], [7, 1, false]], 'same map after reopen');
  t.ok((await again.read(G + 512, 1024)).equals(Buffer.alloc(1024, 0x5a)), 'same data after reopen');
  await again.close();
  await t.rejects(FileBackstore.open({ path, sizeBytes: SIZE * 2 }), { code: 'INVALID_STATE' }, 'a size that does not match the file is refused');
  unlinkSync(`${path}.map`);
  const rebuilt = await FileBackstore.open({ path });
  t.equal(rebuilt.mapRebuilt, true, 'a lost map is rebuilt');
  t.same(await rebuilt.mapping(0, SIZE), [{ offset: 0, length: SIZE, mapped: true }], 'as all mapped (the safe assumption)');
  await rebuilt.close();
});

t.test('bounds and holes', async (t) => {
  const path = join(dir, 'b.img');
  const bs = await FileBackstore.open({ path, sizeBytes: SIZE });
  t.teardown(() => bs.close());
  await t.rejects(bs.read(100, 512), { code: 'INVALID_ARGUMENT' }, 'unaligned');
  await t.rejects(bs.write(SIZE, Buffer.alloc(512)), { code: 'INVALID_ARGUMENT' }, 'beyond the end');
  await t.rejects(bs.read(0, 64 * 1024 * 1024), { code: 'INVALID_ARGUMENT' }, 'beyond the end and too large');
  await t.rejects(FileBackstore.open({ path: join(dir, 'missing.img'), create: false }), { code: 'NOT_FOUND' });
  await bs.write(8 * G, Buffer.alloc(8 * G, 1), { fua: true });
  const allocated = statSync(path).blocks;
  await bs.unmap(8 * G, 8 * G);
  t.same(await bs.mapping(8 * G, 8 * G), [{ offset: 8 * G, length: 8 * G, mapped: false }], 'deallocated');
  if (fallocateBinary()) t.ok(statSync(path).blocks < allocated, 'the space went back to the filesystem (punched)');
  else t.comment('fallocate not installed: zeros were written instead of punching');
  t.ok((await bs.read(8 * G, 8 * G)).equals(Buffer.alloc(8 * G)), 'reads zero');
});

const CHILD = `
import { FileBackstore } from ${JSON.stringify(fileURLToPath(new URL('../src/backstore/file.js', import.meta.url)))};
const [path, size] = [process.argv[2], Number(process.argv[3])];
const G = ${G};
const bs = await FileBackstore.open({ path, sizeBytes: size });
await bs.write(0, Buffer.alloc(G, 1));                  // acknowledged with FUA below, by flush()
await bs.flush();
await bs.write(3 * G, Buffer.alloc(512, 3), { fua: true });
await bs.write(10 * G, Buffer.alloc(2 * G, 10), { fua: true });
await bs.unmap(11 * G, G);                               // acknowledged: the map is durable
await bs.write(20 * G, Buffer.alloc(4096, 20));          // not synced: survives a process kill (page cache)
process.stdout.write('acknowledged\\n');
process.kill(process.pid, 'SIGKILL');
`;

t.test('kill -9 loses no acknowledged write and no acknowledged unmap', async (t) => {
  const path = join(dir, 'c.img');
  const script = join(dir, 'child.mjs');
  writeFileSync(script, CHILD);
  const child = spawn(process.execPath, [script, path, String(SIZE)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('child did not finish in 20 s'));
    }, 20_000);
    child.on('exit', (_code, sig) => {
      clearTimeout(timer);
      resolve(sig);
    });
  });
  t.equal(signal, 'SIGKILL', 'the writer died by SIGKILL');
  t.equal(out.trim(), 'acknowledged', 'after every call was acknowledged');
  const bs = await FileBackstore.open({ path, sizeBytes: SIZE });
  t.teardown(() => bs.close());
  t.equal(bs.mapRebuilt, false, 'the map file is intact');
  t.ok((await bs.read(0, G)).equals(Buffer.alloc(G, 1)), 'flushed write is there');
  t.ok((await bs.read(3 * G, 512)).equals(Buffer.alloc(512, 3)), 'FUA write is there');
  t.ok((await bs.read(10 * G, G)).equals(Buffer.alloc(G, 10)), 'FUA write before the unmap is there');
  t.ok((await bs.read(11 * G, G)).equals(Buffer.alloc(G)), 'the unmapped granule reads zero');
  t.ok((await bs.read(20 * G, 4096)).equals(Buffer.alloc(4096, 20)), 'an unsynced write survives a process kill too');
  const runs = (await bs.mapping(0, 24 * G)).filter((r) => r.mapped).map((r) => [r.offset / G, r.length / G]);
  t.same(runs, [[0, 1], [3, 1], [10, 1], [20, 1]], 'the map matches what was acknowledged');
});
