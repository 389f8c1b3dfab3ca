import net from 'node:net';
import t from 'tap';
import { silentLogger } from '@esxemu/shared';
import { startIscsiTarget } from '../src/index.js';

function exchange(port: number, payload: Buffer): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no answer within 5 s')); }, 5000);
    s.on('connect', () => s.write(payload));
    s.on('data', (c) => chunks.push(c));
    s.on('close', () => { clearTimeout(timer); resolve({ data: Buffer.concat(chunks), closed: true }); });
    s.on('error', () => undefined);
  });
}

t.test('a Login Request gets a Login Response "service unavailable" with ITT and ISID echoed', async (t) => {
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger() });
  t.teardown(() => target.close());
  const login = Buffer.alloc(48);
  login[0] = 0x43; // immediate + Login Request
  Buffer.from([0x80, 0, 0x02, 0x3d, 0, 0]).copy(login, 8);
  login.writeUInt32BE(0x12345678, 16);
  const { data, closed } = await exchange(target.port, login);
  t.equal(data.length, 48, 'one BHS back');
  t.equal(data[0], 0x23, 'opcode Login Response');
  t.equal(data.readUInt32BE(16), 0x12345678, 'initiator task tag echoed');
  t.same([...data.subarray(8, 14)], [0x80, 0, 0x02, 0x3d, 0, 0], 'ISID echoed');
  t.equal(data[36], 3, 'status class target error');
  t.equal(data[37], 1, 'status detail service unavailable');
  t.ok(closed, 'connection closed');
});

t.test('garbage is disconnected and the target keeps serving', async (t) => {
  const target = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger() });
  t.teardown(() => target.close());
  const garbage = Buffer.alloc(48, 0xff);
  const first = await exchange(target.port, garbage);
  t.equal(first.data.length, 0, 'no answer to a non-login PDU');
  const login = Buffer.alloc(48);
  login[0] = 0x03;
  const second = await exchange(target.port, login);
  t.equal(second.data[0], 0x23, 'still answers a login afterwards');
});

t.test('a port in use is a PORT_IN_USE error', async (t) => {
  const a = await startIscsiTarget({ listenHost: '127.0.0.1', port: 0, logger: silentLogger() });
  t.teardown(() => a.close());
  await t.rejects(startIscsiTarget({ listenHost: '127.0.0.1', port: a.port, logger: silentLogger() }), { code: 'PORT_IN_USE' });
});
