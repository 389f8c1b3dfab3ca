/** Sense data builders: fixed (70h) and descriptor (72h) formats round-trip through the parser. */
import t from 'tap';
import { ASC, buildSense, descriptorSense, fixedSense, parseSense, senseInfo, SENSE_KEY } from '../src/scsi/sense.js';

t.test('fixed format: key, ASC/ASCQ, INFORMATION, field pointer', async (t) => {
  const b = fixedSense(senseInfo(SENSE_KEY.ILLEGAL_REQUEST, ASC.INVALID_FIELD_IN_CDB, { field: { cdb: true, byte: 2, bit: 5 }, information: 0x1234 }));
  t.equal(b.length, 18, '18 bytes');
  t.equal(b[0], 0xf0, 'VALID + response code 70h');
  t.equal(b[2], 0x05, 'sense key');
  t.equal(b[7], 10, 'additional length');
  t.equal(b.readUInt32BE(3), 0x1234, 'INFORMATION');
  t.equal(b[12], 0x24, 'ASC');
  t.equal(b[15], 0x80 | 0x40 | 0x08 | 5, 'SKSV, C/D, BPV, bit pointer');
  t.equal(b.readUInt16BE(16), 2, 'field pointer');
  t.same(parseSense(b), { descriptor: false, key: 5, asc: 0x24, ascq: 0, information: 0x1234, field: { cdb: true, byte: 2, bit: 5 } });
});

t.test('descriptor format: information, sense-key specific and ILI descriptors', async (t) => {
  const s = senseInfo(SENSE_KEY.MISCOMPARE, ASC.MISCOMPARE_DURING_VERIFY, { information: 513, ili: true, field: { cdb: false, byte: 9 } });
  const b = descriptorSense(s);
  t.equal(b[0], 0x72, 'response code 72h');
  t.equal(b[1], 0x0e, 'sense key');
  t.equal(b[2], 0x1d, 'ASC');
  t.equal(b[7], b.length - 8, 'additional length covers the descriptors');
  t.equal(b[8], 0x00, 'first descriptor is INFORMATION');
  t.equal(Number(b.readBigUInt64BE(12)), 513, 'offset in INFORMATION');
  t.same(parseSense(b), { descriptor: true, key: 0xe, asc: 0x1d, ascq: 0, information: 513, ili: true, field: { cdb: false, byte: 9 } });
});

t.test('buildSense picks the format', async (t) => {
  const s = senseInfo(SENSE_KEY.UNIT_ATTENTION, ASC.POWER_ON_RESET);
  t.equal(buildSense(s, false)[0], 0x70);
  t.equal(buildSense(s, true)[0], 0x72);
  t.equal(buildSense(s, true).length, 8, 'no descriptors when nothing extra');
});
