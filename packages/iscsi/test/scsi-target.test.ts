/**
 * The target device as the session layer sees it: LUN masking (REPORT LUNS, masked and
 * unknown LUNs), unit attentions (power-on first, then cleared; INQUIRY / REPORT LUNS / REQUEST
 * SENSE not failed by them; nexus loss; resets), task management answers, the task set
 * (ORDERED, TASK SET FULL is bounded elsewhere) and aborted tasks.
 */
import t from 'tap';
import { MemoryBackstore } from '../src/backstore/memory.js';
import { ScsiTarget } from '../src/scsi/target-device.js';
import { TMF_RESPONSE } from '../src/scsi/types.js';
import { cdb, fill, INVALID_OPCODE, LU_NOT_SUPPORTED, nexus, OK, outcome, POWER_ON_RESET, run, sense, TARGET } from './scsi-helpers.js';

t.setTimeout(30_000);

function makeTarget() {
  return new ScsiTarget({
    targetName: TARGET,
    luns: [0, 1, 2, 300].map((lun) => ({ lun, backstore: new MemoryBackstore(256 * 512) })),
    lunMasking: { 'iqn.2026-01.io.test:limited': [1, 300], 'IQN.2026-01.IO.TEST:NOTHING': [] },
  });
}

function lunsOf(d: Buffer): number[] {
  const out: number[] = [];
  for (let p = 8; p < 8 + d.readUInt32BE(0); p += 8) out.push(d[0 + p]! & 0x40 ? ((d[p]! & 0x3f) << 8) | d[p + 1]! : d[p + 1]!);
  return out;
}

t.test('LUN masking: REPORT LUNS shows the masked view; hidden LUNs do not exist', async (t) => {
  const target = makeTarget();
  const all = nexus('iqn.2026-01.io.test:everything');
  const lim = nexus('iqn.2026-01.io.test:limited');
  const none = nexus('iqn.2026-01.io.test:nothing');
  for (const n of [all, lim, none]) target.nexusAdded(n);
  t.same(target.lunsFor(all.initiatorName), [0, 1, 2, 300], 'an initiator without an entry sees every LUN');
  t.same(lunsOf((await run(target, all, cdb.reportLuns())).data!), [0, 1, 2, 300], 'REPORT LUNS, flat space addressing for 300');
  t.same(lunsOf((await run(target, lim, cdb.reportLuns(), { lun: 1 })).data!), [1, 300], 'the limited initiator sees its two');
  t.same(lunsOf((await run(target, lim, cdb.reportLuns(), { lun: 0 })).data!), [1, 300], 'REPORT LUNS answered at a LUN it cannot see');
  t.same(lunsOf((await run(target, none, cdb.reportLuns())).data!), [], 'names compare case-insensitively: sees nothing');

  t.equal(outcome(await run(target, lim, cdb.read10(0, 1), { lun: 0 })), LU_NOT_SUPPORTED, 'a masked LUN is not supported');
  t.equal(outcome(await run(target, all, cdb.read10(0, 1), { lun: 7 })), LU_NOT_SUPPORTED, 'nor is a LUN that does not exist');
  const inq = await run(target, lim, cdb.inquiry(false, 0), { lun: 0 });
  t.equal(outcome(inq), OK, 'INQUIRY works');
  t.equal(inq.data![0], 0x7f, 'peripheral qualifier 011b, type 1Fh');
  t.equal(outcome(await run(target, lim, cdb.inquiry(true, 0x83), { lun: 0 })), LU_NOT_SUPPORTED, 'VPD pages do not');
  const rs = await run(target, lim, cdb.requestSense(), { lun: 0 });
  t.equal(outcome(rs), OK, 'REQUEST SENSE completes');
  t.same([rs.data![2]! & 0x0f, rs.data![12]], [5, 0x25], 'with LOGICAL UNIT NOT SUPPORTED as its data');
  t.equal(target.taskManagement(lim, 'lunReset', 0), TMF_RESPONSE.LUN_DOES_NOT_EXIST, 'LUN RESET of a masked LUN');
  t.equal(target.taskManagement(lim, 'abortTaskSet', 300), TMF_RESPONSE.COMPLETE, 'ABORT TASK SET of a visible one');

  target.setLunMasking({ 'iqn.2026-01.io.test:limited': [1, 2] });
  t.equal(outcome(await run(target, lim, cdb.tur(), { lun: 1 })), POWER_ON_RESET, 'pending power-on first');
  t.equal(outcome(await run(target, lim, cdb.tur(), { lun: 1 })), '6/3f/0e', 'then REPORTED LUNS DATA HAS CHANGED');
  t.same(lunsOf((await run(target, lim, cdb.reportLuns(), { lun: 2 })).data!), [1, 2], 'the new view');
});

t.test('unit attentions: power-on first, cleared once reported; INQUIRY and REPORT LUNS pass through', async (t) => {
  const target = makeTarget();
  const n = nexus();
  target.nexusAdded(n);
  t.equal(outcome(await run(target, n, cdb.inquiry(false, 0))), OK, 'INQUIRY is not failed by a pending unit attention');
  t.equal(outcome(await run(target, n, cdb.reportLuns())), OK, 'nor REPORT LUNS');
  const first = await run(target, n, cdb.read10(0, 1));
  t.equal(outcome(first), POWER_ON_RESET, 'the first other command reports POWER ON, RESET');
  t.equal(outcome(await run(target, n, cdb.read10(0, 1))), OK, 'then it is cleared');
  t.equal(outcome(await run(target, n, cdb.tur(), { lun: 1 })), POWER_ON_RESET, 'unit attentions are per logical unit');
  t.equal(outcome(await run(target, n, Buffer.from([0xc7, 0, 0, 0, 0, 0]), { lun: 2 })), POWER_ON_RESET, 'reported even before an unknown opcode');
  t.equal(outcome(await run(target, n, Buffer.from([0xc7, 0, 0, 0, 0, 0]), { lun: 2 })), INVALID_OPCODE, 'which then fails on its own');

  target.nexusLost(n);
  target.nexusAdded(n);
  const rs = await run(target, n, cdb.requestSense());
  t.same([rs.data![2]! & 0x0f, rs.data![12], rs.data![13]], [6, 0x29, 0x07], 'REQUEST SENSE returns I_T NEXUS LOSS OCCURRED');
  t.equal(outcome(await run(target, n, cdb.tur())), OK, 'and clears it');

  const other = nexus('iqn.2026-01.io.test:other');
  target.nexusAdded(other);
  await run(target, other, cdb.tur());
  t.equal(target.taskManagement(n, 'targetWarmReset', 0), TMF_RESPONSE.COMPLETE, 'TARGET WARM RESET');
  for (const x of [n, other]) t.equal(outcome(await run(target, x, cdb.tur())), POWER_ON_RESET, 'every nexus is told');
  t.equal(target.taskManagement(n, 'clearAca', 0), TMF_RESPONSE.NOT_SUPPORTED, 'CLEAR ACA is not supported');
  t.equal(target.taskManagement(n, 'taskReassign', 0), TMF_RESPONSE.REASSIGNMENT_NOT_SUPPORTED, 'nor task reassignment');
  const s = sense(await run(target, n, cdb.read10(256, 1)));
  t.equal(s?.descriptor, false, 'sense is fixed format by default');
});

t.test('task set: ORDERED waits for earlier tasks, later tasks wait for it; aborted tasks end TASK ABORTED', async (t) => {
  const mem = new MemoryBackstore(256 * 512);
  const order: string[] = [];
  const flush = mem.flush.bind(mem);
  mem.flush = async () => {
    await new Promise((r) => setTimeout(r, 40));
    order.push('sync');
    await flush();
  };
  const target = new ScsiTarget({ targetName: TARGET, luns: [{ lun: 0, backstore: mem }] });
  const n = nexus();
  target.nexusAdded(n);
  await run(target, n, cdb.tur());
  const slow = run(target, n, cdb.syncCache10()).then((r) => (order.push('sync done'), r));
  const ordered = run(target, n, cdb.write10(0, 1), { dataOut: fill(1, 1), taskAttr: 'ordered' }).then((r) => (order.push('ordered write'), r));
  const after = run(target, n, cdb.read10(0, 1)).then((r) => (order.push('simple read'), r));
  const hoq = run(target, n, cdb.inquiry(false, 0), { taskAttr: 'headOfQueue' }).then((r) => (order.push('head of queue'), r));
  const results = await Promise.all([slow, ordered, after, hoq]);
  t.same(results.map(outcome), [OK, OK, OK, OK]);
  t.same(order, ['head of queue', 'sync', 'sync done', 'ordered write', 'simple read'], 'execution order');
  t.equal(results[2]!.data![0], 1, 'the read saw the ordered write');

  const ac = new AbortController();
  const blocker = run(target, n, cdb.syncCache10());
  const victim = run(target, n, cdb.write10(0, 1), { dataOut: fill(1, 2), taskAttr: 'ordered', signal: ac.signal });
  ac.abort();
  await blocker;
  t.equal(outcome(await victim), 'status 0x40', 'TASK ABORTED');
  t.equal((await mem.read(0, 512))[0], 1, 'the aborted write did nothing');
});
