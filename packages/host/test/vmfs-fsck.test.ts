/**
 * fsck finds what is wrong: each kind of inconsistency it knows is injected into a clean file
 * system on a memory LUN (by rewriting sealed records as a bug or a bad disk would), and fsck
 * must report that kind, as an error or (for the crash leftovers) a warning. fsck never
 * writes: the LUN is byte-identical after every run.
 */
import t, { type Test } from 'tap';
import { CrashingBlockDevice, fsck, ManualClock, MemoryBlockDevice, mount, type FindingKind } from '../src/vmfs/index.js';
import { decodeSuperblock, encodeSuperblock, Geometry } from '../src/vmfs/format.js';
import { decodeDirSector, decodeInode, encodeDirSector, encodeInode } from '../src/vmfs/inode.js';
import { encodeBitmap, encodeLock, LOCK_MODE, type BitmapSector } from '../src/vmfs/records.js';
import { formatted, KIB, manualHost, pattern, type TestSan } from './vmfs-helpers.js';

const san = await formatted({ sizeBytes: 8 * 1024 * 1024 });
{
  const { fs } = await manualHost(san, 1);
  await fs.mkdir('vm1');
  await fs.mkdir('vm2');
  await fs.writeFile('vm1/vm1.vmx', Buffer.from('a'));
  await fs.writeFile('vm1/disk', pattern(200 * KIB, 1));
  await fs.writeFile('vm2/vm2.vmx', Buffer.from('b'));
  await fs.unmount();
}
const clean = Buffer.from(san.lun.data);
const S = 512;
const geo = new Geometry(decodeSuperblock(clean.subarray(0, S), { blockSize: S, blocks: clean.length / S }));
const sector = (lba: number): Buffer => Buffer.from(san.lun.data.subarray(lba * S, (lba + 1) * S));
const put = (lba: number, b: Buffer): void => void b.copy(san.lun.data, lba * S);
const inode = (ino: number) => decodeInode(sector(geo.inode(ino)), ino, geo.inode(ino), geo.sb.dataBlocks);
const putInode = (n: ReturnType<typeof inode>): void => put(geo.inode(n.ino), encodeInode(n, S));
// inode numbers as created: 1 vm1, 2 vm2, 3 vm1.vmx, 4 disk, 5 vm2.vmx
const dirSector = (dirIno: number) => {
  const lba = geo.blockLba(inode(dirIno).direct[0]! - 1);
  return { lba, slots: decodeDirSector(sector(lba), dirIno, 0, lba, geo.sb.maxFiles) };
};
const bitmap = (c: number): BitmapSector => ({ cluster: c, free: sector(geo.bitmap(c)).readUInt32LE(12), raw: sector(geo.bitmap(c)) });

async function expectFinding(t: Test, kind: FindingKind, inject: (s: TestSan) => void | Promise<void>, opts: { observeMs?: number } = {}): Promise<void> {
  clean.copy(san.lun.data);
  await inject(san);
  const before = Buffer.from(san.lun.data);
  const r = await fsck(new MemoryBlockDevice(san.lun), opts);
  const all = [...r.errors, ...r.warnings];
  t.ok(all.some((f) => f.kind === kind), `${kind} reported (got ${all.map((f) => f.kind).join(', ') || 'nothing'})`);
  t.ok(san.lun.data.equals(before), 'fsck wrote nothing');
}

t.test('a clean file system has no finding', async (t) => {
  clean.copy(san.lun.data);
  const r = await fsck(new MemoryBlockDevice(san.lun));
  t.same([...r.errors, ...r.warnings], []);
  t.equal(r.clean, true);
  t.match(r.stats, { files: 3, directories: 3 });
});

t.test('errors', async (t) => {
  await expectFinding(t, 'BAD_CHECKSUM', () => void (san.lun.data[geo.inode(4) * S + 30] ^= 0xff));
  await expectFinding(t, 'BAD_CHECKSUM', () => void (san.lun.data[geo.hbSlot(1) * S + 20] ^= 0xff));
  await expectFinding(t, 'BAD_RECORD', () => put(geo.inodeLock(3), encodeLock({ index: geo.lockIndexOf(geo.inodeLock(3)) + 1, gen: 1, mode: LOCK_MODE.FREE, holders: [] }, S)));
  await expectFinding(t, 'BAD_FREE_COUNT', () => {
    const b = bitmap(0);
    put(geo.bitmap(0), encodeBitmap({ ...b, free: b.free + 1 }));
  });
  await expectFinding(t, 'LEAKED_BLOCK', () => {
    const last = geo.sb.clusters - 1;
    const b = bitmap(last);
    b.raw[16] |= 0x01; // block 0 of the last cluster, never used by these files
    put(geo.bitmap(last), encodeBitmap({ ...b, free: b.free - 1 }));
  });
  await expectFinding(t, 'FREE_BLOCK_IN_USE', () => {
    const blk = inode(3).direct[0]! - 1; // vm1.vmx's block
    const c = Math.floor(blk / geo.sb.blocksPerCluster);
    const i = blk % geo.sb.blocksPerCluster;
    const b = bitmap(c);
    b.raw[16 + (i >> 3)] &= ~(1 << (i & 7));
    put(geo.bitmap(c), encodeBitmap({ ...b, free: b.free + 1 }));
  });
  await expectFinding(t, 'DOUBLE_ALLOCATED', () => {
    const vmx2 = inode(5);
    vmx2.direct[0] = inode(3).direct[0]!;
    putInode(vmx2);
  });
  await expectFinding(t, 'BLOCK_BEYOND_EOF', () => putInode({ ...inode(4), size: 10 }));
  await expectFinding(t, 'DANGLING_ENTRY', () => putInode({ ...inode(5), gen: inode(5).gen + 1 }));
  await expectFinding(t, 'ORPHAN_INODE', () => {
    const d = dirSector(2);
    put(d.lba, encodeDirSector(2, 0, d.slots.map((e) => (e?.name === 'vm2.vmx' ? null : e)), S));
  });
  await expectFinding(t, 'DUPLICATE_NAME', () => {
    const d = dirSector(1);
    put(d.lba, encodeDirSector(1, 0, d.slots.map((e) => (e?.name === 'disk' ? { ...e, name: 'vm1.vmx' } : e)), S));
  });
  await expectFinding(t, 'BAD_PARENT', () => putInode({ ...inode(5), parent: 1 }));
  await expectFinding(t, 'MULTIPLY_LINKED', () => {
    const d = dirSector(2);
    const slots = [...d.slots];
    slots[slots.indexOf(null)] = { ...dirSector(1).slots.find((e) => e?.name === 'vm1.vmx')!, name: 'alias' };
    put(d.lba, encodeDirSector(2, 0, slots, S));
  });
  await expectFinding(t, 'FORMAT_INCOMPLETE', () => put(0, encodeSuperblock({ ...geo.sb, state: 1 })));
});

t.test('crash leftovers are warnings, not errors', async (t) => {
  await expectFinding(t, 'STALE_LOCK', async () => {
    const { fs } = await manualHost(san, 2);
    await fs.open('vm1/vm1.vmx', 'exclusive');
    fs.abandon(); // the host dies holding the lock
  }, { observeMs: 30 });
  for (const [kind, tear] of [['PENDING_JOURNAL', false], ['TORN_JOURNAL', true]] as const) {
    await expectFinding(t, kind, async () => {
      const dev = new CrashingBlockDevice(new MemoryBlockDevice(san.lun), { writesBeforeCrash: Infinity });
      const fs = await mount(dev, { hostId: 3, heartbeatMs: 10, leaseMs: 60, fenceMs: 30, autoHeartbeat: false, clock: new ManualClock() });
      // find the journal commit of a create, then crash right after it (or tear it)
      const probeAt = dev.log.length;
      const journal = geo.journal(3);
      await fs.create('probe');
      const idx = dev.log.slice(probeAt).findIndex((lba) => lba === journal);
      t.ok(idx >= 0, 'the create wrote its journal');
      await fs.unlink('probe');
      dev.crashAfter(idx + (tear ? 0 : 1), tear);
      await fs.create('probe').catch(() => undefined);
      fs.abandon();
    });
    const r = await fsck(new MemoryBlockDevice(san.lun));
    t.same(r.errors, [], `${kind}: still no error`);
  }
});
