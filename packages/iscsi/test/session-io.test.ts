import t from 'tap';
import { DATA_IN, F, R2T, SCSI_RSP } from '../src/transport/fields.js';
import { OP } from '../src/transport/opcodes.js';
import { RESERVED_TAG, snAdd } from '../src/transport/pdu.js';
import { cdbRead10, cdbWrite10, loggedIn, startTestTarget } from './session-peer.js';

t.setTimeout(60_000);

const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

t.test('reads: Data-In segmented by MaxRecvDataSegmentLength, bursts by MaxBurstLength, status in the last PDU', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const content = pattern(16384, 3);
  content.copy(device.blocks, 512 * 10);
  const peer = await loggedIn(port, [['MaxRecvDataSegmentLength', '4096'], ['MaxBurstLength', '8192']]);
  t.teardown(() => peer.close());

  const cmd = peer.scsiCommand({ cdb: cdbRead10(10, 32), edtl: 16384, read: true });
  peer.send(cmd);
  const got: Buffer[] = [];
  for (let i = 0; i < 4; i++) {
    const d = await peer.expect(OP.DATA_IN);
    t.equal(d.itt, cmd.itt);
    t.equal(d.u32(DATA_IN.DATASN), i, `DataSN ${i}`);
    t.equal(d.u32(DATA_IN.BUFFER_OFFSET), i * 4096, `offset ${i * 4096}`);
    t.equal(d.data.length, 4096, 'segments of the initiator MaxRecvDataSegmentLength');
    t.equal((d.flags & 0x80) !== 0, i === 1 || i === 3, `F bit ${i === 1 || i === 3 ? 'closes a burst' : 'clear'}`);
    t.equal((d.flags & DATA_IN.FLAG_STATUS) !== 0, i === 3, 'S bit only on the last');
    if (i === 3) {
      t.equal(d.u8(DATA_IN.STATUS), 0, 'GOOD');
      t.equal(d.flags & (DATA_IN.FLAG_OVERFLOW | DATA_IN.FLAG_UNDERFLOW), 0, 'no residual');
    }
    got.push(d.data);
  }
  t.same(Buffer.concat(got), content, 'the data is what the device holds');
  t.equal(await peer.next(200), null, 'no separate SCSI Response');

  // Underflow: the device has less than the initiator expects.
  peer.send(peer.scsiCommand({ cdb: cdbRead10(0, 2), edtl: 2048, read: true }));
  const u = await peer.expect(OP.DATA_IN);
  t.equal(u.data.length, 1024);
  t.ok(u.flags & DATA_IN.FLAG_UNDERFLOW, 'U bit');
  t.equal(u.u32(DATA_IN.RESIDUAL), 1024, 'residual 1024');

  // Overflow: more than expected; only EDTL bytes are sent.
  peer.send(peer.scsiCommand({ cdb: cdbRead10(0, 4), edtl: 1024, read: true }));
  const o = await peer.expect(OP.DATA_IN);
  t.equal(o.data.length, 1024);
  t.ok(o.flags & DATA_IN.FLAG_OVERFLOW, 'O bit');
  t.equal(o.u32(DATA_IN.RESIDUAL), 1024);

  // Check condition: sense in a SCSI Response, no Data-In.
  peer.send(peer.scsiCommand({ cdb: cdbRead10(1_000_000, 1), edtl: 512, read: true }));
  const cc = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(cc.u8(SCSI_RSP.STATUS), 2, 'CHECK CONDITION');
  t.equal(cc.data.readUInt16BE(0), 18, 'sense length');
  t.equal(cc.data[2 + 2]! & 0x0f, 5, 'ILLEGAL REQUEST');
  t.equal(cc.u32(SCSI_RSP.EXPDATASN), 0, 'no Data-In was sent');
});

t.test('writes: immediate data, then R2Ts within MaxBurstLength and MaxOutstandingR2T', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port, [['InitialR2T', 'Yes'], ['ImmediateData', 'Yes'], ['FirstBurstLength', '4096'], ['MaxBurstLength', '8192'], ['MaxOutstandingR2T', '2']]);
  t.teardown(() => peer.close());
  const data = pattern(20480, 11);
  const cmd = peer.scsiCommand({ cdb: cdbWrite10(100, 40), edtl: data.length, write: true, data: data.subarray(0, 4096) });
  peer.send(cmd);
  const r1 = await peer.expect(OP.R2T);
  const r2 = await peer.expect(OP.R2T);
  t.same([r1.u32(R2T.R2TSN), r1.u32(R2T.BUFFER_OFFSET), r1.u32(R2T.DESIRED_LENGTH)], [0, 4096, 8192], 'first R2T after the immediate data');
  t.same([r2.u32(R2T.R2TSN), r2.u32(R2T.BUFFER_OFFSET), r2.u32(R2T.DESIRED_LENGTH)], [1, 12288, 8192], 'second R2T: two outstanding');
  t.not(r1.u32(F.TTT), r2.u32(F.TTT), 'distinct transfer tags');
  t.not(r1.u32(F.TTT), RESERVED_TAG);
  for (const r of [r2, r1]) {
    const off = r.u32(R2T.BUFFER_OFFSET);
    for (let i = 0; i < 2; i++) {
      peer.send(peer.dataOut({ itt: cmd.itt, ttt: r.u32(F.TTT), dataSN: i, offset: off + i * 4096, data: data.subarray(off + i * 4096, off + (i + 1) * 4096), final: i === 1 }));
    }
  }
  const rsp = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(rsp.u8(SCSI_RSP.STATUS), 0, 'GOOD');
  t.equal(rsp.flags & (SCSI_RSP.FLAG_OVERFLOW | SCSI_RSP.FLAG_UNDERFLOW), 0, 'no residual');
  t.same(device.blocks.subarray(100 * 512, 100 * 512 + data.length), data, 'the device got every byte at the right place');
});

t.test('writes: unsolicited Data-Out (InitialR2T=No) up to FirstBurstLength, the rest by R2T', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port, [['InitialR2T', 'No'], ['ImmediateData', 'Yes'], ['FirstBurstLength', '8192'], ['MaxBurstLength', '65536']]);
  t.teardown(() => peer.close());
  const data = pattern(12288, 5);
  const cmd = peer.scsiCommand({ cdb: cdbWrite10(7, 24), edtl: data.length, write: true, data: data.subarray(0, 2048), final: false });
  peer.send(cmd);
  peer.send(peer.dataOut({ itt: cmd.itt, ttt: RESERVED_TAG, dataSN: 0, offset: 2048, data: data.subarray(2048, 6144), final: false }));
  peer.send(peer.dataOut({ itt: cmd.itt, ttt: RESERVED_TAG, dataSN: 1, offset: 6144, data: data.subarray(6144, 8192), final: true }));
  const r = await peer.expect(OP.R2T);
  t.same([r.u32(R2T.BUFFER_OFFSET), r.u32(R2T.DESIRED_LENGTH)], [8192, 4096], 'the R2T asks for what the first burst did not carry');
  peer.send(peer.dataOut({ itt: cmd.itt, ttt: r.u32(F.TTT), dataSN: 0, offset: 8192, data: data.subarray(8192), final: true }));
  const rsp = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(rsp.u8(SCSI_RSP.STATUS), 0);
  t.same(device.blocks.subarray(7 * 512, 7 * 512 + data.length), data);

  // Write residual: the CDB asks for one block, the initiator sends two.
  peer.send(peer.scsiCommand({ cdb: cdbWrite10(0, 1), edtl: 1024, write: true, data: Buffer.alloc(1024, 1) }));
  const res = await peer.expect(OP.SCSI_RESPONSE);
  t.ok(res.flags & SCSI_RSP.FLAG_UNDERFLOW, 'underflow');
  t.equal(res.u32(SCSI_RSP.RESIDUAL), 512, 'residual reported from the SCSI layer transfer length');
});

t.test('the CmdSN window: in order, held, ignored outside, immediate always', async (t) => {
  const { target, port } = await startTestTarget({}, { limits: { queueDepth: 16 } });
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());
  const tur = [0, 0, 0, 0, 0, 0];

  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0 }));
  const first = await peer.expect(OP.SCSI_RESPONSE);
  const exp = first.u32(F.EXPCMDSN);
  const max = first.u32(F.MAXCMDSN);
  t.equal(exp, peer.cmdSN, 'ExpCmdSN is the next CmdSN');
  t.equal(((max - exp) >>> 0) + 1, 16, 'the window is the queue depth');

  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0, cmdSN: snAdd(max, 1) }));
  t.equal(await peer.next(300), null, 'CmdSN above MaxCmdSN: ignored');
  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0, cmdSN: (exp - 1) >>> 0 }));
  t.equal(await peer.next(300), null, 'CmdSN below ExpCmdSN: ignored');

  // Out of order: exp+1 is held until exp arrives.
  const later = peer.scsiCommand({ cdb: tur, edtl: 0, cmdSN: snAdd(exp, 1) });
  const sooner = peer.scsiCommand({ cdb: tur, edtl: 0, cmdSN: exp });
  peer.cmdSN = snAdd(exp, 2);
  peer.send(later);
  t.equal(await peer.next(200), null, 'a command after a gap waits');
  peer.send(sooner);
  const a = await peer.expect(OP.SCSI_RESPONSE);
  const b = await peer.expect(OP.SCSI_RESPONSE);
  t.same([a.itt, b.itt], [sooner.itt, later.itt], 'both run, in CmdSN order');
  t.equal(b.u32(F.EXPCMDSN), peer.cmdSN, 'ExpCmdSN moved past both');

  const imm = peer.scsiCommand({ cdb: tur, edtl: 0, immediate: true });
  peer.send(imm);
  const ir = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(ir.itt, imm.itt, 'an immediate command is answered');
  t.equal(ir.u32(F.EXPCMDSN), peer.cmdSN, 'and does not use a CmdSN');
  t.ok(((ir.u32(F.STATSN) - first.u32(F.STATSN)) >>> 0) === 3, 'StatSN advanced once per response');
});

t.test('many concurrent commands of one session, bounded output', async (t) => {
  const { target, device, port } = await startTestTarget({}, { limits: { maxOutputBytes: 64 * 1024 } });
  t.teardown(() => target.close());
  pattern(1024 * 1024, 9).copy(device.blocks);
  const peer = await loggedIn(port, [['MaxRecvDataSegmentLength', '65536']]);
  t.teardown(() => peer.close());
  const n = 32;
  const cmds = Array.from({ length: n }, (_, i) => peer.scsiCommand({ cdb: cdbRead10(i * 64, 64), edtl: 32768, read: true }));
  peer.send(...cmds);
  const bytes = new Map<number, number>();
  let done = 0;
  while (done < n) {
    const p = await peer.next(5000);
    if (!p) break;
    bytes.set(p.itt, (bytes.get(p.itt) ?? 0) + p.data.length);
    if (p.flags & DATA_IN.FLAG_STATUS) done++;
  }
  t.equal(done, n, 'every command completed');
  t.ok([...bytes.values()].every((b) => b === 32768), 'every command got its 32 KiB');
});

t.test('task attributes: ORDERED waits for earlier tasks, HEAD OF QUEUE does not wait', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());
  const slow = peer.scsiCommand({ cdb: [0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0], edtl: 0, attr: 1 });
  const ordered = peer.scsiCommand({ cdb: [0, 0, 0, 0, 0, 0], edtl: 0, attr: 2 });
  const simpleAfter = peer.scsiCommand({ cdb: [0, 0, 0, 0, 0, 0], edtl: 0, attr: 1 });
  const hoq = peer.scsiCommand({ cdb: [0, 0, 0, 0, 0, 0], edtl: 0, attr: 3 });
  peer.send(slow, ordered, simpleAfter, hoq);
  const first = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(first.itt, hoq.itt, 'HEAD OF QUEUE runs at once');
  t.equal(await peer.next(300), null, 'the ORDERED task and the SIMPLE task after it wait for the slow one');
  device.releaseSlow();
  const order = [(await peer.expect(OP.SCSI_RESPONSE)).itt, (await peer.expect(OP.SCSI_RESPONSE)).itt, (await peer.expect(OP.SCSI_RESPONSE)).itt];
  t.same(order, [slow.itt, ordered.itt, simpleAfter.itt], 'then they complete in order');
});
