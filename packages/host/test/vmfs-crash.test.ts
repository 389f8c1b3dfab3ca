/**
 * Crash safety: every metadata operation is cut at every write it issues (and, at every other
 * index, with the cutting write torn in half). After each crash:
 *  - fsck on the LUN as left finds no error (it checks the state recovery will produce);
 *  - the state is recovered either by the host itself mounting again (its journal replayed),
 *    or by another host after the lease (recoverDeadHosts), alternately;
 *  - after recovery the operation is all-or-nothing, fsck finds neither error nor pending
 *    journal, and the survivor goes on creating and removing files.
 * Both lock paths (ATS and reservations).
 */
import t from 'tap';
import { CrashingBlockDevice, fsck, ManualClock, MemoryBlockDevice, MemoryLun, mount, type Vmfs } from '../src/vmfs/index.js';
import { formatted, KIB, liveFor, pattern } from './vmfs-helpers.js';

const HB = { heartbeatMs: 10, leaseMs: 60, fenceMs: 30, autoHeartbeat: false } as const;
const B = 64 * KIB;

interface Op {
  name: string;
  run(fs: Vmfs): Promise<void>;
  /** The operation happened entirely or not at all. */
  check(fs: Vmfs): Promise<string | null>;
}

const diskBefore = pattern(3 * B + 100, 9);
const added = pattern(200 * KIB, 10);
const FAR = 130 * B; // past the 108 direct pointers: needs a pointer block

const ops: Op[] = [
  { name: 'mkdir', run: (fs) => fs.mkdir('vm2'), check: async (fs) => ((await fs.exists('vm2')) && (await fs.stat('vm2')).type !== 'directory' ? 'vm2 is not a directory' : null) },
  { name: 'create', run: (fs) => fs.create('vm1/new.vmx'), check: async (fs) => ((await fs.exists('vm1/new.vmx')) && (await fs.stat('vm1/new.vmx')).size !== 0 ? 'new file not empty' : null) },
  {
    name: 'write with allocation',
    run: async (fs) => {
      const f = await fs.open('vm1/disk', 'exclusive');
      await f.write(FAR, added);
      await f.close();
    },
    check: async (fs) => {
      const f = await fs.open('vm1/disk', 'read-only');
      try {
        if (!(await f.read(0, diskBefore.length)).equals(diskBefore)) return 'old data damaged';
        if (f.size === diskBefore.length) return null;
        if (f.size !== FAR + added.length) return `size ${f.size}`;
        return (await f.read(FAR, added.length)).equals(added) ? null : 'new data wrong';
      } finally {
        await f.close();
      }
    },
  },
  {
    name: 'truncate',
    run: async (fs) => {
      const f = await fs.open('vm1/disk', 'exclusive');
      await f.truncate(1000);
      await f.close();
    },
    check: async (fs) => {
      const f = await fs.open('vm1/disk', 'read-only');
      try {
        // shrinking runs in steps: any prefix of the old content at a block boundary, or 1000
        if (f.size > diskBefore.length) return `grew to ${f.size}`;
        return (await f.read(0, Math.min(f.size, 1000))).equals(diskBefore.subarray(0, Math.min(f.size, 1000))) ? null : 'data damaged';
      } finally {
        await f.close();
      }
    },
  },
  { name: 'unlink', run: (fs) => fs.unlink('vm1/a.vmx'), check: async (fs) => ((await fs.exists('vm1/a.vmx')) && !(await fs.readFile('vm1/a.vmx')).equals(Buffer.from('config')) ? 'content changed' : null) },
  { name: 'rmdir', run: (fs) => fs.rmdir('empty'), check: async () => null },
];

/** The LUN every case starts from. */
async function baseImage(): Promise<Buffer> {
  const san = await formatted({ sizeBytes: 16 * 1024 * 1024 });
  const fs = await mount(san.device('prep'), { ...HB, hostId: 1, clock: new ManualClock() });
  await fs.mkdir('vm1');
  await fs.mkdir('empty');
  await fs.writeFile('vm1/a.vmx', Buffer.from('config'));
  await fs.writeFile('vm1/disk', diskBefore);
  await fs.unmount();
  return Buffer.from(san.lun.data);
}

function lunFrom(image: Buffer): MemoryLun {
  const lun = new MemoryLun(image.length, 512);
  image.copy(lun.data);
  return lun;
}

async function mountCrashing(lun: MemoryLun, ats: boolean): Promise<{ fs: Vmfs; crash: CrashingBlockDevice; raw: MemoryBlockDevice }> {
  const raw = new MemoryBlockDevice(lun, { name: 'esx01', ats });
  const crash = new CrashingBlockDevice(raw, { writesBeforeCrash: Infinity });
  const fs = await mount(crash, { ...HB, hostId: 1, clock: new ManualClock() });
  return { fs, crash, raw };
}

const image = await baseImage();

for (const ats of [true, false]) {
  for (const op of ops) {
    t.test(`${ats ? 'ATS' : 'reservations'}: crash during ${op.name} at every write`, async (t) => {
      // Count the writes of the operation.
      const probe = await mountCrashing(lunFrom(image), ats);
      const start = probe.crash.writes;
      await op.run(probe.fs);
      const writes = probe.crash.writes - start;
      t.ok(writes > 2, `${op.name} issues ${writes} writes`);
      await probe.fs.unmount();
      let failures = 0;
      for (let k = 0; k < writes; k++) {
        const lun = lunFrom(image);
        const h = await mountCrashing(lun, ats);
        h.crash.crashAfter(k, k % 2 === 1);
        await op.run(h.fs).catch(() => undefined);
        h.fs.abandon();
        await h.raw.close(); // the nexus goes away with the host
        const seed = `${op.name} k=${k}${k % 2 ? ' torn' : ''}`;
        const asLeft = await fsck(new MemoryBlockDevice(lun));
        if (asLeft.errors.length) {
          failures++;
          t.same(asLeft.errors, [], `${seed}: fsck of the LUN as the crash left it`);
        }
        // Recover: alternately the host itself (remount) or another host after the lease.
        let fs: Vmfs;
        if (k % 4 < 2) {
          fs = await mount(new MemoryBlockDevice(lun, { ats }), { ...HB, hostId: 1, clock: new ManualClock() });
        } else {
          const clock = new ManualClock();
          fs = await mount(new MemoryBlockDevice(lun, { ats }), { ...HB, hostId: 2, clock });
          await liveFor({ fs, clock }, HB.leaseMs + 1);
          const rec = await fs.recoverDeadHosts();
          if (rec.length !== 1 || rec[0] !== 1) t.fail(`${seed}: host 1 not recovered (${JSON.stringify(rec)})`);
        }
        const atomic = await op.check(fs);
        if (atomic) t.fail(`${seed}: not all-or-nothing: ${atomic}`);
        await fs.writeFile('vm1/after-crash', pattern(5000, k));
        if (!(await fs.readFile('vm1/after-crash')).equals(pattern(5000, k))) t.fail(`${seed}: survivor's file wrong`);
        await fs.unlink('vm1/after-crash');
        await fs.unmount();
        const after = await fsck(new MemoryBlockDevice(lun));
        if (after.errors.length || after.warnings.some((w) => w.kind === 'PENDING_JOURNAL')) {
          failures++;
          t.same([...after.errors, ...after.warnings.filter((w) => w.kind === 'PENDING_JOURNAL')], [], `${seed}: fsck after recovery`);
        }
      }
      t.equal(failures, 0, `${writes} crash points, each fsck clean before and after recovery`);
    });
  }
}
