/**
 * The initiator's pure parts, without a network: negotiation result functions, the login state
 * machine fed scripted responses (continuations, bad stages, rejections), the CmdSN window with
 * serial-number wraparound, Data-In reassembly checks, Data-Out planning, sense decoding (fixed
 * and descriptor), CHAP values, SendTargets parsing and replay policies.
 */
import t from 'tap';
import { silentLogger, type EsxError } from '@esxemu/shared';
import { decodeBinary, chapResponse, newChallenge, verifyTargetResponse } from '../src/initiator/chap.js';
import { CmdWindow } from '../src/initiator/cmd-window.js';
import { DataInAssembler } from '../src/initiator/data-in.js';
import { commandPdus } from '../src/initiator/data-out.js';
import { compareAndWrite, decodeSense, defaultReplayPolicy, LoginMachine, Negotiation, parseSendTargets, persistentReserveOut, RFC_DEFAULTS, DEFAULT_OFFER, toScsiResult, write16, type LoginOptions, type OperationalOffer } from '../src/initiator/index.js';
import { Task } from '../src/initiator/task.js';
import { DATA_IN, DATA_OUT, encodeText, F, LOGIN, OP, parseText, Pdu, SCSI_CMD } from '../src/transport/index.js';

const offer: OperationalOffer = { ...DEFAULT_OFFER, headerDigest: ['CRC32C', 'None'], dataDigest: ['None'], maxBurstLength: 262144, firstBurstLength: 65536, immediateData: true, initialR2T: false, maxOutstandingR2T: 4, defaultTime2Wait: 2, defaultTime2Retain: 20 };

t.test('negotiation: the RFC result functions', async (t) => {
  const n = new Negotiation(offer, 'Normal');
  n.apply([
    ['HeaderDigest', 'CRC32C'],
    ['DataDigest', 'None'],
    ['MaxRecvDataSegmentLength', '65536'],
    ['MaxBurstLength', '131072'],
    ['FirstBurstLength', '262144'.slice(0, 5)],
    ['ImmediateData', 'No'],
    ['InitialR2T', 'Yes'],
    ['MaxOutstandingR2T', '1'],
    ['DefaultTime2Wait', '5'],
    ['DefaultTime2Retain', '0'],
    ['ErrorRecoveryLevel', '0'],
    ['TargetPortalGroupTag', '7'],
    ['TargetAlias', 'array-1'],
  ]);
  const p = n.finish();
  t.equal(p.headerDigest, true);
  t.equal(p.dataDigest, false);
  t.equal(p.maxSendDataSegmentLength, 65536, 'declared by the target: what we may send');
  t.equal(p.maxRecvDataSegmentLength, offer.maxRecvDataSegmentLength, 'what we declared');
  t.equal(p.maxBurstLength, 131072);
  t.equal(p.firstBurstLength, 26214);
  t.equal(p.immediateData, false, 'AND');
  t.equal(p.initialR2T, true, 'OR');
  t.equal(p.maxOutstandingR2T, 1);
  t.equal(p.defaultTime2Wait, 5, 'max');
  t.equal(p.defaultTime2Retain, 0, 'min');
  t.equal(p.targetPortalGroupTag, 7);
  t.equal(p.targetAlias, 'array-1');

  const d = new Negotiation(offer, 'Normal');
  d.apply([['MaxBurstLength', 'Irrelevant']]);
  t.same(d.finish().maxBurstLength, RFC_DEFAULTS.maxBurstLength, 'no answer keeps the default');

  // In a discovery session we offer only digests and MaxRecvDataSegmentLength: the rest, if the
  // target proposes it, gets an answer.
  const keys = new Negotiation(offer, 'Discovery').apply([['OFMarker', 'Yes'], ['X-vendor-thing', '1'], ['ErrorRecoveryLevel', '2'], ['MaxConnections', '4']]);
  t.same(keys, [['OFMarker', 'No'], ['X-vendor-thing', 'NotUnderstood'], ['ErrorRecoveryLevel', '0'], ['MaxConnections', '1']], 'target-proposed keys are answered');
  t.throws(() => new Negotiation(offer, 'Normal').apply([['ErrorRecoveryLevel', '2']]), { code: 'PROTOCOL_ERROR' }, 'an answer above our ErrorRecoveryLevel=0');
});

t.test('negotiation: answers outside the offer are protocol errors', async (t) => {
  const bad: [string, string][] = [
    ['DataDigest', 'CRC32C'], // we offered None only
    ['HeaderDigest', 'MD5'],
    ['MaxBurstLength', '999999999'],
    ['MaxBurstLength', '524288'], // above our offer (min function)
    ['DefaultTime2Wait', '1'], // below our offer (max function)
    ['ImmediateData', 'Maybe'],
    ['MaxRecvDataSegmentLength', '100'],
    ['MaxRecvDataSegmentLength', '0x1000'],
  ];
  for (const pair of bad) {
    t.throws(() => new Negotiation({ ...offer, immediateData: true }, 'Normal').apply([pair]), { code: 'PROTOCOL_ERROR' }, pair.join('='));
  }
  t.throws(() => new Negotiation({ ...offer, immediateData: false }, 'Normal').apply([['ImmediateData', 'Yes']]), { code: 'PROTOCOL_ERROR' }, 'Yes to our No (AND)');
  t.throws(() => new Negotiation({ ...offer, initialR2T: true }, 'Normal').apply([['InitialR2T', 'No']]), { code: 'PROTOCOL_ERROR' }, 'No to our Yes (OR)');
});

function loginRsp(o: { csg: number; nsg?: number; transit?: boolean; cont?: boolean; keys?: [string, string][]; isid: Buffer; status?: [number, number]; tsih?: number; data?: Buffer }): Pdu {
  const p = Pdu.create(OP.LOGIN_RESPONSE);
  p.flags = (o.transit ? LOGIN.FLAG_TRANSIT | (o.nsg ?? 0) : 0) | (o.cont ? LOGIN.FLAG_CONTINUE : 0) | (o.csg << LOGIN.CSG_SHIFT);
  o.isid.copy(p.bhs, LOGIN.ISID);
  p.itt = 0x4c4f4731;
  p.setU16(LOGIN.TSIH, o.tsih ?? 0);
  p.setU32(F.STATSN, 41);
  p.setU32(F.EXPCMDSN, 1);
  p.setU32(F.MAXCMDSN, 32);
  if (o.status) {
    p.setU8(LOGIN.STATUS_CLASS, o.status[0]);
    p.setU8(LOGIN.STATUS_DETAIL, o.status[1]);
  }
  p.data = o.data ?? encodeText(o.keys ?? []);
  return p;
}

t.test('login machine: None, continued text, operational rounds', async (t) => {
  const isid = Buffer.from('80aabbcc0000', 'hex');
  const o: LoginOptions = { initiatorName: 'iqn.a', targetName: 'iqn.t', sessionType: 'Normal', isid, tsih: 0, cid: 0, cmdSN: 1, offer };
  const m = new LoginMachine(o, silentLogger());
  const first = m.start();
  t.same(parseText(first.data), [['InitiatorName', 'iqn.a'], ['SessionType', 'Normal'], ['TargetName', 'iqn.t'], ['AuthMethod', 'None']]);
  t.equal(first.flags, LOGIN.FLAG_TRANSIT | LOGIN.STAGE_OPERATIONAL, 'T=1 CSG=0 NSG=1');
  t.equal(first.immediate, true);
  const sec = m.step(loginRsp({ csg: 0, nsg: 1, transit: true, isid, keys: [['AuthMethod', 'None'], ['TargetPortalGroupTag', '1']] }));
  t.ok('send' in sec);
  const op = (sec as { send: Pdu }).send;
  t.equal((op.flags & LOGIN.CSG_MASK) >> LOGIN.CSG_SHIFT, 1, 'operational stage');
  t.equal(op.u32(F.EXPSTATSN), 42, 'ExpStatSN follows the target');
  // The answer arrives in two PDUs (C bit); the first is acknowledged with an empty request.
  const text = encodeText([['HeaderDigest', 'CRC32C'], ['DataDigest', 'None'], ['MaxBurstLength', '65536'], ['X-foo', 'bar']]);
  const part1 = m.step(loginRsp({ csg: 1, cont: true, isid, data: text.subarray(0, 20) }));
  t.ok('send' in part1 && (part1 as { send: Pdu }).send.data.length === 0, 'empty request for the rest');
  const part2 = m.step(loginRsp({ csg: 1, isid, data: text.subarray(20) }));
  t.ok('send' in part2, 'the target did not transit: we answer its key');
  t.same(parseText((part2 as { send: Pdu }).send.data), [['X-foo', 'NotUnderstood']]);
  const done = m.step(loginRsp({ csg: 1, nsg: 3, transit: true, isid, tsih: 9 }));
  t.ok('done' in done);
  if ('done' in done) {
    t.equal(done.done.tsih, 9);
    t.equal(done.done.params.headerDigest, true);
    t.equal(done.done.params.maxBurstLength, 65536);
    t.equal(done.done.expCmdSN, 1);
    t.equal(done.done.maxCmdSN, 32);
  }
});

t.test('login machine: rejections and nonsense', async (t) => {
  const isid = Buffer.from('80aabbcc0000', 'hex');
  const o: LoginOptions = { initiatorName: 'iqn.a', targetName: 'iqn.t', sessionType: 'Normal', isid, tsih: 0, cid: 0, cmdSN: 1, offer };
  const cases: [string, Pdu, string, string?][] = [
    ['auth failure', loginRsp({ csg: 0, isid, status: [2, 1] }), 'UNAUTHORIZED', 'AUTHENTICATION_FAILURE'],
    ['authorization failure', loginRsp({ csg: 0, isid, status: [2, 2] }), 'FORBIDDEN', 'AUTHORIZATION_FAILURE'],
    ['not found', loginRsp({ csg: 0, isid, status: [2, 3] }), 'NOT_FOUND', 'NOT_FOUND'],
    ['out of resources', loginRsp({ csg: 0, isid, status: [3, 2] }), 'INSUFFICIENT_RESOURCES', 'OUT_OF_RESOURCES'],
    ['wrong stage', loginRsp({ csg: 1, isid }), 'PROTOCOL_ERROR'],
    ['another ISID', loginRsp({ csg: 0, isid: Buffer.alloc(6, 1) }), 'PROTOCOL_ERROR'],
    ['T and C', loginRsp({ csg: 0, nsg: 1, transit: true, cont: true, isid }), 'PROTOCOL_ERROR'],
    ['CHAP not offered', loginRsp({ csg: 0, isid, keys: [['AuthMethod', 'CHAP']] }), 'PROTOCOL_ERROR'],
    ['skip to full feature', loginRsp({ csg: 0, nsg: 3, transit: true, isid, keys: [['AuthMethod', 'None']] }), 'PROTOCOL_ERROR'],
    ['bad text', loginRsp({ csg: 0, isid, data: Buffer.from('no-equals-sign\0') }), 'PROTOCOL_ERROR'],
  ];
  for (const [name, rsp, code, status] of cases) {
    const m = new LoginMachine(o, silentLogger());
    m.start();
    let err: EsxError | null = null;
    try {
      m.step(rsp);
    } catch (e) {
      err = e as EsxError;
    }
    t.equal(err?.code, code, name);
    if (status) t.equal(err?.details?.['status'], status, `${name}: status in details`);
  }
  const m = new LoginMachine(o, silentLogger());
  m.start();
  const r = m.step(loginRsp({ csg: 0, isid, status: [1, 1], keys: [['TargetAddress', '10.0.0.2:3260,1']] }));
  t.same(r, { redirect: '10.0.0.2:3260,1', permanent: false }, 'redirection');
});

t.test('CmdSN window with serial arithmetic across 2^32', async (t) => {
  const w = new CmdWindow(0xfffffffe, 0xfffffffe, 0x00000001);
  t.equal(w.room, 4);
  t.same([w.take(), w.take(), w.take(), w.take()], [0xfffffffe, 0xffffffff, 0, 1]);
  t.equal(w.open, false, 'window exhausted');
  t.equal(w.update(2, 1), false, 'MaxCmdSN = ExpCmdSN - 1: closed');
  t.equal(w.update(2, 0xfffffff0), false, 'stale MaxCmdSN < ExpCmdSN - 1 ignored');
  t.equal(w.maxCmdSN, 1);
  t.equal(w.update(3, 9), true);
  t.equal(w.room, 8);
  t.equal(w.update(1, 5), false, 'never goes back');
  t.equal(w.expCmdSN, 3);
});

t.test('Data-In reassembly: order, bounds, status', async (t) => {
  const mk = (sn: number, off: number, data: Buffer, status?: number): Pdu => {
    const p = Pdu.create(OP.DATA_IN);
    p.setU32(DATA_IN.DATASN, sn);
    p.setU32(DATA_IN.BUFFER_OFFSET, off);
    p.data = data;
    if (status !== undefined) {
      p.flags = 0x80 | DATA_IN.FLAG_STATUS | DATA_IN.FLAG_UNDERFLOW;
      p.setU8(DATA_IN.STATUS, status);
      p.setU32(DATA_IN.RESIDUAL, 4);
    }
    return p;
  };
  const a = new DataInAssembler(12);
  t.equal(a.accept(mk(0, 0, Buffer.from('abcd'))), null);
  t.same(a.accept(mk(1, 4, Buffer.from('efgh'), 0)), { status: 0, underflow: true, overflow: false, residual: 4 });
  t.equal(a.data().toString(), 'abcdefgh');
  const reason = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (e) {
      return (e as EsxError).details?.['reason'];
    }
    return null;
  };
  t.equal(reason(() => new DataInAssembler(8).accept(mk(1, 0, Buffer.from('x')))), 'DATASN_GAP');
  t.equal(reason(() => new DataInAssembler(8).accept(mk(0, 4, Buffer.from('x')))), 'DATA_OUT_OF_ORDER');
  t.equal(reason(() => new DataInAssembler(4).accept(mk(0, 0, Buffer.from('12345')))), 'DATA_OVERRUN');
});

t.test('Data-Out planning: immediate data, unsolicited Data-Out, F bit', async (t) => {
  const params = { ...RFC_DEFAULTS, maxSendDataSegmentLength: 8192, firstBurstLength: 20000, immediateData: true, initialR2T: false };
  const data = Buffer.alloc(196 * 512, 7);
  const cmd = write16(0, data, 512);
  const task = new Task({ lun: 3, cdb: cmd.cdb, dataOut: cmd.dataOut, expectedLength: 0, attr: 'simple', replay: 'reissue', timeoutMs: 1000 });
  const pdus = commandPdus(task, params, { itt: 5, cmdSN: 10, expStatSN: 20 });
  t.equal(pdus[0]!.data.length, 8192, 'immediate data up to the target segment limit');
  t.equal(pdus[0]!.u32(SCSI_CMD.EDTL), 196 * 512);
  t.equal(pdus[0]!.final, false, 'F=0: unsolicited Data-Out follows');
  t.equal(pdus[0]!.flags & SCSI_CMD.FLAG_WRITE, SCSI_CMD.FLAG_WRITE);
  const outs = pdus.slice(1);
  t.same(outs.map((p) => [p.u32(DATA_OUT.DATASN), p.u32(DATA_OUT.BUFFER_OFFSET), p.data.length, p.final]), [
    [0, 8192, 8192, false],
    [1, 16384, 3616, true],
  ], 'unsolicited up to FirstBurstLength, F on the last');
  t.equal(outs[0]!.u32(F.TTT), 0xffffffff);
  const noUnsolicited = commandPdus(task, { ...params, initialR2T: true }, { itt: 6, cmdSN: 11, expStatSN: 20 });
  t.equal(noUnsolicited.length, 1);
  t.equal(noUnsolicited[0]!.final, true, 'F=1: the rest comes by R2T');
});

t.test('sense: fixed and descriptor formats', async (t) => {
  const fixed = Buffer.from('f0000e000000280a00000000' + '1d00' + '00000000', 'hex');
  fixed.writeUInt32BE(40, 3);
  const f = decodeSense(fixed);
  t.match(f, { format: 'fixed', key: 0x0e, keyName: 'MISCOMPARE', asc: 0x1d, ascq: 0, information: 40, valid: true, description: 'MISCOMPARE DURING VERIFY OPERATION' });
  const desc = Buffer.alloc(8 + 12);
  desc[0] = 0x72;
  desc[1] = 0x05;
  desc[2] = 0x21;
  desc[3] = 0x00;
  desc[7] = 12;
  desc[8] = 0x00;
  desc[9] = 0x0a;
  desc[10] = 0x80;
  desc.writeBigUInt64BE(123456789n, 12);
  const d = decodeSense(desc);
  t.match(d, { format: 'descriptor', keyName: 'ILLEGAL_REQUEST', asc: 0x21, information: 123456789, description: 'LOGICAL BLOCK ADDRESS OUT OF RANGE' });
  t.match(decodeSense(Buffer.from([0x70, 0])), { valid: false }, 'truncated: no throw');
  t.match(decodeSense(Buffer.alloc(0)), { valid: false });
  t.match(decodeSense(Buffer.from([0x7f, 1, 2, 3])), { format: 'unknown', valid: false });
  // A CAW miscompare in descriptor format carries the offset the same way.
  desc[1] = 0x0e;
  desc[2] = 0x1d;
  desc.writeBigUInt64BE(7n, 12);
  const caw = compareAndWrite(0, Buffer.alloc(512), Buffer.alloc(512, 1), 512);
  const r = toScsiResult(caw, { status: 2, data: null, sense: desc, residual: 0, underflow: false, overflow: false, attempts: 1 });
  t.same(r.ok && r.value, { match: false, offset: 7 });
});

t.test('CHAP values and responses', async (t) => {
  t.same(decodeBinary('CHAP_C', '0x0102ff'), Buffer.from([1, 2, 255]));
  t.same(decodeBinary('CHAP_C', '0bAQL/'), Buffer.from([1, 2, 255]), 'base64 form');
  t.throws(() => decodeBinary('CHAP_C', '12345'), { code: 'PROTOCOL_ERROR' });
  t.throws(() => decodeBinary('CHAP_C', '0x'), { code: 'PROTOCOL_ERROR' });
  const c = newChallenge(Buffer.alloc(16));
  t.equal(c.challenge.length, 16);
  t.ok(verifyTargetResponse(c, 'target-secret', chapResponse(c.id, 'target-secret', c.challenge)));
  t.notOk(verifyTargetResponse(c, 'target-secret', chapResponse(c.id, 'other-secret', c.challenge)));
  t.notOk(verifyTargetResponse(c, 'target-secret', Buffer.alloc(3)));
});

t.test('SendTargets answers', async (t) => {
  const portal = { host: '127.0.0.1', port: 3260 };
  const out = parseSendTargets(
    [
      ['TargetName', 'iqn.a'],
      ['TargetAddress', '10.0.0.1:3261,1'],
      ['TargetAddress', '[fe80::1]:3260,2'],
      ['TargetName', 'iqn.b'],
    ],
    portal,
  );
  t.same(out, [
    { name: 'iqn.a', addresses: [{ portal: '10.0.0.1:3261', host: '10.0.0.1', port: 3261, tpgt: 1 }, { portal: '[fe80::1]:3260', host: 'fe80::1', port: 3260, tpgt: 2 }] },
    { name: 'iqn.b', addresses: [{ portal: '127.0.0.1:3260', host: '127.0.0.1', port: 3260, tpgt: null }] },
  ]);
  t.throws(() => parseSendTargets([['TargetAddress', '1.2.3.4:3260,1']], portal), { code: 'PROTOCOL_ERROR' });
});

t.test('replay policies', async (t) => {
  t.equal(defaultReplayPolicy(Buffer.from([0x8a])), 'reissue', 'WRITE(16)');
  t.equal(defaultReplayPolicy(Buffer.from([0x89])), 'verify-caw', 'COMPARE AND WRITE');
  t.equal(persistentReserveOut('REGISTER', { key: 0n, serviceActionKey: 1n }).replay, 'fail');
  t.equal(persistentReserveOut('PREEMPT', { key: 1n, serviceActionKey: 2n, type: 1 }).replay, 'fail');
  t.equal(persistentReserveOut('RESERVE', { key: 1n, type: 1 }).replay, 'reissue');
  t.equal(defaultReplayPolicy(persistentReserveOut('CLEAR', { key: 1n }).cdb), 'fail');
  t.equal(defaultReplayPolicy(persistentReserveOut('REGISTER_AND_IGNORE_EXISTING_KEY', { key: 0n, serviceActionKey: 1n }).cdb), 'reissue');
});
