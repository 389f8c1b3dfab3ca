/**
 * Reservations across two I_T nexuses: SPC-2 RESERVE/RELEASE (conflicts, exempt commands,
 * release on nexus loss and LUN reset) and SPC-4 persistent reservations (register, reserve
 * every type with its conflict table, read keys/reservation/full status, release, preempt,
 * preempt and abort, clear, register and move), with the unit attentions each change sends.
 */
import t, { type Test } from 'tap';
import { MemoryBackstore } from '../src/backstore/memory.js';
import { PR_TYPE } from '../src/scsi/reservations.js';
import { ScsiTarget } from '../src/scsi/target-device.js';
import { cdb, CONFLICT, fill, INVALID_FIELD_IN_PARAM, nexus, OK, outcome, PARAM_LIST_LENGTH_ERROR, prParams, run, TARGET } from './scsi-helpers.js';

t.setTimeout(30_000);

const SA = { REGISTER: 0, RESERVE: 1, RELEASE: 2, CLEAR: 3, PREEMPT: 4, PREEMPT_AND_ABORT: 5, REGISTER_AND_IGNORE: 6, REGISTER_AND_MOVE: 7 };

/** A memory LUN whose SYNCHRONIZE CACHE takes a while (to keep a task in the task set). */
function slowFlushStore(): MemoryBackstore {
  const m = new MemoryBackstore(1024 * 512);
  const flush = m.flush.bind(m);
  m.flush = async () => {
    await new Promise((r) => setTimeout(r, 50));
    await flush();
  };
  return m;
}

async function setup(t: Test) {
  const target = new ScsiTarget({ targetName: TARGET, luns: [{ lun: 0, backstore: slowFlushStore() }] });
  t.teardown(() => target.close());
  const a = nexus('iqn.2026-01.io.test:host-a');
  const b = nexus('iqn.2026-01.io.test:host-b');
  for (const n of [a, b]) {
    target.nexusAdded(n);
    await run(target, n, cdb.tur());
  }
  const prout = (n: typeof a, sa: number, key: bigint, sark: bigint, type = 0, flags = 0) => run(target, n, cdb.prOut(sa, type), { dataOut: prParams(key, sark, flags) });
  const canRead = async (n: typeof a) => outcome(await run(target, n, cdb.read10(1, 1)));
  const canWrite = async (n: typeof a) => outcome(await run(target, n, cdb.write10(1, 1), { dataOut: fill(1, 9) }));
  const keys = async (n = a) => {
    const d = (await run(target, n, cdb.prIn(0))).data!;
    const out: bigint[] = [];
    for (let p = 8; p < 8 + d.readUInt32BE(4); p += 8) out.push(d.readBigUInt64BE(p));
    return { generation: d.readUInt32BE(0), keys: out };
  };
  const reservation = async (n = a) => {
    const d = (await run(target, n, cdb.prIn(1))).data!;
    return d.readUInt32BE(4) === 0 ? null : { key: d.readBigUInt64BE(8), type: d[21]! & 0x0f, scope: d[21]! >> 4 };
  };
  return { target, a, b, prout, canRead, canWrite, keys, reservation };
}

t.test('SPC-2 RESERVE and RELEASE across two initiators', async (t) => {
  const { target, a, b, canRead, canWrite } = await setup(t);
  t.equal(outcome(await run(target, a, cdb.reserve6())), OK, 'A reserves');
  t.equal(outcome(await run(target, a, cdb.reserve6())), OK, 'A may reserve again');
  t.equal(outcome(await run(target, b, cdb.reserve6())), CONFLICT, 'B cannot');
  t.equal(outcome(await run(target, b, cdb.release6())), OK, 'RELEASE from B is a no-op');
  t.equal(await canRead(b), CONFLICT, 'B cannot read');
  t.equal(await canWrite(b), CONFLICT, 'B cannot write');
  t.equal(outcome(await run(target, b, cdb.modeSense6(0x3f))), CONFLICT, 'B cannot MODE SENSE');
  t.equal(outcome(await run(target, b, cdb.tur())), CONFLICT, 'B cannot TEST UNIT READY');
  t.equal(outcome(await run(target, b, cdb.inquiry(false, 0))), OK, 'B may INQUIRY');
  t.equal(outcome(await run(target, b, cdb.reportLuns())), OK, 'B may REPORT LUNS');
  t.equal(outcome(await run(target, b, cdb.requestSense())), OK, 'B may REQUEST SENSE');
  t.equal(outcome(await run(target, b, cdb.rsoc(0))), OK, 'B may REPORT SUPPORTED OPERATION CODES');
  t.equal(outcome(await run(target, b, cdb.prIn(0))), CONFLICT, 'PERSISTENT RESERVE IN conflicts with an SPC-2 reservation');
  t.equal(await canWrite(a), OK, 'A writes');
  t.equal(outcome(await run(target, a, cdb.release10())), OK, 'A releases (RELEASE(10))');
  t.equal(await canRead(b), OK, 'B reads now');
  t.equal(outcome(await run(target, b, cdb.reserve10())), OK, 'B reserves (RESERVE(10))');
  t.equal(await canRead(a), CONFLICT, 'now A conflicts');
  target.nexusLost(b);
  t.equal(await canRead(a), OK, 'the reservation ended with B’s nexus');
  target.nexusAdded(b);
  t.equal(outcome(await run(target, b, cdb.tur())), '6/29/07', 'B is told I_T NEXUS LOSS OCCURRED when it comes back');
  t.equal(outcome(await run(target, a, cdb.reserve6())), OK, 'A reserves');
  t.equal(target.taskManagement(b, 'lunReset', 0), 0, 'LUN RESET');
  t.equal(outcome(await run(target, b, cdb.reserve6())), '6/29/03', 'unit attention after the reset');
  t.equal(outcome(await run(target, b, cdb.reserve6())), OK, 'the reset released A’s reservation');
  await run(target, b, cdb.release6());
});

t.test('PERSISTENT RESERVE: register, keys, generation', async (t) => {
  const { target, a, b, prout, keys } = await setup(t);
  t.same(await keys(), { generation: 0, keys: [] }, 'nothing registered');
  t.equal(outcome(await prout(a, SA.REGISTER, 0n, 0xaan)), OK, 'A registers');
  t.equal(outcome(await prout(b, SA.REGISTER, 5n, 0xbbn)), CONFLICT, 'B registering with a non-zero key conflicts');
  t.equal(outcome(await prout(b, SA.REGISTER_AND_IGNORE, 5n, 0xbbn)), OK, 'B registers, ignoring the key');
  t.same(await keys(), { generation: 2, keys: [0xaan, 0xbbn] }, 'two keys, generation 2');
  t.equal(outcome(await prout(a, SA.REGISTER, 0x11n, 0xa2n)), CONFLICT, 'A with a wrong key');
  t.equal(outcome(await prout(a, SA.REGISTER, 0xaan, 0xa2n)), OK, 'A changes its key');
  const trunc = (await run(target, a, cdb.prIn(0, 8))).data!;
  t.equal(trunc.length, 8, 'allocation length 8 truncates the key list');
  t.equal(trunc.readUInt32BE(4), 16, 'ADDITIONAL LENGTH is not truncated');
  const caps = (await run(target, a, cdb.prIn(2))).data!;
  t.equal(caps.readUInt16BE(0), 8, 'REPORT CAPABILITIES length');
  t.equal(caps[3]! & 0x70, 0x10, 'ALLOW COMMANDS <= 5');
  t.same([caps[4], caps[5]], [0xea, 0x01], 'all six types');
  for (let sa = 4; sa < 0x20; sa++) t.equal(outcome(await run(target, a, cdb.prIn(sa))), '5/24/00', `PR IN service action ${sa} refused`);
  t.equal(outcome(await run(target, a, cdb.prOut(SA.REGISTER, 0, 20), { dataOut: prParams(0xa2n, 1n).subarray(0, 20) })), PARAM_LIST_LENGTH_ERROR, 'short parameter list');
  t.equal(outcome(await prout(a, SA.REGISTER, 0xa2n, 1n, 0, 0x01)), INVALID_FIELD_IN_PARAM, 'APTPL is not supported');
  t.equal(outcome(await prout(a, SA.REGISTER, 0xa2n, 1n, 0, 0x08)), INVALID_FIELD_IN_PARAM, 'SPEC_I_PT is not supported');
  t.equal(outcome(await prout(a, SA.REGISTER, 0xa2n, 0n)), OK, 'A unregisters');
  t.same((await keys()).keys, [0xbbn], 'one key left');
});

const accessTable: [string, number, boolean, boolean, boolean, boolean][] = [
  // type, registered B can read/write, unregistered B can read/write
  ['WE', PR_TYPE.WRITE_EXCLUSIVE, true, false, true, false],
  ['EA', PR_TYPE.EXCLUSIVE_ACCESS, false, false, false, false],
  ['WERO', PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, true, true, true, false],
  ['EARO', PR_TYPE.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, true, true, false, false],
  ['WEAR', PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS, true, true, true, false],
  ['EAAR', PR_TYPE.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, true, true, false, false],
];

for (const [name, type, regRead, regWrite, unregRead, unregWrite] of accessTable) {
  t.test(`PERSISTENT RESERVE ${name}: access and ownership`, async (t) => {
    const { target, a, b, prout, canRead, canWrite, reservation } = await setup(t);
    await prout(a, SA.REGISTER_AND_IGNORE, 0n, 0xa1n);
    await prout(b, SA.REGISTER_AND_IGNORE, 0n, 0xb1n);
    t.equal(outcome(await prout(a, SA.RESERVE, 0xa1n, 0n, type)), OK, 'A reserves');
    const all = type >= PR_TYPE.WRITE_EXCLUSIVE_ALL_REGISTRANTS;
    t.same(await reservation(), { key: all ? 0n : 0xa1n, type, scope: 0 }, 'READ RESERVATION (key 0 for all-registrants)');
    t.equal(outcome(await prout(a, SA.RESERVE, 0xa1n, 0n, type)), OK, 'the holder may reserve again');
    t.equal(await canRead(a), OK, 'A reads');
    t.equal(await canWrite(a), OK, 'A writes');
    t.equal(await canRead(b), regRead ? OK : CONFLICT, `registered B ${regRead ? 'reads' : 'cannot read'}`);
    t.equal(await canWrite(b), regWrite ? OK : CONFLICT, `registered B ${regWrite ? 'writes' : 'cannot write'}`);
    t.equal(outcome(await run(target, b, cdb.inquiry(false, 0))), OK, 'INQUIRY never conflicts');
    t.equal(outcome(await run(target, b, cdb.readCapacity10())), OK, 'READ CAPACITY never conflicts');
    t.equal(outcome(await prout(b, SA.REGISTER, 0xb1n, 0n)), OK, 'B unregisters');
    t.equal(await canRead(b), unregRead ? OK : CONFLICT, `unregistered B ${unregRead ? 'reads' : 'cannot read'}`);
    t.equal(await canWrite(b), unregWrite ? OK : CONFLICT, `unregistered B ${unregWrite ? 'writes' : 'cannot write'}`);
    t.equal(outcome(await run(target, b, cdb.reserve6())), CONFLICT, 'RESERVE(6) conflicts with a persistent reservation');
    await prout(b, SA.REGISTER_AND_IGNORE, 0n, 0xb1n);
    t.equal(outcome(await prout(a, SA.REGISTER, 0xa1n, 0n)), OK, 'the holder A unregisters');
    if (all) {
      t.same(await reservation(b), { key: 0n, type, scope: 0 }, 'an all-registrants reservation stays while registrants remain');
      t.equal(outcome(await prout(b, SA.RELEASE, 0xb1n, 0n, type)), OK, 'B (a holder) releases it');
      t.equal(outcome(await run(target, b, cdb.tur())), OK, 'no unit attention for the releasing nexus');
    } else {
      const ro = type === PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || type === PR_TYPE.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY;
      t.equal(outcome(await run(target, b, cdb.tur())), ro ? '6/2a/04' : OK, ro ? 'registrants are told RESERVATIONS RELEASED' : 'no unit attention');
      t.equal(await reservation(b), null, 'the reservation went with its holder');
    }
    t.equal(await canWrite(b), OK, 'B writes again');
  });
}

t.test('PERSISTENT RESERVE: release rules, preempt, clear', async (t) => {
  const { target, a, b, prout, keys, reservation, canWrite } = await setup(t);
  await prout(a, SA.REGISTER, 0n, 0xa1n);
  await prout(b, SA.REGISTER, 0n, 0xb1n);
  t.equal(outcome(await prout(b, SA.RESERVE, 0xb1n, 0n, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)), OK, 'B reserves WERO');
  t.equal(outcome(await prout(a, SA.RESERVE, 0xa1n, 0n, PR_TYPE.WRITE_EXCLUSIVE)), CONFLICT, 'A cannot reserve over it');
  t.equal(outcome(await prout(a, SA.RELEASE, 0xa1n, 0n, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)), OK, 'RELEASE from a non-holder does nothing');
  t.ok(await reservation(), 'still reserved');
  t.equal(outcome(await prout(b, SA.RELEASE, 0xb1n, 0n, PR_TYPE.EXCLUSIVE_ACCESS)), '5/26/04', 'RELEASE with the wrong type');
  t.equal(outcome(await prout(b, SA.RELEASE, 0xb1n, 0n, PR_TYPE.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)), OK, 'B releases');
  t.equal(outcome(await run(target, a, cdb.tur())), '6/2a/04', 'A is told RESERVATIONS RELEASED');

  t.equal(outcome(await prout(b, SA.RESERVE, 0xb1n, 0n, PR_TYPE.EXCLUSIVE_ACCESS)), OK, 'B reserves EA');
  t.equal(await canWrite(a), CONFLICT, 'A conflicts');
  const gen = (await keys()).generation;
  t.equal(outcome(await prout(a, SA.PREEMPT, 0xa1n, 0xb1n, PR_TYPE.WRITE_EXCLUSIVE)), OK, 'A preempts B’s reservation');
  t.same(await keys(), { generation: gen + 1, keys: [0xa1n] }, 'B’s registration is gone, generation + 1');
  t.same(await reservation(), { key: 0xa1n, type: PR_TYPE.WRITE_EXCLUSIVE, scope: 0 }, 'A holds a WE reservation');
  t.equal(outcome(await run(target, b, cdb.tur())), '6/2a/05', 'B is told REGISTRATIONS PREEMPTED');
  t.equal(await canWrite(b), CONFLICT, 'B may not write under WE');
  t.equal(outcome(await prout(a, SA.PREEMPT, 0xa1n, 0x99n, PR_TYPE.WRITE_EXCLUSIVE)), CONFLICT, 'preempting a key no one has');
  t.equal(outcome(await prout(b, SA.PREEMPT, 0xb1n, 0xa1n, PR_TYPE.WRITE_EXCLUSIVE)), CONFLICT, 'an unregistered nexus cannot preempt');

  await prout(b, SA.REGISTER, 0n, 0xb2n);
  const fs = (await run(target, a, cdb.prIn(3))).data!;
  t.equal(fs.readUInt32BE(4), fs.length - 8, 'READ FULL STATUS length');
  const holders: { key: bigint; holder: boolean; tid: string }[] = [];
  for (let p = 8; p < fs.length; ) {
    const tidLen = fs.readUInt32BE(p + 20);
    const tid = fs.subarray(p + 24, p + 24 + tidLen);
    holders.push({ key: fs.readBigUInt64BE(p), holder: (fs[p + 12]! & 1) === 1, tid: tid.subarray(4).toString('utf8').replace(/\0+$/, '') });
    p += 24 + tidLen;
  }
  t.same(holders, [
    { key: 0xa1n, holder: true, tid: a.initiatorPortName },
    { key: 0xb2n, holder: false, tid: b.initiatorPortName },
  ], 'each registrant with its TransportID');

  t.equal(outcome(await prout(b, SA.CLEAR, 0xb2n, 0n)), OK, 'B clears everything');
  t.equal(outcome(await run(target, a, cdb.prIn(0))), '6/2a/03', 'A is told RESERVATIONS PREEMPTED (unit attentions come first)');
  t.same((await keys()).keys, [], 'no registrations');
  t.equal(await reservation(), null, 'no reservation');
});

t.test('PREEMPT AND ABORT aborts the preempted nexus’s running tasks', async (t) => {
  const { target, a, b, prout } = await setup(t);
  await prout(a, SA.REGISTER, 0n, 0xa1n);
  await prout(b, SA.REGISTER, 0n, 0xb1n);
  await prout(b, SA.RESERVE, 0xb1n, 0n, PR_TYPE.WRITE_EXCLUSIVE);
  // an ORDERED task from B waits behind a slow SYNCHRONIZE CACHE, so it is still in the task set
  const blocker = run(target, a, cdb.syncCache10(), { taskAttr: 'simple' });
  const bTask = run(target, b, cdb.write10(0, 1), { dataOut: fill(1, 1), taskAttr: 'ordered' });
  const pa = await run(target, a, cdb.prOut(SA.PREEMPT_AND_ABORT, PR_TYPE.EXCLUSIVE_ACCESS), { dataOut: prParams(0xa1n, 0xb1n), taskAttr: 'headOfQueue' });
  t.equal(outcome(pa), OK, 'PREEMPT AND ABORT');
  await blocker;
  t.equal(outcome(await bTask), 'status 0x40', 'B’s queued task ends TASK ABORTED');
});

t.test('REGISTER AND MOVE hands the reservation to another I_T nexus', async (t) => {
  const { target, a, b, prout, reservation, keys } = await setup(t);
  await prout(a, SA.REGISTER, 0n, 0xa1n);
  await prout(a, SA.RESERVE, 0xa1n, 0n, PR_TYPE.EXCLUSIVE_ACCESS);
  const name = Buffer.from(b.initiatorPortName + '\0\0\0\0'.slice(0, 4 - ((b.initiatorPortName.length) % 4)), 'utf8');
  const tid = Buffer.concat([Buffer.from([0x45, 0, 0, name.length]), name]);
  const p = Buffer.alloc(24 + tid.length);
  p.writeBigUInt64BE(0xa1n, 0);
  p.writeBigUInt64BE(0xb9n, 8);
  p[17] = 0x02; // UNREG
  p.writeUInt16BE(b.tpgt, 18);
  p.writeUInt32BE(tid.length, 20);
  tid.copy(p, 24);
  t.equal(outcome(await run(target, a, cdb.prOut(SA.REGISTER_AND_MOVE, PR_TYPE.EXCLUSIVE_ACCESS, p.length), { dataOut: p })), OK, 'REGISTER AND MOVE');
  t.same(await reservation(b), { key: 0xb9n, type: PR_TYPE.EXCLUSIVE_ACCESS, scope: 0 }, 'B holds it with the new key');
  t.same((await keys(b)).keys, [0xb9n], 'A unregistered (UNREG)');
  t.equal(outcome(await run(target, b, cdb.write10(0, 1), { dataOut: fill(1, 1) })), OK, 'B writes');
  t.equal(outcome(await run(target, a, cdb.read10(0, 1))), CONFLICT, 'A conflicts');
});
