/**
 * VMFS on a memory LUN, one host: mkfs / mount refusals (NOT_FORMATTED, FORMAT_UNSUPPORTED,
 * CORRUPT, being formatted, already formatted), the namespace and the data path round trip
 * (thin allocation, holes, unaligned writes, indirect blocks, truncate), NO_SPACE, and df.
 */
import t from 'tap';
import { fsck, mkfs, mount, FORMAT_VERSION } from '../src/vmfs/index.js';
import { encodeSuperblock, decodeSuperblock } from '../src/vmfs/format.js';
import { formatted, KIB, manualHost, memorySan, MIB, pattern, SMALL_FS } from './vmfs-helpers.js';

const esx = (c: string, details?: Record<string, unknown>) => ({ code: c, ...(details ? { details } : {}) });

t.test('a LUN without a file system: mount says NOT_FORMATTED and writes nothing', async (t) => {
  const san = memorySan(4 * MIB);
  await t.rejects(mount(san.device('h1'), { hostId: 1 }), esx('NOT_FORMATTED'));
  t.ok(san.lun.data.every((b) => b === 0), 'the LUN is untouched');
});

t.test('mkfs refuses a LUN that already holds a VMFS unless forced, and non-VMFS data', async (t) => {
  const san = await formatted();
  const before = Buffer.from(san.lun.data);
  await t.rejects(mkfs(san.device('h2'), SMALL_FS), esx('INVALID_STATE', { reason: 'ALREADY_FORMATTED' }));
  t.ok(san.lun.data.equals(before), 'nothing overwritten');
  const other = memorySan(4 * MIB);
  other.lun.data.write('not a file system', 0);
  await t.rejects(mkfs(other.device('h1'), SMALL_FS), esx('INVALID_STATE'));
  await mkfs(other.device('h1'), { ...SMALL_FS, force: true });
  const { fs } = await manualHost(other, 1);
  t.same(await fs.readdir('/'), []);
  await fs.unmount();
  // forced over a VMFS nobody mounts: fine
  const r = await mkfs(san.device('h2'), { ...SMALL_FS, force: true, label: 'again' });
  t.equal(r.superblock.label, 'again');
});

t.test('mkfs --force refuses while a host heartbeats on the datastore', async (t) => {
  const san = await formatted();
  const fs = await mount(san.device('h1'), { hostId: 1, heartbeatMs: 20, leaseMs: 400, fenceMs: 200 });
  t.teardown(() => fs.unmount());
  const before = Buffer.from(san.lun.data.subarray(0, 512));
  await t.rejects(mkfs(san.device('h2'), { ...SMALL_FS, force: true, leaseMs: 400 }), esx('INVALID_STATE', { hostId: 1 }));
  t.ok(san.lun.data.subarray(0, 512).equals(before), 'superblock untouched');
  t.same(await fs.readdir('/'), [], 'the mounted host goes on');
});

t.test('superblock checks: CORRUPT on checksum mismatch, FORMAT_UNSUPPORTED for a newer version, INVALID_STATE while formatting', async (t) => {
  const san = await formatted();
  const good = Buffer.from(san.lun.data.subarray(0, 512));
  san.lun.data[130] ^= 0x01; // inside the label area, covered by the checksum
  await t.rejects(mount(san.device('h1'), { hostId: 1 }), esx('CORRUPT'));
  const report = fsck(san.device('f'));
  await t.rejects(report, esx('CORRUPT'), 'fsck says the same');
  good.copy(san.lun.data, 0);
  const sb = decodeSuperblock(good, { blockSize: 512, blocks: san.lun.blocks });
  encodeSuperblock({ ...sb, version: FORMAT_VERSION + 1 }).copy(san.lun.data, 0);
  await t.rejects(mount(san.device('h1'), { hostId: 1 }), esx('FORMAT_UNSUPPORTED', { version: FORMAT_VERSION + 1 }));
  encodeSuperblock({ ...sb, dataStart: sb.dataStart + 1 }).copy(san.lun.data, 0);
  await t.rejects(mount(san.device('h1'), { hostId: 1 }), esx('CORRUPT'), 'a sealed but impossible layout is CORRUPT too');
  encodeSuperblock({ ...sb, state: 1, formattingHost: 3 }).copy(san.lun.data, 0);
  await t.rejects(mount(san.device('h1'), { hostId: 1 }), esx('INVALID_STATE', { hostId: 3 }));
  good.copy(san.lun.data, 0);
  const { fs } = await manualHost(san, 1);
  await fs.unmount();
});

t.test('mount refuses a host id outside the datastore', async (t) => {
  const san = await formatted();
  await t.rejects(mount(san.device('h'), { hostId: 0 }), esx('INVALID_ARGUMENT'));
  await t.rejects(mount(san.device('h'), { hostId: SMALL_FS.maxHosts! + 1 }), esx('INVALID_ARGUMENT'));
});

for (const blockSize of [512, 4096]) {
  t.test(`namespace and data round trip (${blockSize}-byte sectors)`, async (t) => {
    const san = await formatted({ sizeBytes: 32 * MIB, blockSize });
    const { fs } = await manualHost(san, 1);
    await fs.mkdir('vm1');
    await fs.mkdir('vm2');
    await t.rejects(fs.mkdir('vm1'), esx('NAME_IN_USE'));
    await t.rejects(fs.create('nope/x'), esx('NOT_FOUND'));
    await fs.writeFile('vm1/vm1.vmx', Buffer.from('displayName = "vm1"\n'));
    t.equal((await fs.readFile('vm1/vm1.vmx')).toString(), 'displayName = "vm1"\n');
    await fs.create('vm1/vmware.log');
    t.same((await fs.readdir('/')).map((e) => [e.name, e.type]), [['vm1', 'directory'], ['vm2', 'directory']]);
    t.same((await fs.readdir('vm1')).map((e) => e.name), ['vm1.vmx', 'vmware.log']);
    t.equal((await fs.stat('vm1/vmware.log')).size, 0);

    const disk = await fs.open('vm1/vm1-flat.vmdk', 'exclusive', { create: true });
    // Thin: a hole, then unaligned data spanning blocks, far enough to need an indirect block.
    const far = 120 * 64 * KIB + 333; // file block 120 > 108 direct pointers
    const a = pattern(150_000, 1);
    const b = pattern(70_001, 2);
    await disk.write(1001, a);
    await disk.write(far, b);
    t.equal(disk.size, far + b.length);
    t.ok((await disk.read(1001, a.length)).equals(a), 'unaligned data back');
    t.ok((await disk.read(far, b.length)).equals(b), 'data behind an indirect pointer back');
    t.ok((await disk.read(10 * 64 * KIB, 64 * KIB)).equals(Buffer.alloc(64 * KIB)), 'a hole reads as zeros');
    t.ok((await disk.read(0, 1001)).equals(Buffer.alloc(1001)), 'zeros before the first write in its block');
    const st = await fs.stat('vm1/vm1-flat.vmdk');
    t.ok(st.allocatedBytes < st.size, `thin: ${st.allocatedBytes} bytes allocated for ${st.size}`);
    // overwrite in place, inside a sector
    await disk.write(1005, Buffer.from('XY'));
    const again = await disk.read(1001, 8);
    t.same([...again], [...a.subarray(0, 4), 0x58, 0x59, ...a.subarray(6, 8)]);
    // truncate down into the middle of a block, then grow: the tail reads as zeros
    await disk.truncate(2000);
    await disk.truncate(5000);
    const tail = await disk.read(0, 5000);
    t.ok(tail.subarray(2000).equals(Buffer.alloc(3000)), 'the cut tail reads as zeros after growing again');
    t.ok(tail.subarray(1001, 2000).equals(Buffer.concat([a.subarray(0, 4), Buffer.from('XY'), a.subarray(6, 999)])));
    await disk.flush();
    await disk.close();
    t.equal((await fs.stat('vm1/vm1-flat.vmdk')).allocatedBytes, 64 * KIB, 'only the first block remains');

    await t.rejects(fs.rmdir('vm1'), esx('INVALID_STATE'), 'not empty');
    await t.rejects(fs.unlink('vm1'), esx('INVALID_ARGUMENT'), 'unlink of a directory');
    for (const n of ['vm1.vmx', 'vmware.log', 'vm1-flat.vmdk']) await fs.unlink(`vm1/${n}`);
    await fs.rmdir('vm1');
    await t.rejects(fs.stat('vm1'), esx('NOT_FOUND'));
    const report = await fsck(san.device('fsck'));
    t.same(report.errors, [], 'fsck clean');
    t.equal(report.stats.files, 0);
    await fs.unmount();
  });
}

t.test('a full datastore: NO_SPACE, nothing half-done, space comes back after unlink', async (t) => {
  const san = await formatted({ sizeBytes: 4 * MIB });
  const { fs } = await manualHost(san, 1);
  const f = await fs.open('big', 'exclusive', { create: true });
  const before = await fs.df(); // the root directory has its first block now
  t.ok(before.freeBytes > 0 && before.freeBytes < before.capacityBytes);
  const chunk = pattern(64 * KIB, 3);
  let written = 0;
  let err: unknown = null;
  for (let i = 0; i < 1000 && !err; i++) {
    try {
      await f.write(written, chunk);
      written += chunk.length;
    } catch (e) {
      err = e;
    }
  }
  t.match(err, esx('NO_SPACE'), `NO_SPACE after ${written} bytes`);
  t.equal(f.size, written, 'the failed write changed nothing');
  t.ok((await f.read(written - chunk.length, chunk.length)).equals(chunk), 'earlier data intact');
  t.equal((await fs.df()).freeBytes, 0);
  t.same((await fsck(san.device('f'))).errors, []);
  await f.close();
  await fs.unlink('big');
  t.equal((await fs.df()).freeBytes, before.freeBytes, 'every block back');
  t.same((await fsck(san.device('f'))).errors, []);
  await fs.unmount();
});

t.test('bad arguments are refused with INVALID_ARGUMENT', async (t) => {
  const san = await formatted();
  const { fs } = await manualHost(san, 1);
  await t.rejects(fs.create('a'.repeat(111)), esx('INVALID_ARGUMENT'));
  await t.rejects(fs.create('..'), esx('INVALID_ARGUMENT'));
  await t.rejects(fs.mkdir('/'), esx('INVALID_ARGUMENT'));
  const f = await fs.open('x', 'exclusive', { create: true });
  await t.rejects(f.read(-1, 10), esx('INVALID_ARGUMENT'));
  await t.rejects(f.write(1.5, Buffer.from('a')), esx('INVALID_ARGUMENT'));
  await f.close();
  await t.rejects(f.read(0, 1), esx('INVALID_STATE'), 'closed');
  await fs.unmount();
  await t.rejects(fs.readdir('/'), esx('INVALID_STATE'), 'unmounted');
});
