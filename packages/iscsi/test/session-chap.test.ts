import { createHash } from 'node:crypto';
import t from 'tap';
import { ChapAuthenticator, chapResponse, decodeChapBinary, encodeChapHex, MIN_CHALLENGE_BYTES } from '../src/session/chap.js';

const secrets = { user: 'esx', secret: 'initiator-secret', mutualUser: 'san', mutualSecret: 'target-secret' };
const md5 = (id: number, secret: string, c: Buffer) => createHash('md5').update(Buffer.from([id])).update(secret).update(c).digest();

/** Run CHAP_A and return the target's challenge. */
function challenge(a: ChapAuthenticator): { id: number; c: Buffer } {
  const s = a.step(new Map([['CHAP_A', '7,5']]));
  if (!s.ok) throw new Error(s.reason);
  const m = new Map(s.response);
  t.equal(m.get('CHAP_A'), '5', 'MD5 chosen from the offered list');
  return { id: Number(m.get('CHAP_I')), c: decodeChapBinary(m.get('CHAP_C')!)! };
}

t.test('binary encodings: hex and base64', async (t) => {
  t.same(decodeChapBinary('0x00ff10'), Buffer.from([0, 255, 16]));
  t.same(decodeChapBinary('0XABCD'), Buffer.from([0xab, 0xcd]));
  t.same(decodeChapBinary('0bAP8Q'), Buffer.from([0, 255, 16]));
  t.equal(decodeChapBinary('0x0'), null, 'odd hex length');
  t.equal(decodeChapBinary('0xzz'), null);
  t.equal(decodeChapBinary('abcd'), null, 'no prefix');
  t.equal(decodeChapBinary('0b'), null);
  t.equal(encodeChapHex(Buffer.from([1, 2])), '0x0102');
  t.same(chapResponse(3, 'pw', Buffer.from('ch')), md5(3, 'pw', Buffer.from('ch')));
});

t.test('one-way CHAP: right secret passes, wrong secret or user fails', async (t) => {
  const a = new ChapAuthenticator(secrets);
  const { id, c } = challenge(a);
  t.equal(c.length, 16);
  const ok = a.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(id, secrets.secret, c))]]));
  t.ok(ok.ok && ok.done && ok.response.length === 0, 'authenticated, nothing to answer');
  t.equal(a.state.phase, 'done');

  const b = new ChapAuthenticator(secrets);
  const x = challenge(b);
  const bad = b.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(x.id, 'wrong', x.c))]]));
  t.notOk(bad.ok, 'wrong secret');
  t.equal(b.state.phase, 'failed');

  const u = new ChapAuthenticator(secrets);
  const y = challenge(u);
  t.notOk(u.step(new Map([['CHAP_N', 'someone'], ['CHAP_R', encodeChapHex(md5(y.id, secrets.secret, y.c))]])).ok, 'unknown user');

  const base64 = new ChapAuthenticator(secrets);
  const z = challenge(base64);
  t.ok(base64.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', `0b${md5(z.id, secrets.secret, z.c).toString('base64')}`]])).ok, 'base64 response accepted');
});

t.test('mutual CHAP: the target answers the initiator challenge', async (t) => {
  const a = new ChapAuthenticator(secrets);
  const { id, c } = challenge(a);
  const mine = Buffer.alloc(MIN_CHALLENGE_BYTES, 0x42);
  const s = a.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(id, secrets.secret, c))], ['CHAP_I', '9'], ['CHAP_C', encodeChapHex(mine)]]));
  t.ok(s.ok && s.done);
  if (!s.ok) return;
  const m = new Map(s.response);
  t.equal(m.get('CHAP_N'), 'san');
  t.same(decodeChapBinary(m.get('CHAP_R')!), md5(9, secrets.mutualSecret, mine));
});

t.test('mutual CHAP refusals: reflection, short challenge, no mutual secret, bad CHAP_I, no MD5', async (t) => {
  const reflect = new ChapAuthenticator(secrets);
  const r = challenge(reflect);
  const s1 = reflect.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(r.id, secrets.secret, r.c))], ['CHAP_I', '1'], ['CHAP_C', encodeChapHex(r.c)]]));
  t.notOk(s1.ok, 'our own challenge sent back');
  if (!s1.ok) t.match(s1.reason, /reflection/);

  const short = new ChapAuthenticator(secrets);
  const q = challenge(short);
  t.notOk(short.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(q.id, secrets.secret, q.c))], ['CHAP_I', '1'], ['CHAP_C', '0x0102']])).ok, 'two-byte challenge');

  const oneWayOnly = new ChapAuthenticator({ user: 'esx', secret: 's' });
  const w = challenge(oneWayOnly);
  t.notOk(oneWayOnly.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(w.id, 's', w.c))], ['CHAP_I', '1'], ['CHAP_C', encodeChapHex(Buffer.alloc(16, 1))]])).ok, 'mutual asked, none configured');

  const badId = new ChapAuthenticator(secrets);
  const v = challenge(badId);
  t.notOk(badId.step(new Map([['CHAP_N', 'esx'], ['CHAP_R', encodeChapHex(md5(v.id, secrets.secret, v.c))], ['CHAP_I', '300'], ['CHAP_C', encodeChapHex(Buffer.alloc(16, 1))]])).ok, 'CHAP_I above 255');

  const noMd5 = new ChapAuthenticator(secrets);
  t.notOk(noMd5.step(new Map([['CHAP_A', '6,7']])).ok, 'only MD5 (5) is supported');
  const early = new ChapAuthenticator(secrets);
  t.notOk(early.step(new Map([['CHAP_R', '0x00']])).ok, 'a response before the challenge');
});
