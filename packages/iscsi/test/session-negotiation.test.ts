import t from 'tap';
import { LOGIN_STATUS } from '../src/transport/opcodes.js';
import type { TextPairs } from '../src/transport/text.js';
import { DEFAULT_TARGET_KEY_SETTINGS, initialNegotiationState, negotiate, RFC_DEFAULT_PARAMS, type NegotiationPhase, type SessionKind, type TargetKeySettings } from '../src/session/negotiation.js';

function run(offered: TextPairs, o: { phase?: NegotiationPhase; sessionType?: SessionKind; settings?: Partial<TargetKeySettings> } = {}) {
  return negotiate({
    offered,
    phase: o.phase ?? 'operational',
    sessionType: o.sessionType ?? 'Normal',
    settings: { ...DEFAULT_TARGET_KEY_SETTINGS, ...o.settings },
    state: initialNegotiationState(),
  });
}

function answers(offered: TextPairs, o: Parameters<typeof run>[1] = {}): Map<string, string> {
  const r = run(offered, o);
  if (!r.ok) throw new Error(r.reason);
  return new Map(r.response);
}

t.test('RFC defaults hold for keys nobody negotiates', async (t) => {
  const r = run([]);
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.state.params.maxBurstLength, 262144);
  t.equal(r.state.params.firstBurstLength, 65536);
  t.equal(r.state.params.initialR2T, true);
  t.equal(r.state.params.immediateData, true);
  t.equal(r.state.params.maxOutstandingR2T, 1);
  t.equal(r.state.params.defaultTime2Wait, 2);
  t.equal(r.state.params.defaultTime2Retain, 20);
  t.equal(r.state.params.initiatorMaxRecvDataSegmentLength, 8192);
  t.equal(r.state.params.headerDigest, false);
  t.same(RFC_DEFAULT_PARAMS.errorRecoveryLevel, 0);
  t.same(r.response, [['MaxRecvDataSegmentLength', String(DEFAULT_TARGET_KEY_SETTINGS.maxRecvDataSegmentLength)]], 'the target declares its MaxRecvDataSegmentLength once, in the operational stage');
});

t.test('numeric min / max result functions', async (t) => {
  const a = answers([
    ['MaxBurstLength', '16776192'],
    ['FirstBurstLength', '4096'],
    ['MaxOutstandingR2T', '64'],
    ['ErrorRecoveryLevel', '2'],
    ['MaxConnections', '8'],
    ['DefaultTime2Wait', '0'],
    ['DefaultTime2Retain', '60'],
  ]);
  t.equal(a.get('MaxBurstLength'), String(DEFAULT_TARGET_KEY_SETTINGS.maxBurstLength), 'min(offer, ours)');
  t.equal(a.get('FirstBurstLength'), '4096', 'min keeps the smaller offer');
  t.equal(a.get('MaxOutstandingR2T'), String(DEFAULT_TARGET_KEY_SETTINGS.maxOutstandingR2T));
  t.equal(a.get('ErrorRecoveryLevel'), '0', 'ERL 0 only');
  t.equal(a.get('MaxConnections'), '1', 'one connection per session');
  t.equal(a.get('DefaultTime2Wait'), String(DEFAULT_TARGET_KEY_SETTINGS.defaultTime2Wait), 'max(offer, ours)');
  t.equal(a.get('DefaultTime2Retain'), '0', 'min');
});

t.test('FirstBurstLength never exceeds MaxBurstLength', async (t) => {
  const r = run([['MaxBurstLength', '8192'], ['FirstBurstLength', '65536']]);
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.state.params.firstBurstLength, 8192);
  t.equal(new Map(r.response).get('FirstBurstLength'), '8192');
});

t.test('boolean AND / OR', async (t) => {
  let a = answers([['InitialR2T', 'No'], ['ImmediateData', 'Yes'], ['DataPDUInOrder', 'No'], ['DataSequenceInOrder', 'No']], { settings: { initialR2T: false, immediateData: true } });
  t.equal(a.get('InitialR2T'), 'No', 'OR: No only if both say No');
  t.equal(a.get('ImmediateData'), 'Yes', 'AND: Yes if both say Yes');
  t.equal(a.get('DataPDUInOrder'), 'Yes', 'OR with our Yes');
  t.equal(a.get('DataSequenceInOrder'), 'Yes');
  a = answers([['InitialR2T', 'No'], ['ImmediateData', 'Yes']], { settings: { initialR2T: true, immediateData: false } });
  t.equal(a.get('InitialR2T'), 'Yes');
  t.equal(a.get('ImmediateData'), 'No');
  a = answers([['IFMarker', 'Yes'], ['OFMarker', 'No'], ['OFMarkInt', '2048~8192']]);
  t.equal(a.get('IFMarker'), 'No', 'markers are never used');
  t.equal(a.get('OFMarkInt'), 'Irrelevant');
});

t.test('lists: the first offered value we support', async (t) => {
  let a = answers([['HeaderDigest', 'CRC32C,None'], ['DataDigest', 'None,CRC32C']]);
  t.equal(a.get('HeaderDigest'), 'CRC32C');
  t.equal(a.get('DataDigest'), 'None');
  a = answers([['HeaderDigest', 'CRC32C,None']], { settings: { headerDigest: ['None'] } });
  t.equal(a.get('HeaderDigest'), 'None', 'a target that refuses CRC32C');
  a = answers([['HeaderDigest', 'Y-vendor.example.digest']]);
  t.equal(a.get('HeaderDigest'), 'Reject', 'nothing supported');
  const r = run([['HeaderDigest', 'CRC32C']]);
  t.ok(r.ok && r.state.params.headerDigest, 'CRC32C becomes the connection parameter');
});

t.test('unknown keys, irrelevant keys, bad values', async (t) => {
  const a = answers([
    ['X-com.example.Frobnicate', 'Yes'],
    ['NoSuchKey', '1'],
    ['MaxBurstLength', '100'],
    ['FirstBurstLength', 'lots'],
    ['InitialR2T', 'Maybe'],
    ['MaxRecvDataSegmentLength', '1'],
    ['TargetAlias', 'mine'],
    ['SendTargets', 'All'],
  ]);
  t.equal(a.get('X-com.example.Frobnicate'), 'NotUnderstood');
  t.equal(a.get('NoSuchKey'), 'NotUnderstood');
  t.equal(a.get('MaxBurstLength'), 'Reject', 'below 512');
  t.equal(a.get('FirstBurstLength'), 'Reject', 'not a number');
  t.equal(a.get('InitialR2T'), 'Reject');
  t.equal(a.get('MaxRecvDataSegmentLength'), 'Reject');
  t.equal(a.get('TargetAlias'), 'Reject', 'only the target declares TargetAlias');
  t.equal(a.get('SendTargets'), 'Irrelevant', 'SendTargets belongs to full feature phase');

  const d = answers([['MaxBurstLength', '65536'], ['InitialR2T', 'No'], ['MaxRecvDataSegmentLength', '65536'], ['DefaultTime2Wait', '2']], { sessionType: 'Discovery' });
  t.equal(d.get('MaxBurstLength'), 'Irrelevant', 'irrelevant in a discovery session');
  t.equal(d.get('InitialR2T'), 'Irrelevant');
  t.equal(d.get('DefaultTime2Wait'), '2', 'DefaultTime2Wait still applies to discovery');

  const f = answers([['FirstBurstLength', '4096'], ['InitialR2T', 'Yes'], ['ImmediateData', 'No']]);
  t.equal(f.get('FirstBurstLength'), 'Irrelevant', 'no unsolicited data at all: FirstBurstLength is irrelevant');

  const ffp = answers([['MaxBurstLength', '65536'], ['MaxRecvDataSegmentLength', '65536']], { phase: 'fullFeature' });
  t.equal(ffp.get('MaxBurstLength'), 'Reject', 'leading-only key in full feature phase');
  t.notOk(ffp.has('MaxRecvDataSegmentLength'), 'declarative, allowed in full feature phase, no answer');

  const sec = answers([['AuthMethod', 'None']], { phase: 'operational' });
  t.equal(sec.get('AuthMethod'), 'Irrelevant', 'security key in the operational stage');
});

t.test('declaratives and security keys are handed over, not answered', async (t) => {
  const r = run([['InitiatorName', 'iqn.2026-11.io.esxemu:a'], ['InitiatorAlias', 'a'], ['SessionType', 'Normal'], ['AuthMethod', 'CHAP,None'], ['CHAP_A', '5'], ['MaxRecvDataSegmentLength', '65536']], { phase: 'security' });
  t.ok(r.ok);
  if (!r.ok) return;
  t.same(r.response, []);
  t.same(r.auth, [['AuthMethod', 'CHAP,None'], ['CHAP_A', '5']]);
  t.equal(r.state.declared.get('InitiatorName'), 'iqn.2026-11.io.esxemu:a');
  t.equal(r.state.params.initiatorMaxRecvDataSegmentLength, 65536);
});

t.test('a key sent twice is an initiator error; an identical re-declaration is tolerated', async (t) => {
  const twice = run([['MaxBurstLength', '8192'], ['MaxBurstLength', '8192']]);
  t.notOk(twice.ok);
  if (!twice.ok) t.equal(twice.status, LOGIN_STATUS.INITIATOR_ERROR);

  const first = run([['InitiatorName', 'iqn.2026-11.io.esxemu:a'], ['MaxBurstLength', '8192']], { phase: 'security' });
  t.ok(first.ok);
  if (!first.ok) return;
  const base = { phase: 'operational' as const, sessionType: 'Normal' as const, settings: DEFAULT_TARGET_KEY_SETTINGS, state: first.state };
  const again = negotiate({ ...base, offered: [['InitiatorName', 'iqn.2026-11.io.esxemu:a']] });
  t.ok(again.ok, 'same InitiatorName again (libiscsi does this after the security stage)');
  const changed = negotiate({ ...base, offered: [['InitiatorName', 'iqn.2026-11.io.esxemu:b']] });
  t.notOk(changed.ok, 'a different InitiatorName is not');
  const reneg = negotiate({ ...base, offered: [['MaxBurstLength', '8192']] });
  t.notOk(reneg.ok, 'renegotiating a negotiated key');
  if (!reneg.ok) t.equal(reneg.status, LOGIN_STATUS.INITIATOR_ERROR);
});
