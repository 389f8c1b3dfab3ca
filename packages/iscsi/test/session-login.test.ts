import t from 'tap';
import { LOGIN } from '../src/transport/fields.js';
import { LOGIN_STATUS, OP } from '../src/transport/opcodes.js';
import { encodeText } from '../src/transport/text.js';
import { INITIATOR, ISID, startTestTarget, TARGET, TestInitiator } from './session-peer.js';

t.setTimeout(60_000);

const CHAP = { user: 'esx01', secret: 'secret-of-esx01', mutualUser: 'san', mutualSecret: 'secret-of-the-san' };

t.test('a normal login negotiates, declares, and reaches full feature phase', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await TestInitiator.connect(port);
  t.teardown(() => peer.close());
  const r = await peer.login({ keys: [['HeaderDigest', 'CRC32C,None'], ['MaxBurstLength', '65536'], ['InitialR2T', 'No'], ['MaxRecvDataSegmentLength', '16384']] });
  t.equal(r.status, 0, 'success');
  t.ok(r.tsih > 0, `a TSIH was assigned (${r.tsih})`);
  t.equal(r.pdu.flags & (LOGIN.FLAG_TRANSIT | LOGIN.NSG_MASK), LOGIN.FLAG_TRANSIT | LOGIN.STAGE_FULL_FEATURE, 'T=1 NSG=full feature');
  t.same([...r.pdu.bhs.subarray(8, 14)], [...ISID], 'ISID echoed');
  t.equal(r.keys.get('TargetPortalGroupTag'), '1');
  t.equal(r.keys.get('TargetAlias'), 'test');
  t.equal(r.keys.get('HeaderDigest'), 'CRC32C');
  t.equal(r.keys.get('MaxBurstLength'), '65536');
  t.ok(r.keys.has('MaxRecvDataSegmentLength'), 'the target declared its MaxRecvDataSegmentLength');
  t.equal(target.sessions().length, 1);
  t.match(device.events[0], /^added iqn\.2026-11\.io\.esxemu:initiator1,i,0x801234560001\|iqn\.2026-11\.io\.esxemu:test,t,0x0001$/, 'the SCSI layer learned the I_T nexus');

  // Digests are on from the next PDU: a NOP-Out ping with header and data digests.
  peer.useDigests({ headerDigest: true, dataDigest: false });
  peer.send(peer.nopOut({ data: Buffer.from('ping') }));
  const nop = await peer.expect(OP.NOP_IN);
  t.equal(nop.data.toString(), 'ping', 'the ping data comes back, with digests on both sides');
});

t.test('login failures answer with the RFC status and close', async (t) => {
  const { target, port } = await startTestTarget({ acl: [INITIATOR] });
  t.teardown(() => target.close());
  const cases: [string, Parameters<TestInitiator['login']>[0], number][] = [
    ['no InitiatorName', { initiatorName: '' }, LOGIN_STATUS.INITIATOR_ERROR],
    ['unknown target', { targetName: 'iqn.2026-11.io.esxemu:nope' }, LOGIN_STATUS.NOT_FOUND],
    ['no TargetName in a normal session', { targetName: null }, LOGIN_STATUS.MISSING_PARAMETER],
    ['initiator outside the ACL', { initiatorName: 'iqn.2026-11.io.esxemu:intruder' }, LOGIN_STATUS.AUTHORIZATION_FAILURE],
  ];
  for (const [what, opts, status] of cases) {
    const peer = await TestInitiator.connect(port);
    const r = await peer.login(opts);
    t.equal(r.status, status, `${what}: 0x${status.toString(16).padStart(4, '0')}`);
    t.ok(await peer.waitClosed(), `${what}: connection closed`);
    peer.close();
  }
  const missing = await TestInitiator.connect(port);
  const m = await missing.loginStep({ csg: 1, nsg: 3, transit: true, pairs: [['TargetName', TARGET]] });
  t.equal(m.status, LOGIN_STATUS.MISSING_PARAMETER, 'no InitiatorName at all: missing parameter');
  missing.close();

  const version = await TestInitiator.connect(port);
  const v = await version.loginStep({ csg: 1, nsg: 3, transit: true, versionMin: 2, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET]] });
  t.equal(v.status, LOGIN_STATUS.UNSUPPORTED_VERSION, 'Version-min 2: unsupported version');
  version.close();

  const stages = await TestInitiator.connect(port);
  const s = await stages.loginStep({ csg: 1, nsg: 1, transit: true, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET]] });
  t.equal(s.status, LOGIN_STATUS.INITIATOR_ERROR, 'transit to the same stage: initiator error');
  stages.close();

  const dup = await TestInitiator.connect(port);
  const d = await dup.loginStep({ csg: 1, nsg: 3, transit: true, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET], ['MaxBurstLength', '8192'], ['MaxBurstLength', '8192']] });
  t.equal(d.status, LOGIN_STATUS.INITIATOR_ERROR, 'a key twice: initiator error');
  dup.close();

  const notLogin = await TestInitiator.connect(port);
  notLogin.send(notLogin.nopOut());
  t.ok(await notLogin.waitClosed(), 'a first PDU that is not a Login Request: dropped');
  t.equal(target.sessions().length, 0, 'no session left behind');
});

t.test('discovery sessions need no TargetName; the operational stage can be split with the C bit', async (t) => {
  const { target, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await TestInitiator.connect(port);
  t.teardown(() => peer.close());
  const text = encodeText([['InitiatorName', INITIATOR], ['SessionType', 'Discovery'], ['MaxRecvDataSegmentLength', '32768']]);
  const cut = 20; // in the middle of a key
  const a = await peer.loginStep({ csg: 1, nsg: 0, transit: false, cont: true, data: text.subarray(0, cut) });
  t.equal(a.status, 0);
  t.equal(a.pdu.data.length, 0, 'a partial PDU gets an empty response');
  const b = await peer.loginStep({ csg: 1, nsg: 3, transit: true, data: text.subarray(cut) });
  t.equal(b.status, 0, 'the whole text was understood once complete');
  t.ok(b.pdu.flags & LOGIN.FLAG_TRANSIT);
  t.notOk(b.keys.has('TargetPortalGroupTag'), 'no TPGT for discovery');
  t.equal(target.sessions()[0]?.target, null, 'a discovery session');
});

t.test('CHAP: required, one-way, mutual, wrong secret', async (t) => {
  const { target, port } = await startTestTarget({ chap: CHAP });
  t.teardown(() => target.close());

  const skip = await TestInitiator.connect(port);
  t.equal((await skip.login({})).status, LOGIN_STATUS.AUTHENTICATION_FAILURE, 'skipping the security stage on a CHAP target');
  skip.close();

  const none = await TestInitiator.connect(port);
  const n = await none.loginStep({ csg: 0, nsg: 1, transit: true, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET], ['AuthMethod', 'None']] });
  t.equal(n.status, LOGIN_STATUS.AUTHENTICATION_FAILURE, 'AuthMethod=None on a CHAP target');
  none.close();

  const oneWay = await TestInitiator.connect(port);
  const o = await oneWay.login({ chap: { user: CHAP.user, secret: CHAP.secret }, isid: Buffer.from([0x80, 0, 0, 0, 0, 1]) });
  t.equal(o.status, 0, 'one-way CHAP');
  oneWay.close();

  const mutual = await TestInitiator.connect(port);
  const m = await mutual.login({ chap: { user: CHAP.user, secret: CHAP.secret, mutual: { user: CHAP.mutualUser, secret: CHAP.mutualSecret } }, isid: Buffer.from([0x80, 0, 0, 0, 0, 2]) });
  t.equal(m.status, 0, 'mutual CHAP, and the target proved it knows its secret');
  mutual.close();

  const wrong = await TestInitiator.connect(port);
  const w = await wrong.login({ chap: { user: CHAP.user, secret: 'not-the-secret' } });
  t.equal(w.status, LOGIN_STATUS.AUTHENTICATION_FAILURE, 'wrong secret');
  t.ok(await wrong.waitClosed());
  wrong.close();
});

t.test('session reinstatement: a new login with the same ISID closes the old session', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const first = await TestInitiator.connect(port);
  t.equal((await first.login({})).status, 0);
  const tsih1 = target.sessions()[0]!.tsih;
  const second = await TestInitiator.connect(port);
  const r = await second.login({});
  t.equal(r.status, 0);
  t.ok(await first.waitClosed(), 'the old connection was dropped');
  const s = target.sessions();
  t.equal(s.length, 1, 'one session');
  t.not(s[0]!.tsih, tsih1, 'with a new TSIH');
  t.same(
    device.events.map((e) => e.split(' ')[0]),
    ['added', 'lost', 'added'],
    'the SCSI layer saw the nexus lost and added again',
  );
  const joined = await TestInitiator.connect(port);
  const j = await joined.loginStep({ csg: 1, nsg: 3, transit: true, tsih: s[0]!.tsih, cid: 1, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET]] });
  t.equal(j.status, LOGIN_STATUS.TOO_MANY_CONNECTIONS, 'a second connection to the session: MaxConnections=1');
  const ghost = await TestInitiator.connect(port);
  const g = await ghost.loginStep({ csg: 1, nsg: 3, transit: true, tsih: 999, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET]] });
  t.equal(g.status, LOGIN_STATUS.SESSION_DOES_NOT_EXIST, 'an unknown TSIH');
  for (const p of [first, second, joined, ghost]) p.close();
});

t.test('a login that does not finish in time is dropped', async (t) => {
  const { target, port } = await startTestTarget({}, { limits: { loginTimeoutMs: 200 } });
  t.teardown(() => target.close());
  const peer = await TestInitiator.connect(port);
  const r = await peer.loginStep({ csg: 0, nsg: 1, transit: false, pairs: [['InitiatorName', INITIATOR], ['TargetName', TARGET]] });
  t.equal(r.status, 0, 'first step answered');
  t.ok(await peer.waitClosed(3000), 'then the connection is closed by the login timeout');
  peer.close();
});
