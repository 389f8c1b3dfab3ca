/**
 * Reservations seen from two initiators against a real Linux tgt: SPC-2 RESERVE/RELEASE(6)
 * (the other initiator gets RESERVATION CONFLICT, as data), persistent reservations (REGISTER,
 * READ KEYS, RESERVE, READ RESERVATION, PREEMPT, RELEASE, CLEAR), and a reservation released
 * when its holder logs out.
 */
import t from 'tap';
import { IscsiInitiator, PR_TYPE } from '../src/initiator/index.js';
import { SAM_STAT } from '../src/scsi/types.js';
import { Tgtd, tgtAvailable } from '../src/peers/tgtd.js';

const TARGET = 'iqn.2024-01.org.esxemu:shared-lun';
const BS = 512;

if (!tgtAvailable()) {
  t.test('reservations against Linux tgt', { skip: 'Linux tgt (/usr/sbin/tgtd, tgtadm) is not installed or we are not root' }, () => undefined);
} else {
  t.setTimeout(30_000);
  const tgt = await Tgtd.start({ targets: [{ tid: 1, iqn: TARGET, luns: [{ lun: 1, sizeBytes: 4 << 20 }] }] });
  t.teardown(() => tgt.stop());
  const timeouts = { connectMs: 2000, loginMs: 3000, requestMs: 2000, commandMs: 5000 };
  const connect = (host: string): Promise<IscsiInitiator> => IscsiInitiator.connect({ portal: tgt.portal, targetName: TARGET, initiatorName: `iqn.2024-01.org.esxemu:${host}`, timeouts });
  const a = await connect('esx01');
  const b = await connect('esx02');
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const block = Buffer.alloc(BS, 0x42);

  t.test('RESERVE(6) by one host: the other gets RESERVATION CONFLICT until RELEASE', async (t) => {
    t.ok((await a.reserve(1)).ok, 'esx01 reserves');
    const w = await b.write(1, 0, block);
    t.equal(w.ok, false);
    if (!w.ok) t.equal(w.statusName, 'RESERVATION_CONFLICT', 'esx02 write conflicts');
    const r = await b.reserve(1);
    t.equal(!r.ok && r.status, SAM_STAT.RESERVATION_CONFLICT, 'esx02 cannot reserve');
    t.ok((await a.write(1, 0, block)).ok, 'the holder writes');
    t.ok((await a.release(1)).ok, 'esx01 releases');
    t.ok((await b.write(1, 0, block)).ok, 'esx02 writes now');
  });

  t.test('persistent reservations: register, reserve, conflict, preempt, clear', async (t) => {
    const keyA = '00000000000000aa';
    const keyB = '00000000000000bb';
    t.ok((await a.prOut(1, 'REGISTER', { key: 0n, serviceActionKey: keyA })).ok, 'esx01 registers');
    t.ok((await b.prOut(1, 'REGISTER', { key: 0n, serviceActionKey: keyB })).ok, 'esx02 registers');
    const keys = await a.prReadKeys(1);
    t.ok(keys.ok);
    if (keys.ok) t.same([...keys.value.keys].sort(), [keyA, keyB]);
    t.ok((await a.prOut(1, 'RESERVE', { key: keyA, type: PR_TYPE.WRITE_EXCLUSIVE })).ok, 'esx01 reserves (write exclusive)');
    const res = await b.prReadReservation(1);
    t.ok(res.ok);
    if (res.ok) t.same(res.value.reservation, { key: keyA, scope: 0, type: PR_TYPE.WRITE_EXCLUSIVE });
    const w = await b.write(1, 8, block);
    t.equal(!w.ok && w.statusName, 'RESERVATION_CONFLICT', 'esx02 may not write');
    t.ok((await b.read(1, 8, 1)).ok, 'esx02 may still read (write exclusive)');
    t.ok((await b.prOut(1, 'PREEMPT', { key: keyB, serviceActionKey: keyA, type: PR_TYPE.WRITE_EXCLUSIVE })).ok, 'esx02 preempts esx01');
    const after = await a.prReadReservation(1);
    if (after.ok) t.same(after.value.reservation, { key: keyB, scope: 0, type: PR_TYPE.WRITE_EXCLUSIVE }, 'esx02 holds it');
    const keys2 = await a.prReadKeys(1);
    if (keys2.ok) t.same(keys2.value.keys, [keyB], 'esx01 lost its registration');
    const wa = await a.write(1, 8, block);
    t.equal(!wa.ok && wa.statusName, 'RESERVATION_CONFLICT', 'esx01 is now fenced off');
    t.ok((await b.prOut(1, 'RELEASE', { key: keyB, type: PR_TYPE.WRITE_EXCLUSIVE })).ok, 'esx02 releases');
    t.ok((await b.prOut(1, 'CLEAR', { key: keyB })).ok, 'esx02 clears');
    const none = await a.prReadKeys(1);
    if (none.ok) t.same(none.value.keys, [], 'no registrations left');
    t.ok((await a.write(1, 8, block)).ok, 'esx01 writes again');
  });

  t.test('an SPC-2 reservation ends with its holder\'s session', async (t) => {
    const c = await connect('esx03');
    t.ok((await c.reserve(1)).ok, 'esx03 reserves');
    const w = await a.write(1, 16, block);
    t.equal(!w.ok && w.statusName, 'RESERVATION_CONFLICT');
    await c.close();
    t.ok((await a.write(1, 16, block)).ok, 'released by the logout');
  });
}
