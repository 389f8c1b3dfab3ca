/**
 * The PDU reader, tested as nats.js tests its parser: byte by byte, split at every boundary,
 * with digests, with hostile input (oversized, corrupted, random and mutated streams).
 */
import t from 'tap';
import type { EsxError } from '@esxemu/shared';
import { crc32c, decodeLun, encodeLun, encodePdu, encodeText, OP, parseText, Pdu, PduReader, snLessThan, type PduReaderSettings } from '../src/transport/index.js';

function collect(settings: PduReaderSettings) {
  const pdus: Pdu[] = [];
  const digestErrors: Pdu[] = [];
  const errors: EsxError[] = [];
  const reader = new PduReader(settings, { onPdu: (p) => pdus.push(p), onDataDigestError: (p) => digestErrors.push(p), onError: (e) => errors.push(e) });
  return { reader, pdus, digestErrors, errors };
}

function samplePdus(): Pdu[] {
  const a = Pdu.create(OP.SCSI_COMMAND, { final: true });
  a.itt = 0x11223344;
  a.lun = 3;
  a.data = Buffer.from('write data that is not a multiple of four!');
  const b = Pdu.create(OP.NOP_OUT, { immediate: true, final: true });
  b.itt = 7;
  const c = Pdu.create(OP.TEXT_REQUEST, { final: true });
  c.ahs = Buffer.alloc(8, 0xab);
  c.data = encodeText([['SendTargets', 'All']]);
  return [a, b, c];
}

const settingsList: PduReaderSettings[] = [
  { maxRecvDataSegmentLength: 8192, headerDigest: false, dataDigest: false },
  { maxRecvDataSegmentLength: 8192, headerDigest: true, dataDigest: true },
];

for (const s of settingsList) {
  t.test(`PDUs survive every split (digests ${s.headerDigest ? 'on' : 'off'})`, async (t) => {
    const wire = Buffer.concat(samplePdus().flatMap((p) => encodePdu(p, s)));
    for (const step of [1, 3, 47, 48, 49, 1000]) {
      const { reader, pdus, errors, digestErrors } = collect(s);
      for (let i = 0; i < wire.length; i += step) reader.push(wire.subarray(i, i + step));
      t.equal(errors.length + digestErrors.length, 0, `no errors, chunks of ${step}`);
      t.same(pdus.map((p) => p.opcode), [OP.SCSI_COMMAND, OP.NOP_OUT, OP.TEXT_REQUEST], `three PDUs in order, chunks of ${step}`);
      t.equal(pdus[0]!.data.toString(), 'write data that is not a multiple of four!', 'data without its padding');
      t.equal(pdus[0]!.itt, 0x11223344, 'ITT');
      t.equal(pdus[0]!.lun, 3, 'LUN');
      t.ok(pdus[1]!.immediate, 'immediate bit');
      t.equal(pdus[2]!.ahs.length, 8, 'AHS');
    }
  });
}

t.test('CRC32C matches RFC 3720 B.4', async (t) => {
  t.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa, '32 zero bytes');
  t.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43, '32 0xff bytes');
  t.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e, 'incrementing');
  t.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c, 'decrementing');
});

t.test('a data segment over MaxRecvDataSegmentLength is fatal', async (t) => {
  const s = { maxRecvDataSegmentLength: 16, headerDigest: false, dataDigest: false };
  const p = Pdu.create(OP.DATA_OUT);
  p.data = Buffer.alloc(17);
  const { reader, pdus, errors } = collect(s);
  reader.push(Buffer.concat(encodePdu(p, s)));
  t.equal(pdus.length, 0, 'not delivered');
  t.equal(errors[0]?.details?.['reason'], 'PDU_TOO_LARGE', 'PDU_TOO_LARGE');
  reader.push(Buffer.concat(encodePdu(Pdu.create(OP.NOP_OUT), s)));
  t.equal(pdus.length, 0, 'a dead reader parses nothing more');
});

t.test('a header digest mismatch is fatal, a data digest mismatch is reported and skipped', async (t) => {
  const s = { maxRecvDataSegmentLength: 8192, headerDigest: true, dataDigest: true };
  const [a, b] = samplePdus();
  const wireA = Buffer.concat(encodePdu(a!, s));
  const wireB = Buffer.concat(encodePdu(b!, s));
  const badData = Buffer.from(wireA);
  badData[48 + 4 + 2] ^= 0x01; // a byte of the data segment
  const r1 = collect(s);
  r1.reader.push(Buffer.concat([badData, wireB]));
  t.equal(r1.digestErrors.length, 1, 'data digest error reported');
  t.equal(r1.digestErrors[0]!.itt, 0x11223344, 'with the header of the PDU');
  t.same(r1.pdus.map((p) => p.opcode), [OP.NOP_OUT], 'the next PDU is still parsed');
  const badHeader = Buffer.from(wireA);
  badHeader[20] ^= 0x80;
  const r2 = collect(s);
  r2.reader.push(badHeader);
  t.equal(r2.errors[0]?.details?.['reason'], 'HEADER_DIGEST', 'header digest mismatch is fatal');
});

t.test('fuzz: random and mutated streams never throw', async (t) => {
  let seed = 0x9e3779b9;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x100000000;
  };
  const s = settingsList[1]!;
  const good = Buffer.concat(samplePdus().flatMap((p) => encodePdu(p, s)));
  let delivered = 0;
  let failed = 0;
  for (let i = 0; i < 2000; i++) {
    let input: Buffer;
    if (i % 2 === 0) {
      input = Buffer.alloc(Math.floor(rnd() * 400));
      for (let j = 0; j < input.length; j++) input[j] = Math.floor(rnd() * 256);
    } else {
      input = Buffer.from(good);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let f = 0; f < flips; f++) input[Math.floor(rnd() * input.length)] ^= 1 << Math.floor(rnd() * 8);
      if (rnd() < 0.3) input = input.subarray(0, Math.floor(rnd() * input.length));
    }
    const settings = i % 4 < 2 ? s : settingsList[0]!;
    const { reader, pdus, errors } = collect({ ...settings, maxRecvDataSegmentLength: 1024 });
    let pos = 0;
    while (pos < input.length) {
      const n = 1 + Math.floor(rnd() * 64);
      reader.push(input.subarray(pos, pos + n));
      pos += n;
    }
    delivered += pdus.length;
    failed += errors.length;
    for (const p of pdus) if (p.data.length > 1024) t.fail('a PDU over the cap was delivered');
  }
  t.ok(delivered > 0 && failed > 0, `2000 hostile streams: ${delivered} PDUs delivered, ${failed} fatal errors, no exception`);
});

t.test('text parameters', async (t) => {
  t.same(parseText(encodeText([['HeaderDigest', 'CRC32C,None'], ['MaxRecvDataSegmentLength', '65536']])), [['HeaderDigest', 'CRC32C,None'], ['MaxRecvDataSegmentLength', '65536']], 'round trip');
  t.same(parseText(Buffer.from('A=1\0\0\0\0')), [['A', '1']], 'trailing NUL padding is tolerated');
  t.throws(() => parseText(Buffer.from('A=1')), { code: 'PROTOCOL_ERROR' }, 'unterminated');
  t.throws(() => parseText(Buffer.from('novalue\0')), { code: 'PROTOCOL_ERROR' }, 'no =');
  t.throws(() => parseText(Buffer.from(`${'K'.repeat(64)}=1\0`)), { code: 'PROTOCOL_ERROR' }, 'key too long');
  t.throws(() => parseText(Buffer.from(`K=${'v'.repeat(256)}\0`)), { code: 'PROTOCOL_ERROR' }, 'value too long');
});

t.test('LUN addressing and serial numbers', async (t) => {
  for (const lun of [0, 1, 255, 256, 16383]) t.equal(decodeLun(encodeLun(lun)), lun, `LUN ${lun}`);
  t.equal(decodeLun(Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0])), -1, 'logical unit addressing is not supported');
  t.ok(snLessThan(0xffffffff, 0), 'serial arithmetic wraps');
  t.notOk(snLessThan(5, 5), 'not less than itself');
});
