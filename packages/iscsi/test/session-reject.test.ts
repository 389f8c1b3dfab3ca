import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { F, REJECT, SCSI_RSP } from '../src/transport/fields.js';
import { OP, REJECT_REASON } from '../src/transport/opcodes.js';
import { encodePdu } from '../src/transport/pdu-writer.js';
import { Pdu, RESERVED_TAG } from '../src/transport/pdu.js';
import { cdbWrite10, loggedIn, startTestTarget, TestInitiator } from './session-peer.js';

t.setTimeout(60_000);
const tur = [0, 0, 0, 0, 0, 0];

async function rejected(peer: TestInitiator, reason: number, what: string, t: Test, original?: Pdu): Promise<void> {
  const r = await peer.expect(OP.REJECT);
  t.equal(r.u8(REJECT.REASON), reason, `${what}: Reject reason 0x${reason.toString(16)}`);
  t.equal(r.itt, RESERVED_TAG);
  t.equal(r.data.length, 48, 'the rejected header comes back');
  if (original) t.same(r.data, original.bhs, 'byte for byte');
}

async function stillWorks(peer: TestInitiator, t: Test, what: string): Promise<void> {
  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0 }));
  const r = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(r.u8(SCSI_RSP.STATUS), 0, `${what}: the session goes on`);
}

t.test('malformed and unsupported PDUs get a Reject and the session goes on', async (t) => {
  const { target, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());

  const unknown = Pdu.create(0x1f, { immediate: true, final: true });
  peer.send(unknown);
  await rejected(peer, REJECT_REASON.COMMAND_NOT_SUPPORTED, 'unknown opcode', t, unknown);
  const targetOp = Pdu.create(OP.SCSI_RESPONSE, { final: true });
  peer.send(targetOp);
  await rejected(peer, REJECT_REASON.PROTOCOL_ERROR, 'a target opcode', t);
  const snack = Pdu.create(OP.SNACK_REQUEST, { final: true });
  peer.send(snack);
  await rejected(peer, REJECT_REASON.SNACK_REJECT, 'SNACK at ERL 0', t);
  const login = peer.loginPdu({ csg: 1, nsg: 3, transit: true, pairs: [] });
  peer.send(login);
  await rejected(peer, REJECT_REASON.PROTOCOL_ERROR, 'Login in full feature phase', t);
  await stillWorks(peer, t, 'after four Rejects');

  // Data-Out for nobody, and with wrong DataSN / offsets.
  peer.send(peer.dataOut({ itt: 0x4242, ttt: 0x1234, dataSN: 0, offset: 0, data: Buffer.alloc(512), final: true }));
  await rejected(peer, REJECT_REASON.INVALID_PDU_FIELD, 'Data-Out for an unknown task', t);
  peer.send(peer.dataOut({ itt: 0x4243, ttt: RESERVED_TAG, dataSN: 0, offset: 0, data: Buffer.alloc(512), final: true }));
  t.equal(await peer.next(200), null, 'late unsolicited data for an unknown task is dropped silently');

  const w = peer.scsiCommand({ cdb: cdbWrite10(0, 2), edtl: 1024, write: true });
  peer.send(w);
  const r2t = await peer.expect(OP.R2T);
  const ttt = r2t.u32(F.TTT);
  peer.send(peer.dataOut({ itt: w.itt, ttt: ttt + 1, dataSN: 0, offset: 0, data: Buffer.alloc(512), final: false }));
  await rejected(peer, REJECT_REASON.INVALID_PDU_FIELD, 'unknown Target Transfer Tag', t);
  peer.send(peer.dataOut({ itt: w.itt, ttt, dataSN: 5, offset: 0, data: Buffer.alloc(512), final: false }));
  await rejected(peer, REJECT_REASON.PROTOCOL_ERROR, 'wrong DataSN', t);
  peer.send(peer.dataOut({ itt: w.itt, ttt, dataSN: 0, offset: 512, data: Buffer.alloc(512), final: false }));
  await rejected(peer, REJECT_REASON.PROTOCOL_ERROR, 'wrong Buffer Offset', t);
  peer.send(peer.dataOut({ itt: w.itt, ttt, dataSN: 0, offset: 0, data: Buffer.alloc(2048), final: true }));
  await rejected(peer, REJECT_REASON.PROTOCOL_ERROR, 'past the end of the burst', t);
  peer.send(peer.dataOut({ itt: w.itt, ttt, dataSN: 0, offset: 0, data: Buffer.alloc(1024, 3), final: true }));
  t.equal((await peer.expect(OP.SCSI_RESPONSE)).u8(SCSI_RSP.STATUS), 0, 'the right Data-Out still completes the write');

  const dup1 = peer.scsiCommand({ cdb: cdbWrite10(0, 1), edtl: 512, write: true });
  peer.send(dup1);
  await peer.expect(OP.R2T);
  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0, itt: dup1.itt }));
  await rejected(peer, REJECT_REASON.TASK_IN_PROGRESS, 'an ITT in use', t);

  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0, data: Buffer.alloc(16) }));
  await rejected(peer, REJECT_REASON.PROTOCOL_ERROR, 'immediate data without the W bit', t);
});

t.test('digests: a data digest error is a Reject, a header digest error ends the connection', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port, [['HeaderDigest', 'CRC32C'], ['DataDigest', 'CRC32C']]);
  t.teardown(() => peer.close());

  const nop = peer.nopOut({ data: Buffer.from('digest me please') });
  const parts = encodePdu(nop, peer.out);
  const bytes = Buffer.concat(parts);
  bytes[bytes.length - 1] ^= 0xff; // corrupt the data digest
  peer.write(bytes);
  await rejected(peer, REJECT_REASON.DATA_DIGEST_ERROR, 'bad data digest on a NOP-Out', t);
  await stillWorks(peer, t, 'after a data digest error');

  // A write whose Data-Out is corrupted ends with CHECK CONDITION, PROTOCOL SERVICE CRC ERROR.
  const w = peer.scsiCommand({ cdb: cdbWrite10(20, 1), edtl: 512, write: true });
  peer.send(w);
  const r2t = await peer.expect(OP.R2T);
  const d = Buffer.concat(encodePdu(peer.dataOut({ itt: w.itt, ttt: r2t.u32(F.TTT), dataSN: 0, offset: 0, data: Buffer.alloc(512, 0xee), final: true }), peer.out));
  d[d.length - 1] ^= 0x01;
  peer.write(d);
  await rejected(peer, REJECT_REASON.DATA_DIGEST_ERROR, 'bad data digest on a Data-Out', t);
  const cc = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(cc.u8(SCSI_RSP.STATUS), 2, 'CHECK CONDITION');
  t.same([cc.data[2 + 2]! & 0x0f, cc.data[2 + 12], cc.data[2 + 13]], [0x0b, 0x47, 0x05], 'ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR');
  t.equal(device.blocks[20 * 512], 0, 'nothing was written');
  await stillWorks(peer, t, 'after a lost Data-Out');

  const h = Buffer.concat(encodePdu(peer.nopOut(), peer.out));
  h[49] ^= 0xff; // corrupt the header digest
  peer.write(h);
  t.ok(await peer.waitClosed(), 'header digest error: connection closed (no way to resynchronize at ERL 0)');
});

t.test('garbage never crashes the target; other sessions keep working', async (t) => {
  const { target, port } = await startTestTarget();
  t.teardown(() => target.close());
  const good = await loggedIn(port);
  t.teardown(() => good.close());
  for (let round = 0; round < 20; round++) {
    const bad = await TestInitiator.connect(port);
    if (round % 2 === 1) await bad.login({ initiatorName: 'iqn.2026-11.io.esxemu:fuzzer', isid: Buffer.from([0x80, 0, 0, 0, 1, round]) });
    const junk = randomBytes(48 + (round * 97) % 4000);
    if (round % 3 === 0) junk[0] = OP.SCSI_COMMAND; // looks like a command header
    if (round % 5 === 0) junk.fill(0xff, 4, 8); // enormous lengths
    bad.write(junk);
    await bad.waitClosed(300);
    bad.close();
  }
  await stillWorks(good, t, 'after 20 connections of garbage');
  const fresh = await loggedIn(port, [], { isid: Buffer.from([0x80, 9, 9, 9, 9, 9]) });
  await stillWorks(fresh, t, 'a new login');
  fresh.close();
});
