/**
 * The block devices under VMFS: MemoryBlockDevice's shared-LUN semantics (COMPARE AND WRITE,
 * SPC-2 reservations between nexuses, bounded conflict retries), the mapping of SCSI failures
 * to error codes, and IscsiBlockDevice against a real esxemu target over loopback (I/O split
 * into several commands, ATS miscompare, RESERVATION CONFLICT between two sessions).
 */
import t from 'tap';
import { MemoryBlockDevice, MemoryLun } from '../src/vmfs/index.js';
import { scsiFailure } from '../src/vmfs/iscsi-device.js';
import { pattern } from './vmfs-helpers.js';
import { connectHost, startTarget } from './vmfs-iscsi-helpers.js';

t.test('memory LUN: two nexuses, ATS and reservations', async (t) => {
  const lun = new MemoryLun(64 * 1024);
  const a = new MemoryBlockDevice(lun, { name: 'a', conflictRetryMs: 50 });
  const b = new MemoryBlockDevice(lun, { name: 'b', conflictRetryMs: 50 });
  const one = pattern(512, 1);
  await a.write(3, one);
  t.ok((await b.read(3, 1)).equals(one), 'shared data');
  t.equal(await b.compareAndWrite(3, Buffer.alloc(512), pattern(512, 2)), 'miscompare');
  t.equal(await b.compareAndWrite(3, one, pattern(512, 2)), 'ok');
  t.ok((await a.read(3, 1)).equals(pattern(512, 2)));
  t.equal(await a.reserve(), true);
  t.equal(await b.reserve(), false, 'RESERVATION CONFLICT for the other nexus');
  await t.rejects(b.write(0, one), { code: 'TIMEOUT', details: { reason: 'RESERVATION_CONFLICT' } }, 'conflicted I/O is retried for a bounded time only');
  await b.release(); // not the holder: no effect
  t.equal(await b.reserve(), false);
  const pending = b.read(0, 1); // waits for the release
  await a.release();
  t.ok((await pending).length === 512, 'retried I/O goes through once released');
  t.equal(await b.reserve(), true);
  await b.close(); // nexus loss releases
  t.equal(await a.reserve(), true);
  await t.rejects(a.read(127, 2), { code: 'INVALID_ARGUMENT' });
  await t.rejects(a.write(0, Buffer.alloc(100)), { code: 'INVALID_ARGUMENT' });
  const noAts = new MemoryBlockDevice(lun, { ats: false });
  await t.rejects(noAts.compareAndWrite(0, one, one), { code: 'NOT_IMPLEMENTED' });
});

t.test('SCSI failures map to stable codes', async (t) => {
  const sense = (key: number, keyName: string, asc: number, ascq: number) => ({ responseCode: 0x70, format: 'fixed' as const, current: true, key, keyName, asc, ascq, description: 'x', information: null, senseKeySpecific: null, valid: true, raw: Buffer.alloc(0) });
  const fail = (status: number, s: ReturnType<typeof sense> | null) => ({ ok: false as const, status, statusName: status === 0x18 ? 'RESERVATION_CONFLICT' : 'CHECK_CONDITION', sense: s, attempts: 1 });
  t.match(scsiFailure('WRITE', fail(2, sense(7, 'DATA_PROTECT', 0x27, 0x07))), { code: 'NO_SPACE' });
  t.match(scsiFailure('WRITE', fail(2, sense(0xd, 'VOLUME_OVERFLOW', 0, 0))), { code: 'NO_SPACE' });
  t.match(scsiFailure('WRITE', fail(2, sense(3, 'MEDIUM_ERROR', 0x0c, 0))), { code: 'IO_ERROR', details: { senseKey: 'MEDIUM_ERROR', asc: 0x0c } });
  t.match(scsiFailure('READ', fail(2, null)), { code: 'IO_ERROR' });
  t.equal(scsiFailure('READ', fail(0x18, null)).message, 'RESERVATION CONFLICT', 'conflicts go to the retry loop');
});

t.test('iSCSI device against the esxemu target', async (t) => {
  const { target, portal } = await startTarget(16);
  t.teardown(() => target.close());
  const a = await connectHost(portal, 1);
  const b = await connectHost(portal, 2);
  t.teardown(async () => {
    await a.init.close();
    await b.init.close();
  });
  t.equal(a.dev.sizeBytes, 16 * 1024 * 1024);
  const big = pattern(3 * 1024 * 1024 + 512, 5); // more than one command's worth
  await a.dev.write(100, big, { fua: true });
  t.ok((await b.dev.read(100, big.length / 512)).equals(big), 'multi-command I/O round trip between sessions');
  await a.dev.flush();
  const cur = await a.dev.read(0, 1);
  t.equal(await b.dev.compareAndWrite(0, pattern(512, 9), pattern(512, 8)), 'miscompare');
  t.equal(await b.dev.compareAndWrite(0, cur, pattern(512, 8)), 'ok');
  t.equal(await a.dev.reserve(), true);
  t.equal(await b.dev.reserve(), false, 'RESERVATION CONFLICT');
  const waiting = b.dev.read(0, 1);
  await new Promise((r) => setTimeout(r, 30));
  await a.dev.release();
  t.ok((await waiting).equals(pattern(512, 8)), 'the conflicted read went through after RELEASE');
  await t.rejects(a.dev.read(a.dev.blocks, 1), { code: 'INVALID_ARGUMENT' });
});
