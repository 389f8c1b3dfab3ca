import t from 'tap';
import { F, TEXT } from '../src/transport/fields.js';
import { OP, REJECT_REASON } from '../src/transport/opcodes.js';
import { parseText } from '../src/transport/text.js';
import { RESERVED_TAG } from '../src/transport/pdu.js';
import { INITIATOR, loggedIn, startTestTarget, TARGET, TestInitiator } from './session-peer.js';

t.setTimeout(60_000);

async function discovery(port: number, mrdsl = 8192): Promise<TestInitiator> {
  const peer = await TestInitiator.connect(port);
  const r = await peer.login({ discovery: true, keys: [['MaxRecvDataSegmentLength', String(mrdsl)]] });
  if (r.status !== 0) throw new Error(`discovery login failed 0x${r.status.toString(16)}`);
  return peer;
}

t.test('SendTargets=All lists the targets the initiator may see, with portal and tag', async (t) => {
  const other = 'iqn.2026-11.io.esxemu:other';
  const hidden = 'iqn.2026-11.io.esxemu:hidden';
  const { target, port } = await startTestTarget({}, {
    extraTargets: [
      { name: other, tpgt: 2, portals: ['192.0.2.10:3260', '[2001:db8::1]:3261'] },
      { name: hidden, acl: ['iqn.2026-11.io.esxemu:somebody-else'] },
    ],
  });
  t.teardown(() => target.close());
  const peer = await discovery(port);
  t.teardown(() => peer.close());
  peer.send(peer.textRequest({ pairs: [['SendTargets', 'All']] }));
  const r = await peer.expect(OP.TEXT_RESPONSE);
  t.ok(r.final, 'F bit');
  t.equal(r.u32(F.TTT), RESERVED_TAG);
  t.same(parseText(r.data), [
    ['TargetName', TARGET],
    ['TargetAddress', `127.0.0.1:${port},1`],
    ['TargetName', other],
    ['TargetAddress', '192.0.2.10:3260,2'],
    ['TargetAddress', '[2001:db8::1]:3261,2'],
  ]);

  peer.send(peer.textRequest({ pairs: [['SendTargets', other]] }));
  t.same(parseText((await peer.expect(OP.TEXT_RESPONSE)).data).map(([k]) => k), ['TargetName', 'TargetAddress', 'TargetAddress'], 'one named target');
  peer.send(peer.textRequest({ pairs: [['SendTargets', hidden]] }));
  t.same(parseText((await peer.expect(OP.TEXT_RESPONSE)).data), [], 'a target outside its ACL is not revealed');

  peer.send(peer.scsiCommand({ cdb: [0, 0, 0, 0, 0, 0], edtl: 0 }));
  t.equal((await peer.expect(OP.REJECT)).u8(2), REJECT_REASON.PROTOCOL_ERROR, 'no SCSI in a discovery session');
  peer.send(peer.logout());
  await peer.expect(OP.LOGOUT_RESPONSE);
  t.ok(await peer.waitClosed());
});

t.test('a long answer is split by the initiator MaxRecvDataSegmentLength (C bit and TTT)', async (t) => {
  const extra = Array.from({ length: 30 }, (_, i) => ({ name: `iqn.2026-11.io.esxemu:target-with-a-rather-long-name-${i}` }));
  const { target, port } = await startTestTarget({}, { extraTargets: extra });
  t.teardown(() => target.close());
  const peer = await discovery(port, 512);
  t.teardown(() => peer.close());
  const itt = peer.nextItt();
  peer.send(peer.textRequest({ pairs: [['SendTargets', 'All']], itt }));
  const parts: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await peer.expect(OP.TEXT_RESPONSE);
    t.ok(r.data.length <= 512, 'within 512 bytes');
    parts.push(r.data);
    if (r.final) {
      t.equal(r.flags & TEXT.FLAG_CONTINUE, 0);
      break;
    }
    t.ok(r.flags & TEXT.FLAG_CONTINUE, 'C bit: more to come');
    peer.send(peer.textRequest({ pairs: [], itt, ttt: r.u32(F.TTT) }));
  }
  const all = parseText(Buffer.concat(parts));
  t.equal(all.filter(([k]) => k === 'TargetName').length, 31, 'every target, reassembled');
});

t.test('SendTargets in a normal session: empty value = this target; All is rejected', async (t) => {
  const { target, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());
  peer.send(peer.textRequest({ pairs: [['SendTargets', '']] }));
  t.same(parseText((await peer.expect(OP.TEXT_RESPONSE)).data)[0], ['TargetName', TARGET]);
  peer.send(peer.textRequest({ pairs: [['SendTargets', 'All'], ['MaxBurstLength', '4096'], ['X-private', '1']] }));
  t.same(parseText((await peer.expect(OP.TEXT_RESPONSE)).data), [['MaxBurstLength', 'Reject'], ['X-private', 'NotUnderstood'], ['SendTargets', 'Reject']]);
  t.ok(INITIATOR);
});
