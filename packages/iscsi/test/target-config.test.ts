import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { configFromFlags, defaultTargetConfig, DEFAULT_TARGET_NAME, loadTargetConfig, parseTargetConfig } from '../src/target/config.js';

const lun0 = { lun: 0, memory: true, size: 8 };

t.test('defaults: one target, LUN 0 a 1 GiB sparse file in the data directory, or memory', async (t) => {
  const mem = defaultTargetConfig();
  t.equal(mem.targets.length, 1);
  t.equal(mem.targets[0]!.name, DEFAULT_TARGET_NAME);
  t.same(mem.targets[0]!.luns[0]!.backing, { kind: 'memory' });
  t.equal(mem.targets[0]!.luns[0]!.sizeBytes, 1024 * 1024 * 1024);
  t.equal(mem.targets[0]!.acl, 'all');
  t.equal(mem.limits.queueDepth, 128);
  const file = defaultTargetConfig('/var/lib/esxemu/iscsi');
  t.same(file.targets[0]!.luns[0]!.backing, { kind: 'file', path: '/var/lib/esxemu/iscsi/lun0.img' });
});

t.test('a full configuration is resolved: sizes, paths, ACL, masking, CHAP, session tunables', async (t) => {
  const c = parseTargetConfig(
    {
      targets: [
        {
          name: 'iqn.2026-11.io.esxemu:ds',
          alias: 'ds',
          tpgt: 3,
          luns: [{ lun: 0, file: 'a.img', size: '2GiB' }, { lun: 5, memory: true, size: 16, blockSize: 4096, readOnly: true }, { lun: 6, size: 1 }],
          acl: ['iqn.2026-11.io.esxemu:esx01'],
          lunMasking: { 'iqn.2026-11.io.esxemu:esx01': [0, 5] },
          chap: { user: 'u', secret: 'initiator-secret', mutualUser: 'm', mutualSecret: 'target-secret' },
        },
      ],
      session: { queueDepth: 32, maxBurstLength: 65536, headerDigest: ['None'] },
    },
    { dataDir: '/data' },
  );
  const tg = c.targets[0]!;
  t.equal(tg.tpgt, 3);
  t.same(tg.luns.map((l) => l.backing), [{ kind: 'file', path: '/data/a.img' }, { kind: 'memory' }, { kind: 'file', path: '/data/iqn.2026-11.io.esxemu_ds-lun6.img' }]);
  t.same(tg.luns.map((l) => l.sizeBytes), [2 * 1024 ** 3, 16 * 1024 ** 2, 1024 ** 2]);
  t.equal(tg.luns[1]!.blockSize, 4096);
  t.equal(tg.luns[1]!.readOnly, true);
  t.same(tg.acl, ['iqn.2026-11.io.esxemu:esx01']);
  t.same(tg.chap, { user: 'u', secret: 'initiator-secret', mutualUser: 'm', mutualSecret: 'target-secret' });
  t.equal(c.limits.queueDepth, 32);
  t.equal(c.keys.maxBurstLength, 65536);
  t.equal(c.keys.firstBurstLength, 65536, 'FirstBurstLength follows a smaller MaxBurstLength');
  t.same(c.keys.headerDigest, ['None']);
});

t.test('invalid configurations: INVALID_ARGUMENT naming the field', async (t) => {
  const bad: [string, unknown, string][] = [
    ['not an IQN', { targets: [{ name: 'disk1', luns: [lun0] }] }, 'targets.0.name'],
    ['no LUN', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [] }] }, 'targets.0.luns'],
    ['duplicate LUN', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0, lun0] }] }, 'targets.0.luns.1.lun'],
    ['duplicate target', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0] }, { name: DEFAULT_TARGET_NAME, luns: [lun0] }] }, 'targets.1.name'],
    ['bad size', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [{ lun: 0, memory: true, size: 'huge' }] }] }, 'targets.0.luns.0.size'],
    ['unknown key', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0], colour: 'red' }] }, 'targets.0'],
    ['mutual user without secret', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0], chap: { user: 'u', secret: 's1', mutualUser: 'm' } }] }, 'targets.0.chap'],
    ['same secret both ways', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0], chap: { user: 'u', secret: 's1', mutualUser: 'm', mutualSecret: 's1' } }] }, 'targets.0.chap.mutualSecret'],
    ['masking of a missing LUN', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0], lunMasking: { 'iqn.2026-11.io.esxemu:a': [4] } }] }, 'targets.0.lunMasking.iqn.2026-11.io.esxemu:a'],
    ['relative file without data dir', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [{ lun: 0, file: 'x.img' }] }] }, 'targets.0.luns.0.file'],
    ['burst lengths', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0] }], session: { firstBurstLength: 1 << 20, maxBurstLength: 65536 } }, 'session'],
    ['ACL entry not an iSCSI name', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [lun0], acl: ['bob'] }] }, 'targets.0.acl.0'],
    ['unknown LUN I/O mode', { targets: [{ name: DEFAULT_TARGET_NAME, luns: [{ ...lun0, io: 'turbo' }] }] }, 'targets.0.luns.0.io'],
  ];
  for (const [what, json, field] of bad) {
    t.throws(() => parseTargetConfig(json), { code: 'INVALID_ARGUMENT', details: { field } }, what);
  }
});

t.test('from a file and from flags', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'esxemu-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'targets.json');
  writeFileSync(file, JSON.stringify({ targets: [{ name: DEFAULT_TARGET_NAME, luns: [{ lun: 0, file: 'disk.img', size: 64 }] }] }));
  t.same(loadTargetConfig(file).targets[0]!.luns[0]!.backing, { kind: 'file', path: join(dir, 'disk.img') }, 'relative to the config file');
  t.same(loadTargetConfig(file, { dataDir: '/elsewhere' }).targets[0]!.luns[0]!.backing, { kind: 'file', path: '/elsewhere/disk.img' }, 'or to the data directory');
  writeFileSync(file, '{ not json');
  t.throws(() => loadTargetConfig(file), { code: 'INVALID_ARGUMENT' });
  t.throws(() => loadTargetConfig(join(dir, 'missing.json')), { code: 'INVALID_ARGUMENT' });

  const f = configFromFlags({ dataDir: dir, lunSize: '256MiB', acl: ['iqn.2026-11.io.esxemu:esx01'], chapUser: 'u', chapSecret: 'secret-1' });
  t.equal(f.targets[0]!.luns[0]!.sizeBytes, 256 * 1024 * 1024);
  t.same(f.targets[0]!.acl, ['iqn.2026-11.io.esxemu:esx01']);
  t.same(f.targets[0]!.chap, { user: 'u', secret: 'secret-1' });
  t.throws(() => configFromFlags({ chapUser: 'u' }), { code: 'INVALID_ARGUMENT', details: { field: 'targets.0.chap.secret' } }, 'a CHAP user needs a secret');
  t.same(configFromFlags({ dataDir: dir, memory: true }).targets[0]!.luns[0]!.backing, { kind: 'memory' });
});
