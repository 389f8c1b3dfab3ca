/** Pure pieces of the session layer: the CmdSN window, the write collector, Data-In segmentation. */
import t from 'tap';
import { OP, REJECT_REASON } from '../src/transport/opcodes.js';
import { RESERVED_TAG } from '../src/transport/pdu.js';
import { CmdSnWindow } from '../src/session/cmdsn-window.js';
import { dataInPdus } from '../src/session/data-in.js';
import { WriteCollector } from '../src/session/write-collector.js';

t.test('CmdSN window: serial arithmetic across the 2^32 wrap', async (t) => {
  const w = new CmdSnWindow(0xfffffffe, 4);
  t.equal(w.maxCmdSN(0), 1, 'MaxCmdSN wraps');
  const ran: number[] = [];
  t.equal(w.submit(0xffffffff, false, () => ran.push(0xffffffff)), 'queued');
  t.equal(w.submit(0, false, () => ran.push(0)), 'queued');
  t.equal(w.submit(0, false, () => ran.push(99)), 'duplicate');
  t.equal(w.submit(2, false, () => ran.push(2)), 'tooHigh');
  t.equal(w.submit(0xfffffffd, false, () => ran.push(1)), 'tooLow');
  t.equal(w.submit(0xfffffffe, false, () => ran.push(0xfffffffe)), 'delivered');
  t.same(ran, [0xfffffffe, 0xffffffff, 0], 'delivered in CmdSN order once the gap filled');
  t.equal(w.expCmdSN, 1);
  t.equal(w.submit(7, true, () => ran.push(7)), 'delivered', 'immediate: any CmdSN, at once');
  t.equal(w.expCmdSN, 1, 'and ExpCmdSN does not move');
  t.equal(w.maxCmdSN(3), 1, 'three of four slots busy: one command may be sent');
  t.equal(w.maxCmdSN(0), 4, 'all free: the whole depth');
  t.equal(w.maxCmdSN(3), 4, 'and MaxCmdSN never moves backwards');
});

const params = { initialR2T: true, firstBurstLength: 4096, maxBurstLength: 8192, maxOutstandingR2T: 2 };
let tag = 100;
const newTag = () => ++tag;

t.test('write collector: bursts, outstanding R2Ts, order checks', async (t) => {
  const w = new WriteCollector(30000, Buffer.alloc(1000, 1), true, params, newTag);
  t.equal(w.phase, 'solicited');
  const r = w.takeR2Ts();
  t.same(r.map((x) => [x.r2tSN, x.offset, x.length]), [[0, 1000, 8192], [1, 9192, 8192]], 'two R2Ts outstanding, MaxBurstLength each');
  t.same(w.takeR2Ts(), [], 'no more until one completes');
  const v1 = w.onDataOut(r[1]!.ttt, 0, 9192, Buffer.alloc(8192, 2), true);
  t.same(v1, { kind: 'accepted' }, 'bursts may complete in any order');
  const more = w.takeR2Ts();
  t.same(more.map((x) => [x.r2tSN, x.offset, x.length]), [[2, 17384, 8192]]);
  const bad = w.onDataOut(r[0]!.ttt, 1, 1000, Buffer.alloc(100), false);
  t.equal(bad.kind === 'reject' && bad.reason, REJECT_REASON.PROTOCOL_ERROR, 'DataSN out of order');
  t.equal(w.onDataOut(RESERVED_TAG, 0, 1000, Buffer.alloc(10), false).kind, 'reject', 'no unsolicited data with InitialR2T=Yes');
  t.same(w.onDataOut(r[0]!.ttt, 0, 1000, Buffer.alloc(8192, 3), true), { kind: 'accepted' });
  const last = w.takeR2Ts();
  t.same(last.map((x) => [x.r2tSN, x.offset, x.length]), [[3, 25576, 4424]], 'the last burst is shorter');
  t.same(w.onDataOut(more[0]!.ttt, 0, 17384, Buffer.alloc(8192, 4), true), { kind: 'accepted' });
  t.same(w.onDataOut(last[0]!.ttt, 0, 25576, Buffer.alloc(4424, 5), true), { kind: 'complete' });
  t.equal(w.buffer[0], 1);
  t.equal(w.buffer[9192], 2);
  t.equal(w.buffer[29999], 5);
});

t.test('write collector: unsolicited data may stop early with the F bit', async (t) => {
  const w = new WriteCollector(10000, Buffer.alloc(0), false, { ...params, initialR2T: false }, newTag);
  t.equal(w.phase, 'unsolicited');
  t.same(w.takeR2Ts(), [], 'no R2T during the unsolicited burst');
  t.same(w.onDataOut(RESERVED_TAG, 0, 0, Buffer.alloc(1000), true), { kind: 'accepted' });
  t.equal(w.phase, 'solicited');
  t.same(w.takeR2Ts().map((x) => [x.offset, x.length]), [[1000, 8192], [9192, 808]]);
});

t.test('Data-In: F bit per burst, S bit and status on the last PDU', async (t) => {
  const pdus = dataInPdus({ itt: 5, lunField: Buffer.alloc(8), data: Buffer.alloc(10000), maxSegment: 4096, maxBurst: 6000, status: { status: 0, residualFlags: 0, residual: 0 } });
  t.same(
    pdus.map((o) => [o.pdu.opcode === OP.DATA_IN, o.pdu.data.length, o.pdu.flags, o.statSN]),
    [
      [true, 4096, 0x00, 'none'],
      [true, 1904, 0x80, 'none'],
      [true, 4000, 0x81, 'advance'],
    ],
    'segments of 4096, a burst ends at 6000, the status rides in the last one',
  );
  t.same(pdus.map((o) => o.pdu.u32(40)), [0, 4096, 6000], 'buffer offsets');
  t.same(pdus.map((o) => o.pdu.u32(36)), [0, 1, 2], 'DataSN');
});
