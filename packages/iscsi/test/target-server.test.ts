import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { silentLogger } from '@esxemu/shared';
import { ISCSI_DEFAULT_PORT, startIscsiTarget, configFromFlags, DEFAULT_TARGET_NAME } from '../src/index.js';
import { ASYNC, DATA_IN } from '../src/transport/fields.js';
import { OP } from '../src/transport/opcodes.js';
import { parseText } from '../src/transport/text.js';
import { TestInitiator } from './session-peer.js';

t.setTimeout(120_000);
const run = promisify(execFile);

async function login(port: number): Promise<TestInitiator> {
  const peer = await TestInitiator.connect(port);
  const r = await peer.login({ targetName: DEFAULT_TARGET_NAME });
  if (r.status !== 0) throw new Error(`login status 0x${r.status.toString(16)}`);
  return peer;
}

t.test('the real target: default config on a data directory, real SCSI layer, close() logs initiators out', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'esxemu-iscsi-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), dataDir: dir, closeGraceMs: 300 });
  let closed = false;
  t.teardown(() => (closed ? undefined : target.close()));
  t.equal(ISCSI_DEFAULT_PORT, 3260);
  t.same(target.targets, [DEFAULT_TARGET_NAME]);
  const img = join(dir, 'lun0.img');
  t.ok(existsSync(img), 'LUN 0 is a file in the data directory');
  t.equal(statSync(img).size, 1024 ** 3, 'of 1 GiB');
  t.ok(statSync(img).blocks * 512 < 64 * 1024 ** 2, 'and sparse');

  const peer = await login(target.port);
  // The first command of a new I_T nexus meets the power-on unit attention.
  peer.send(peer.scsiCommand({ cdb: [0, 0, 0, 0, 0, 0], edtl: 0 }));
  const ua = await peer.expect(OP.SCSI_RESPONSE);
  t.equal(ua.u8(3), 2, 'CHECK CONDITION');
  t.equal(ua.data[2 + 2]! & 0x0f, 6, 'UNIT ATTENTION (power on / reset)');
  // READ CAPACITY (16) through the real SCSI layer
  peer.send(peer.scsiCommand({ cdb: [0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], edtl: 32, read: true }));
  const rc = await peer.expect(OP.DATA_IN);
  t.ok(rc.flags & DATA_IN.FLAG_STATUS, 'status with the data');
  t.equal(Number(rc.data.readBigUInt64BE(0)) + 1, (1024 ** 3) / 512, 'capacity in blocks');
  t.equal(rc.data.readUInt32BE(8), 512, 'block size');
  t.equal(target.sessions().length, 1);

  const closing = target.close();
  const msg = await peer.expect(OP.ASYNC_MESSAGE);
  t.equal(msg.u8(ASYNC.EVENT), ASYNC.LOGOUT_REQUEST, 'the initiator is asked to log out');
  peer.send(peer.logout());
  await peer.expect(OP.LOGOUT_RESPONSE);
  await closing;
  closed = true;
  t.ok(await peer.waitClosed(), 'connection closed');
  t.equal(target.sessions().length, 0);
  await t.rejects(TestInitiator.connect(target.port), 'no longer listening');
});

t.test('a port in use is a PORT_IN_USE error', async (t) => {
  const a = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config: configFromFlags({ lunSize: 1 }) });
  t.teardown(() => a.close());
  await t.rejects(startIscsiTarget({ listenHost: '127.0.0.1', port: a.port, logger: silentLogger(), config: configFromFlags({ lunSize: 1 }) }), { code: 'PORT_IN_USE' });
});

t.test('--advertise: SendTargets announces the advertised address with the real port', async (t) => {
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config: configFromFlags({ lunSize: 1 }), advertiseHost: '192.0.2.7' });
  t.teardown(() => target.close());
  const peer = await TestInitiator.connect(target.port);
  t.teardown(() => peer.close());
  t.equal((await peer.login({ discovery: true })).status, 0);
  peer.send(peer.textRequest({ pairs: [['SendTargets', 'All']] }));
  const r = await peer.expect(OP.TEXT_RESPONSE);
  t.same(parseText(r.data), [['TargetName', DEFAULT_TARGET_NAME], ['TargetAddress', `192.0.2.7:${target.port},1`]]);
});

const tools = ['/usr/bin/iscsi-ls', '/usr/bin/iscsi-inq', '/usr/bin/iscsi-readcapacity16'];
t.test('libiscsi tools accept the target', { skip: tools.every(existsSync) ? false : 'libiscsi-bin is not installed' }, async (t) => {
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger(), config: configFromFlags({ lunSize: 64 }), advertiseHost: '127.0.0.1' });
  t.teardown(() => target.close());
  const portal = `127.0.0.1:${target.port}`;
  const url = `iscsi://${portal}/${DEFAULT_TARGET_NAME}/0`;
  const ls = await run('iscsi-ls', ['-s', `iscsi://${portal}/`], { timeout: 20_000 });
  t.match(ls.stdout, `Target:${DEFAULT_TARGET_NAME} Portal:${portal},1`, 'iscsi-ls discovers the target and its portal');
  t.match(ls.stdout, /Lun:0\s+Type:DIRECT_ACCESS/, 'and its LUN');
  const inq = await run('iscsi-inq', [url], { timeout: 20_000 });
  t.match(inq.stdout, /Peripheral Device Type:DIRECT_ACCESS/, 'iscsi-inq');
  const cap = await run('iscsi-readcapacity16', [url], { timeout: 20_000 });
  t.match(cap.stdout, `Total size:${64 * 1024 * 1024}`, 'iscsi-readcapacity16');
  t.equal(target.sessions().length, 0, 'no session left behind');
});
