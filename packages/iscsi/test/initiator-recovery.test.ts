/**
 * Recovery against a real Linux tgt: the target is SIGKILLed with writes and reads in flight
 * and restarted on the same port and files: every command completes after the re-login and the
 * data is all there. The target hangs (SIGSTOP): our NOP-Out ping notices, the session is
 * re-established when it comes back. The target stays dead: waiting commands fail with TIMEOUT
 * (SESSION_RECOVERY_TIMEOUT) within the bound, new ones fail fast with TARGET_UNREACHABLE, and the
 * session comes back by itself once the target does.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { waitFor, type EsxError } from '@esxemu/shared';
import { IscsiInitiator } from '../src/initiator/index.js';
import { Tgtd, tgtAvailable } from '../src/peers/tgtd.js';
import { pattern } from './pattern.js';

const TARGET = 'iqn.2024-01.org.esxemu:recovery';
const BS = 512;

if (!tgtAvailable()) {
  t.test('recovery against Linux tgt', { skip: 'Linux tgt (/usr/sbin/tgtd, tgtadm) is not installed or we are not root' }, () => undefined);
} else {
  t.setTimeout(60_000);
  // DefaultTime2Wait 0 on both sides: reconnect without the RFC's 2-second pause.
  const tgt = await Tgtd.start({ targets: [{ tid: 1, iqn: TARGET, luns: [{ lun: 1, sizeBytes: 32 << 20 }], params: { DefaultTime2Wait: '0' } }] });
  t.teardown(() => tgt.stop());
  const file = `${tgt.dir}/t1-lun1.img`;
  const connect = (recoveryMs: number): Promise<IscsiInitiator> =>
    IscsiInitiator.connect({
      portal: tgt.portal,
      targetName: TARGET,
      initiatorName: 'iqn.2024-01.org.esxemu:recovering-host',
      offer: { defaultTime2Wait: 0 },
      queueDepth: 32,
      timeouts: { connectMs: 1000, loginMs: 1500, requestMs: 1000, commandMs: 10_000, recoveryMs, backoffMinMs: 50, backoffMaxMs: 300, nopIntervalMs: 200, nopTimeoutMs: 600 },
    });

  t.test('SIGKILL with commands in flight, restart: every command completes, data intact', async (t) => {
    const s = await connect(15_000);
    t.teardown(() => s.close());
    const isid = s.isid;
    const n = 48;
    const bufs = Array.from({ length: n }, (_, i) => pattern(256 * 1024, i + 1));
    const lba = (i: number): number => i * 512;
    const old = pattern(256 * 1024, 999);
    t.ok((await s.write(1, lba(n), old)).ok, 'a block to read while the target dies');
    const writes = bufs.map((b, i) => s.write(1, lba(i), b));
    const reads = Array.from({ length: 8 }, () => s.read(1, lba(n), 512));
    await new Promise((r) => setImmediate(r));
    t.ok((s.stats()['inflight'] as number) > 0, `commands in flight at the kill (${String(s.stats()['inflight'])})`);
    await tgt.kill();
    await waitFor('the initiator to notice', () => s.state === 'RECOVERING', 5000, 10);
    await new Promise((r) => setTimeout(r, 300));
    await tgt.restart();
    const wr = await Promise.all(writes);
    t.ok(wr.every((w) => w.ok), 'every write GOOD after the re-login');
    const rd = await Promise.all(reads);
    t.ok(rd.every((r) => r.ok && r.value.equals(old)), 'every read returned the data');
    t.equal(s.state, 'READY');
    t.equal(s.isid, isid, 'same ISID (session reinstatement)');
    const st = s.stats();
    t.ok((st['recoveries'] as number) >= 1, 'recovered');
    t.ok((st['reissued'] as number) > 0, `${String(st['reissued'])} commands reissued`);
    const disk = readFileSync(file);
    t.ok(bufs.every((b, i) => disk.subarray(lba(i) * BS, lba(i) * BS + b.length).equals(b)), 'all 48 writes are in the backing file');
  });

  t.test('a hung target (SIGSTOP) is detected by NOP-Out pings and the session comes back', async (t) => {
    const s = await connect(15_000);
    t.teardown(() => s.close());
    const data = pattern(64 * 1024, 77);
    t.ok((await s.write(1, 9000, data)).ok);
    tgt.freeze();
    const pending = s.read(1, 9000, 128);
    await waitFor('the ping to time out', () => s.state === 'RECOVERING', 5000, 10);
    tgt.thaw();
    const r = await pending;
    t.ok(r.ok && r.value.equals(data), 'the read completed on the new session');
    t.equal(s.state, 'READY');
  });

  t.test('permanent outage: waiting commands fail with TIMEOUT within the bound; the session returns with the target', async (t) => {
    const recoveryMs = 1500;
    const s = await connect(recoveryMs);
    t.teardown(() => s.close());
    await tgt.kill();
    const started = Date.now();
    const results = await Promise.allSettled([s.read(1, 0, 8), s.write(1, 0, Buffer.alloc(BS)), s.flush(1)]);
    const elapsed = Date.now() - started;
    for (const r of results) {
      t.equal(r.status, 'rejected');
      if (r.status === 'rejected') {
        const e = r.reason as EsxError;
        t.equal(e.code, 'TIMEOUT');
        t.equal(e.details?.['reason'], 'SESSION_RECOVERY_TIMEOUT');
        t.ok(e.details?.['lastError'], 'carries the last reconnect error');
      }
    }
    t.ok(elapsed < recoveryMs + 3000, `failed within the bound (${elapsed} ms for a ${recoveryMs} ms window)`);
    t.equal(s.state, 'DOWN');
    await t.rejects(s.read(1, 0, 1), { code: 'TARGET_UNREACHABLE' }, 'new commands fail fast while DOWN');
    await tgt.restart();
    await waitFor('the session to come back', () => s.state === 'READY', 5000, 20);
    const r = await s.read(1, 0, 8);
    t.ok(r.ok, 'I/O works again');
  });
}
