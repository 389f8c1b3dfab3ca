/**
 * Block commands through ScsiTargetDevice.execute, over a memory backstore and over a file
 * backstore in a temporary directory: READ/WRITE (6/10/12/16), WRITE AND VERIFY, VERIFY,
 * WRITE SAME with UNMAP, UNMAP, GET LBA STATUS, COMPARE AND WRITE (match, miscompare with the
 * offset in the sense data, atomicity), ORWRITE, PRE-FETCH, SYNCHRONIZE CACHE, START STOP UNIT;
 * every out-of-range command changes nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Backstore } from '../src/backstore/backstore.js';
import { FileBackstore } from '../src/backstore/file.js';
import { MemoryBackstore } from '../src/backstore/memory.js';
import { ScsiTarget } from '../src/scsi/target-device.js';
import {
  cdb,
  fill,
  INVALID_FIELD_IN_CDB,
  INVALID_FIELD_IN_PARAM,
  INVALID_OPCODE,
  LBA_OUT_OF_RANGE,
  MISCOMPARE,
  nexus,
  OK,
  outcome,
  PARAM_LIST_LENGTH_ERROR,
  run,
  sense,
  TARGET,
  unmapParams,
} from './scsi-helpers.js';

t.setTimeout(60_000);

const BLOCKS = 16384; // 8 MiB
const dir = mkdtempSync(join(tmpdir(), 'esxemu-sbc-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

let fileNo = 0;
const kinds: [string, () => Promise<Backstore>][] = [
  ['memory', async () => new MemoryBackstore(BLOCKS * 512)],
  ['file', async () => FileBackstore.open({ path: join(dir, `lun${fileNo++}.img`), sizeBytes: BLOCKS * 512 })],
];

async function setup(t: Test, make: () => Promise<Backstore>, opts: { removable?: boolean; ats?: boolean } = {}) {
  const backstore = await make();
  const limits = { maxTransferBlocks: 1024, maxWriteSameBlocks: 4096 };
  const target = new ScsiTarget({ targetName: TARGET, luns: [{ lun: 0, backstore, removable: opts.removable ?? false, limits, ...(opts.ats !== undefined ? { ats: opts.ats } : {}) }] });
  t.teardown(() => target.close());
  const n = nexus();
  target.nexusAdded(n);
  await run(target, n, cdb.tur()); // consume the power-on unit attention
  const read = async (lba: number, blocks: number) => (await run(target, n, cdb.read16(lba, blocks))).data!;
  return { target, n, backstore, read };
}

for (const [kind, make] of kinds) {
  t.test(`${kind}: READ and WRITE (6/10/12/16)`, async (t) => {
    const { target, n, read } = await setup(t, make);
    const cases: [string, Buffer, Buffer, number, number][] = [
      ['6', cdb.write6(10, 2), cdb.read6(10, 2), 10, 2],
      ['10', cdb.write10(100, 3), cdb.read10(100, 3), 100, 3],
      ['12', cdb.write12(200, 4), cdb.read12(200, 4), 200, 4],
      ['16', cdb.write16(BLOCKS - 5, 5), cdb.read16(BLOCKS - 5, 5), BLOCKS - 5, 5],
    ];
    for (const [size, w, r, lba, nb] of cases) {
      const data = Buffer.alloc(nb * 512);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7 + lba) & 0xff;
      t.equal(outcome(await run(target, n, w, { dataOut: data })), OK, `WRITE(${size})`);
      const back = await run(target, n, r);
      t.equal(outcome(back), OK, `READ(${size})`);
      t.ok(back.data!.equals(data), `READ(${size}) returns what WRITE(${size}) wrote`);
      t.equal(back.data!.length, nb * 512);
    }
    t.equal((await run(target, n, cdb.read6(0, 0))).data!.length, 256 * 512, 'READ(6) length 0 means 256 blocks');
    t.equal((await run(target, n, cdb.read10(0, 0))).data!.length, 0, 'READ(10) of zero blocks');
    t.equal(outcome(await run(target, n, cdb.write10(5, 1, 0x18), { dataOut: fill(1, 0x33) })), OK, 'DPO and FUA accepted');
    t.equal((await read(5, 1))[0], 0x33);
    t.equal(outcome(await run(target, n, cdb.read10(5, 1, 0x18))), OK, 'FUA read');
    t.equal(outcome(await run(target, n, cdb.read10(0, 1, 0x20))), INVALID_FIELD_IN_CDB, 'RDPROTECT without protection information');
    t.equal(outcome(await run(target, n, cdb.write10(0, 1, 0x40), { dataOut: fill(1, 1) })), INVALID_FIELD_IN_CDB, 'WRPROTECT');
    t.equal(outcome(await run(target, n, cdb.read16(0, 1025))), INVALID_FIELD_IN_CDB, 'beyond the maximum transfer length');

    // the initiator sent less (or more) than the CDB says: only whole blocks received are written
    await run(target, n, cdb.write10(300, 2), { dataOut: fill(2, 0x61) });
    t.equal(outcome(await run(target, n, cdb.write10(300, 2), { dataOut: fill(1, 0x62) })), OK, 'short Data-Out');
    const two = await read(300, 2);
    t.same([two[0], two[512]], [0x62, 0x61], 'only the block received was written');
    const w = await run(target, n, cdb.write10(300, 1), { dataOut: fill(2, 0x63) });
    t.equal(w.dataOutLength, 512, 'the SCSI transfer length is reported for the residual');
    const again = await read(300, 2);
    t.same([again[0], again[512]], [0x63, 0x61], 'extra Data-Out ignored');
  });

  t.test(`${kind}: out-of-range commands change nothing`, async (t) => {
    const { target, n, read } = await setup(t, make);
    await run(target, n, cdb.write16(BLOCKS - 2, 2), { dataOut: fill(2, 0x11) });
    const before = await read(BLOCKS - 2, 2);
    const tries: [string, Buffer, Buffer | null][] = [
      ['WRITE(10) crossing the end', cdb.write10(BLOCKS - 1, 2), fill(2, 0xee)],
      ['WRITE(16) at 2^63', cdb.write16(0x8000000000000000n, 1), fill(1, 0xee)],
      ['WRITE(16) at -1', cdb.write16(0xffffffffffffffffn, 1), fill(1, 0xee)],
      ['WRITE SAME(16)', cdb.writeSame16(BLOCKS - 1, 2), fill(1, 0xee)],
      ['WRITE SAME with UNMAP', cdb.writeSame16(BLOCKS - 1, 2, 0x08), fill(1, 0)],
      ['ORWRITE', cdb.orWrite16(BLOCKS - 1, 2), fill(2, 0xee)],
      ['COMPARE AND WRITE', cdb.compareAndWrite(BLOCKS - 1, 2), Buffer.concat([before, fill(2, 0xee)])],
      ['WRITE AND VERIFY', cdb.writeVerify10(BLOCKS - 1, 2), fill(2, 0xee)],
      ['READ(10)', cdb.read10(BLOCKS, 1), null],
      ['READ(6)', cdb.read6(BLOCKS - 1, 2), null],
      ['VERIFY(16)', cdb.verify16(BLOCKS, 1), null],
      ['PRE-FETCH', cdb.preFetch10(BLOCKS + 1, 0), null],
      ['SYNCHRONIZE CACHE', cdb.syncCache10(BLOCKS - 1, 2), null],
      ['GET LBA STATUS', cdb.getLbaStatus(BLOCKS), null],
    ];
    for (const [what, c, data] of tries) t.equal(outcome(await run(target, n, c, { dataOut: data })), LBA_OUT_OF_RANGE, what);
    t.equal(outcome(await run(target, n, cdb.unmap(40), { dataOut: unmapParams([[0, 1], [BLOCKS - 1, 2]]) })), LBA_OUT_OF_RANGE, 'UNMAP with one bad descriptor');
    t.ok((await read(BLOCKS - 2, 2)).equals(before), 'the last blocks are unchanged');
    t.equal(outcome(await run(target, n, cdb.read10(BLOCKS, 0))), OK, 'zero blocks at the capacity is not out of range');
    t.equal(outcome(await run(target, n, cdb.read10(BLOCKS + 1, 0))), LBA_OUT_OF_RANGE, 'zero blocks past the capacity is');
  });

  t.test(`${kind}: VERIFY and WRITE AND VERIFY`, async (t) => {
    const { target, n } = await setup(t, make);
    const data = Buffer.alloc(4 * 512);
    for (let i = 0; i < data.length; i++) data[i] = i & 0xff;
    t.equal(outcome(await run(target, n, cdb.writeVerify10(40, 4), { dataOut: data })), OK, 'WRITE AND VERIFY with BYTCHK');
    t.equal(outcome(await run(target, n, cdb.verify10(40, 4, 0))), OK, 'medium verification');
    t.equal(outcome(await run(target, n, cdb.verify10(40, 4, 1), { dataOut: data })), OK, 'byte compare, equal');
    const wrong = Buffer.from(data);
    wrong[1000] ^= 0xff;
    const r = await run(target, n, cdb.verify10(40, 4, 1), { dataOut: wrong });
    t.equal(outcome(r), MISCOMPARE, 'byte compare, different');
    t.equal(sense(r)!.information, 1000, 'offset of the first miscompare');
    await run(target, n, cdb.writeSame10(60, 3), { dataOut: fill(1, 0x5a) });
    t.equal(outcome(await run(target, n, cdb.verify10(60, 3, 3), { dataOut: fill(1, 0x5a) })), OK, 'BYTCHK 11b: one block against each');
    t.equal(outcome(await run(target, n, cdb.verify10(60, 3, 2))), INVALID_FIELD_IN_CDB, 'BYTCHK 10b is reserved');
  });

  t.test(`${kind}: WRITE SAME, UNMAP and GET LBA STATUS`, async (t) => {
    const { target, n, read, backstore } = await setup(t, make);
    const g = (backstore.granuleBytes ?? 512) / 512; // allocation granule in blocks
    const status = async (lba: number) => {
      const d = (await run(target, n, cdb.getLbaStatus(lba))).data!;
      const out: [number, number, number][] = [];
      for (let p = 8; p < 4 + d.readUInt32BE(0); p += 16) out.push([Number(d.readBigUInt64BE(p)), d.readUInt32BE(p + 8), d[p + 12]! & 0x0f]);
      return out;
    };
    t.same(await status(0), [[0, BLOCKS, 1]], 'a new LUN is all deallocated');
    t.equal(outcome(await run(target, n, cdb.writeSame16(2 * g, 2 * g), { dataOut: fill(1, 0xab) })), OK, 'WRITE SAME(16)');
    const ws = await read(2 * g, 2 * g);
    t.ok(ws.equals(fill(2 * g, 0xab)), 'every block written');
    t.same(await status(0), [[0, 2 * g, 1], [2 * g, 2 * g, 0], [4 * g, BLOCKS - 4 * g, 1]], 'the written range is mapped');
    t.same((await status(3 * g))[0], [3 * g, g, 0], 'descriptors start at the requested LBA');
    t.equal(outcome(await run(target, n, cdb.writeSame10(2 * g, g, 0x08), { dataOut: fill(1, 0) })), OK, 'WRITE SAME(10) with UNMAP');
    t.ok((await read(2 * g, g)).equals(fill(g, 0)), 'unmapped blocks read zero (LBPRZ)');
    t.same((await status(2 * g))[0], [2 * g, g, 1], 'and are deallocated');
    t.equal(outcome(await run(target, n, cdb.writeSame16(3 * g, 1, 0x09))), OK, 'NDOB + UNMAP needs no Data-Out');
    t.equal((await read(3 * g, 1))[0], 0, 'reads zero');
    t.equal(outcome(await run(target, n, cdb.writeSame10(0, 0), { dataOut: fill(1, 1) })), INVALID_FIELD_IN_CDB, 'zero blocks (WSNZ)');
    t.equal(outcome(await run(target, n, cdb.writeSame10(0, 1, 0x10), { dataOut: fill(1, 1) })), INVALID_FIELD_IN_CDB, 'ANCHOR');
    t.equal(outcome(await run(target, n, cdb.writeSame10(0, 1), { dataOut: fill(2, 1) })), INVALID_FIELD_IN_CDB, 'two blocks of Data-Out');
    t.equal(outcome(await run(target, n, cdb.writeSame16(0, 4097), { dataOut: fill(1, 1) })), INVALID_FIELD_IN_CDB, 'beyond MAXIMUM WRITE SAME LENGTH');

    const G = Math.max(g, 4);
    const base = 6 * G;
    await run(target, n, cdb.write16(base, 2 * G), { dataOut: fill(2 * G, 0x77) });
    t.equal(outcome(await run(target, n, cdb.unmap(40), { dataOut: unmapParams([[base + 1, 1], [base + G, G]]) })), OK, 'UNMAP two extents');
    const after = await read(base, 2 * G);
    t.same([after[0], after[512], after[1024], after[G * 512], after[2 * G * 512 - 1]], [0x77, 0, 0x77, 0, 0], 'the unmapped blocks read zero, the others are intact');
    const st = await status(base);
    if (g > 1) {
      t.same(st[0], [base, G, 0], 'a partially unmapped granule stays mapped');
      t.same([st[1]?.[0], st[1]?.[2]], [base + G, 1], 'a fully unmapped granule is deallocated');
    } else {
      t.same(st.slice(0, 3), [[base, 1, 0], [base + 1, 1, 1], [base + 2, G - 2, 0]], 'block-granular map');
      t.same([st[3]?.[0], st[3]?.[2]], [base + G, 1], 'the second extent is deallocated');
    }
    t.equal(outcome(await run(target, n, cdb.unmap(0))), OK, 'empty parameter list');
    t.equal(outcome(await run(target, n, cdb.unmap(6), { dataOut: Buffer.alloc(6) })), PARAM_LIST_LENGTH_ERROR, 'parameter list shorter than its header');
    t.equal(outcome(await run(target, n, cdb.unmap(8), { dataOut: unmapParams([]) })), OK, 'no descriptors');
    t.equal(outcome(await run(target, n, cdb.unmap(24, true), { dataOut: unmapParams([[0, 1]]) })), INVALID_FIELD_IN_CDB, 'ANCHOR');
    const many = unmapParams(Array.from({ length: 1025 }, (_, i) => [i, 1] as [number, number]));
    t.equal(outcome(await run(target, n, cdb.unmap(many.length), { dataOut: many })), INVALID_FIELD_IN_PARAM, 'too many descriptors');
    t.equal(outcome(await run(target, n, cdb.unmap(24), { dataOut: unmapParams([[0, 0x200000]]) })), LBA_OUT_OF_RANGE, 'an extent past the end');
    t.equal(outcome(await run(target, n, cdb.unmap(24), { dataOut: unmapParams([[BLOCKS, 0]]) })), OK, 'zero blocks at the capacity');
  });

  t.test(`${kind}: COMPARE AND WRITE`, async (t) => {
    const { target, n, read } = await setup(t, make);
    await run(target, n, cdb.write10(8, 2), { dataOut: fill(2, 0x41) });
    const caw = (lba: number, cmp: Buffer, wr: Buffer) => run(target, n, cdb.compareAndWrite(lba, cmp.length / 512), { dataOut: Buffer.concat([cmp, wr]) });
    t.equal(outcome(await caw(8, fill(2, 0x41), fill(2, 0x42))), OK, 'match: written');
    t.ok((await read(8, 2)).equals(fill(2, 0x42)), 'new data');
    const cmp = fill(2, 0x42);
    cmp[512 + 27] = 0x43;
    const r = await caw(8, cmp, fill(2, 0x44));
    t.equal(outcome(r), MISCOMPARE, 'miscompare');
    t.equal(sense(r)!.information, 512 + 27, 'INFORMATION holds the offset of the first differing byte');
    t.ok((await read(8, 2)).equals(fill(2, 0x42)), 'nothing written on a miscompare');
    t.equal(outcome(await run(target, n, cdb.compareAndWrite(8, 1), { dataOut: fill(4, 0x42) })), INVALID_FIELD_IN_CDB, 'Data-Out of the wrong size');
    t.equal(outcome(await run(target, n, cdb.compareAndWrite(8, 0))), OK, 'zero blocks');
    t.equal(outcome(await run(target, n, cdb.compareAndWrite(8, 1, 0x18), { dataOut: Buffer.concat([fill(1, 0x42), fill(1, 0x45)]) })), OK, 'DPO and FUA');
  });

  t.test(`${kind}: a LUN without ATS refuses COMPARE AND WRITE and says so in Block Limits`, async (t) => {
    const on = await setup(t, make);
    const off = await setup(t, make, { ats: false });
    const maxCaw = async (s: typeof on) => (await run(s.target, s.n, cdb.inquiry(true, 0xb0))).data![5];
    t.equal(await maxCaw(on), 255, 'with ATS: MAXIMUM COMPARE AND WRITE LENGTH 255');
    t.equal(await maxCaw(off), 0, 'without: 0');
    t.equal(outcome(await run(off.target, off.n, cdb.compareAndWrite(8, 1), { dataOut: fill(2, 0) })), INVALID_OPCODE, 'COMPARE AND WRITE: INVALID COMMAND OPERATION CODE');
    t.ok((await off.read(8, 1)).equals(fill(1, 0)), 'nothing written');
  });

  t.test(`${kind}: ORWRITE, PRE-FETCH, SYNCHRONIZE CACHE`, async (t) => {
    const { target, n, read } = await setup(t, make);
    await run(target, n, cdb.write10(20, 2), { dataOut: fill(2, 0x0f) });
    t.equal(outcome(await run(target, n, cdb.orWrite16(20, 2), { dataOut: fill(2, 0xa0) })), OK, 'ORWRITE');
    t.ok((await read(20, 2)).equals(fill(2, 0xaf)), 'ORed');
    t.equal(outcome(await run(target, n, cdb.preFetch10(0, 16))), OK, 'PRE-FETCH');
    t.equal(outcome(await run(target, n, cdb.syncCache10())), OK, 'SYNCHRONIZE CACHE(10) of the whole LUN');
    t.equal(outcome(await run(target, n, cdb.syncCache16(10, 5))), OK, 'SYNCHRONIZE CACHE(16) of a range');
  });
}

t.test('COMPARE AND WRITE is atomic against a concurrent WRITE to the same LBA', async (t) => {
  const mem = new MemoryBackstore(BLOCKS * 512);
  // a backstore whose reads take a while, so a concurrent write would land between compare and write
  const slow: Backstore = {
    kind: 'slow',
    sizeBytes: mem.sizeBytes,
    blockSize: mem.blockSize,
    thin: mem.thin,
    read: async (o, l) => {
      await new Promise((r) => setTimeout(r, 30));
      return mem.read(o, l);
    },
    write: (o, d, f) => mem.write(o, d, f),
    flush: () => mem.flush(),
    unmap: (o, l) => mem.unmap(o, l),
    mapping: (o, l) => mem.mapping(o, l),
    close: () => mem.close(),
  };
  const target = new ScsiTarget({ targetName: TARGET, luns: [{ lun: 0, backstore: slow }] });
  const n = nexus();
  target.nexusAdded(n);
  await run(target, n, cdb.tur());
  await run(target, n, cdb.write10(0, 1), { dataOut: fill(1, 1) });
  const cawP = run(target, n, cdb.compareAndWrite(0, 1), { dataOut: Buffer.concat([fill(1, 1), fill(1, 2)]) });
  await new Promise((r) => setTimeout(r, 5)); // COMPARE AND WRITE is now reading
  const writeP = run(target, n, cdb.write10(0, 1), { dataOut: fill(1, 3) });
  const [caw, w] = await Promise.all([cawP, writeP]);
  t.equal(outcome(caw), OK, 'COMPARE AND WRITE matched');
  t.equal(outcome(w), OK, 'WRITE done');
  t.equal((await mem.read(0, 512))[0], 3, 'the WRITE came after the whole COMPARE AND WRITE, not in between');
});

t.test('START STOP UNIT and removable media', async (t) => {
  const fixed = await setup(t, kinds[0]![1]);
  t.equal(outcome(await run(fixed.target, fixed.n, cdb.startStop(false, true))), INVALID_FIELD_IN_CDB, 'LOEJ on a fixed disk');
  t.equal(outcome(await run(fixed.target, fixed.n, cdb.startStop(false))), OK, 'stop');
  t.equal(outcome(await run(fixed.target, fixed.n, cdb.read10(0, 1))), '2/04/02', 'NOT READY, INITIALIZING COMMAND REQUIRED');
  t.equal(outcome(await run(fixed.target, fixed.n, cdb.inquiry(false, 0))), OK, 'INQUIRY still works');
  t.equal(outcome(await run(fixed.target, fixed.n, cdb.startStop(true))), OK, 'start');
  t.equal(outcome(await run(fixed.target, fixed.n, cdb.read10(0, 1))), OK, 'ready again');

  const rem = await setup(t, kinds[0]![1], { removable: true });
  t.equal((await run(rem.target, rem.n, cdb.inquiry(false, 0))).data![1]! & 0x80, 0x80, 'RMB');
  t.equal(outcome(await run(rem.target, rem.n, cdb.preventAllow(true))), OK, 'PREVENT');
  t.equal(outcome(await run(rem.target, rem.n, cdb.startStop(false, true))), '5/53/02', 'eject prevented');
  const n2 = nexus('iqn.2026-01.io.test:other');
  rem.target.nexusAdded(n2);
  await run(rem.target, n2, cdb.tur());
  t.equal(outcome(await run(rem.target, n2, cdb.startStop(false, true))), '5/53/02', 'from another nexus too');
  rem.target.nexusLost(rem.n);
  t.equal(outcome(await run(rem.target, n2, cdb.startStop(false, true))), OK, 'the PREVENT ended with its nexus; ejected');
  t.equal(outcome(await run(rem.target, n2, cdb.tur())), '2/3a/00', 'MEDIUM NOT PRESENT');
  t.equal(outcome(await run(rem.target, n2, cdb.read10(0, 1))), '2/3a/00', 'for media access too');
  t.equal(outcome(await run(rem.target, n2, cdb.startStop(true, true))), OK, 'load');
  t.equal(outcome(await run(rem.target, n2, cdb.tur())), OK, 'ready');
});
