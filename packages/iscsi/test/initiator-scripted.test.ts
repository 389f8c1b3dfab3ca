/**
 * The initiator against a scripted target (initiator-scripted-target.ts), for what Linux tgt
 * cannot show: COMPARE AND WRITE match and miscompare offset; a status lost after / before the
 * command took effect, and what recovery does with each replay policy (CAW read back and
 * verified, CAW reissued, CAW indeterminate, PR OUT failed, WRITE reissued); a command window
 * of one; a command that never gets an answer (ABORT TASK, TIMEOUT); an AbortSignal; the queue
 * bound.
 */
import t from 'tap';
import type { EsxError } from '@esxemu/shared';
import { IscsiInitiator } from '../src/initiator/index.js';
import { ScriptedTarget, type Fault, type ScriptedTargetOptions } from './initiator-scripted-target.js';

const BS = 512;
t.setTimeout(30_000);

async function setup(t: { teardown(fn: () => unknown): void }, o: Partial<ScriptedTargetOptions>, extra: Partial<Parameters<typeof IscsiInitiator.connect>[0]> = {}): Promise<{ target: ScriptedTarget; s: IscsiInitiator }> {
  const target = await ScriptedTarget.start({ blocks: 2048, ...o });
  const s = await IscsiInitiator.connect({
    portal: target.portal,
    targetName: 'iqn.2024-01.org.esxemu:scripted',
    initiatorName: 'iqn.2024-01.org.esxemu:test-scripted',
    offer: { defaultTime2Wait: 0 },
    timeouts: { connectMs: 1000, loginMs: 1000, requestMs: 500, commandMs: 5000, recoveryMs: 5000, backoffMinMs: 20, backoffMaxMs: 100 },
    ...extra,
  });
  t.teardown(async () => {
    await s.close();
    await target.close();
  });
  return { target, s };
}

/** A fault for the first command with this opcode, once. */
function once(opcode: number, fault: Fault): (cdb: Buffer) => Fault {
  let done = false;
  return (cdb) => {
    if (done || cdb[0] !== opcode) return undefined;
    done = true;
    return fault;
  };
}

const img = (fill: number, tag = ''): Buffer => {
  const b = Buffer.alloc(BS, fill);
  b.write(tag, 16);
  return b;
};

t.test('COMPARE AND WRITE: match, then miscompare at the first differing byte', async (t) => {
  const { s, target } = await setup(t, {});
  const x = img(0x11);
  const y = img(0x11, 'owner=host-a');
  t.ok((await s.write(1, 10, x)).ok);
  const first = await s.compareAndWrite(1, 10, x, y);
  t.same(first.ok && first.value, { match: true });
  const second = await s.compareAndWrite(1, 10, x, img(0x22));
  t.same(second.ok && second.value, { match: false, offset: 16 }, 'offset from the sense INFORMATION field');
  t.ok(target.disk.subarray(10 * BS, 11 * BS).equals(y), 'the miscompare wrote nothing');
});

t.test('CAW status lost after it took effect: read back, reported as a verified match', async (t) => {
  const { s, target } = await setup(t, { fault: once(0x89, 'drop-after'), unitAttentionOnRelogin: true });
  const x = img(0x33);
  const y = img(0x33, 'lock:esx01');
  t.ok((await s.write(1, 20, x)).ok);
  const r = await s.compareAndWrite(1, 20, x, y);
  t.same(r.ok && r.value, { match: true, verifiedAfterRecovery: true });
  t.equal(target.seen.filter((op) => op === 0x89).length, 1, 'not sent twice');
  t.ok(target.disk.subarray(20 * BS, 21 * BS).equals(y));
  t.equal(s.stats()['cawVerified'], 1);
});

t.test('CAW lost before it ran: the read-back shows the compare image, so it is sent again', async (t) => {
  const { s, target } = await setup(t, { fault: once(0x89, 'drop-before') });
  const x = img(0x44);
  const y = img(0x44, 'lock:esx02');
  t.ok((await s.write(1, 30, x)).ok);
  const r = await s.compareAndWrite(1, 30, x, y);
  t.same(r.ok && r.value, { match: true }, 'a plain match: the reissued CAW did it');
  t.equal(target.seen.filter((op) => op === 0x89).length, 2);
  t.ok(target.disk.subarray(30 * BS, 31 * BS).equals(y));
});

t.test('CAW lost while someone else changed the blocks: TASK_INTERRUPTED, indeterminate', async (t) => {
  let target: ScriptedTarget;
  const ctx = await setup(t, {
    fault: once(0x89, 'drop-after'),
    afterDrop: () => img(0x55, 'lock:esx03').copy(target.disk, 40 * BS),
  });
  target = ctx.target;
  const x = img(0x55);
  t.ok((await ctx.s.write(1, 40, x)).ok);
  const err = (await ctx.s.compareAndWrite(1, 40, x, img(0x55, 'lock:esx04')).catch((e: unknown) => e)) as EsxError;
  t.equal(err.code, 'TASK_INTERRUPTED');
  t.equal(err.details?.['reason'], 'CAW_OUTCOME_INDETERMINATE');
});

t.test('PERSISTENT RESERVE OUT REGISTER lost: not replayed, TASK_INTERRUPTED', async (t) => {
  const { s, target } = await setup(t, { fault: once(0x5f, 'drop-after') });
  const err = (await s.prOut(1, 'REGISTER', { key: 0n, serviceActionKey: 0xabcn }).catch((e: unknown) => e)) as EsxError;
  t.equal(err.code, 'TASK_INTERRUPTED');
  t.equal(err.details?.['reason'], 'OUTCOME_INDETERMINATE');
  t.equal(target.seen.filter((op) => op === 0x5f).length, 1, 'sent once');
  t.ok((await s.prOut(1, 'REGISTER_AND_IGNORE_EXISTING_KEY', { key: 0n, serviceActionKey: 0xabcn })).ok, 'the session is back');
});

t.test('WRITE lost after it ran: reissued (same data, same blocks)', async (t) => {
  const { s, target } = await setup(t, { fault: once(0x8a, 'drop-after') });
  const data = Buffer.alloc(16 * 1024, 0x66);
  const r = await s.write(1, 100, data);
  t.ok(r.ok);
  t.equal(r.ok && r.attempts, 2, 'sent twice');
  t.ok(target.disk.subarray(100 * BS, 100 * BS + data.length).equals(data));
});

t.test('a command window of one: commands wait for MaxCmdSN and all complete', async (t) => {
  const { s, target } = await setup(t, { window: 1 });
  const bufs = Array.from({ length: 20 }, (_, i) => img(i));
  bufs.forEach((b, i) => b.copy(target.disk, (200 + i) * BS));
  const reads = await Promise.all(bufs.map((_, i) => s.read(1, 200 + i, 1)));
  t.ok(reads.every((r, i) => r.ok && r.value.equals(bufs[i]!)));
  t.ok(((s.stats()['session'] as { windowWaits: number }).windowWaits) > 0, 'some waited for the window');
});

t.test('no status within commandMs: ABORT TASK, TIMEOUT, the session goes on', async (t) => {
  const { s } = await setup(t, { fault: once(0x88, 'hold') }, { timeouts: { commandMs: 200, requestMs: 1000 } });
  await s.blockSize(1);
  const err = (await s.read(1, 0, 1).catch((e: unknown) => e)) as EsxError;
  t.equal(err.code, 'TIMEOUT');
  t.equal(err.details?.['reason'], 'COMMAND_TIMEOUT');
  t.equal(err.details?.['tmfResponse'], 'COMPLETE');
  t.ok((await s.read(1, 0, 1)).ok, 'next command fine');
  t.equal(s.state, 'READY');
});

t.test('an AbortSignal aborts a command on the wire', async (t) => {
  const { s } = await setup(t, { fault: once(0x88, 'hold') });
  await s.blockSize(1);
  const ac = new AbortController();
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x88;
  cdb.writeUInt32BE(1, 10);
  const p = s.execute(1, cdb, { expectedLength: BS, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await t.rejects(p, { code: 'CANCELLED', details: { reason: 'ABORTED' } });
});

t.test('the queue is bounded', async (t) => {
  const { s } = await setup(t, { fault: (cdb) => (cdb[0] === 0x00 ? 'hold' : undefined) }, { queueDepth: 1, maxQueued: 3, timeouts: { commandMs: 60_000, closeMs: 100 } });
  const held = [s.testUnitReady(1), s.testUnitReady(1), s.testUnitReady(1), s.testUnitReady(1)];
  held.forEach((p) => p.catch(() => undefined));
  await t.rejects(s.testUnitReady(1), { code: 'INSUFFICIENT_RESOURCES', details: { reason: 'QUEUE_FULL' } });
  await s.close();
  for (const p of held) await t.rejects(p, { code: 'CANCELLED' }, 'close cancels what is left');
});
