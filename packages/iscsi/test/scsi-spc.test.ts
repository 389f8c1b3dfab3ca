/**
 * Primary commands through ScsiTargetDevice.execute with real CDBs: INQUIRY (standard and VPD),
 * REPORT LUNS, REQUEST SENSE, MODE SENSE/SELECT (sense format switch, changeable check, SWP,
 * WCE), REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS, unknown opcodes.
 */
import t, { type Test } from 'tap';
import { MemoryBackstore } from '../src/backstore/memory.js';
import { ScsiTarget } from '../src/scsi/target-device.js';
import { cdb, fill, INVALID_FIELD_IN_CDB, INVALID_FIELD_IN_PARAM, INVALID_OPCODE, LBA_OUT_OF_RANGE, nexus, OK, outcome, run, sense, TARGET, WRITE_PROTECTED } from './scsi-helpers.js';

t.setTimeout(30_000);

const BLOCKS = 8192;

async function setup(t: Test) {
  const target = new ScsiTarget({ targetName: TARGET, luns: [{ lun: 0, backstore: new MemoryBackstore(BLOCKS * 512) }] });
  const n = nexus();
  target.nexusAdded(n);
  t.equal(outcome(await run(target, n, cdb.tur())), '6/29/00', 'first command after login reports POWER ON, RESET');
  return { target, n };
}

t.test('standard INQUIRY', async (t) => {
  const { target, n } = await setup(t);
  const r = await run(target, n, cdb.inquiry(false, 0, 260));
  t.equal(outcome(r), OK);
  const d = r.data!;
  t.equal(d.length, 96, 'whole standard data');
  t.equal(d[0], 0x00, 'qualifier 0, direct access');
  t.equal(d[2], 0x06, 'SPC-4');
  t.equal(d[3], 0x12, 'HiSup, response data format 2');
  t.equal(d[4], d.length - 5, 'additional length');
  t.equal(d[5] & 0x30, 0, 'TPGS 0');
  t.equal(d[7] & 0x02, 0x02, 'CmdQue');
  t.equal(d.subarray(8, 16).toString('latin1'), 'ESXEMU  ', 'vendor');
  const versions = [0, 1, 2, 3].map((i) => d.readUInt16BE(58 + 2 * i));
  t.ok(versions.includes(0x0460) && versions.includes(0x04c0), 'claims SPC-4 and SBC-3');
  for (const alloc of [0, 5, 36, 255]) t.equal((await run(target, n, cdb.inquiry(false, 0, alloc))).data!.length, Math.min(96, alloc), `allocation length ${alloc} honoured`);
  t.equal(outcome(await run(target, n, cdb.inquiry(false, 0x80))), INVALID_FIELD_IN_CDB, 'EVPD=0 with a page code');
  t.equal(outcome(await run(target, n, cdb.inquiry(true, 0x99))), INVALID_FIELD_IN_CDB, 'unsupported VPD page');
});

t.test('VPD pages 00, 80, 83, B0, B1, B2', async (t) => {
  const { target, n } = await setup(t);
  const sup = (await run(target, n, cdb.inquiry(true, 0x00))).data!;
  const pages = [...sup.subarray(4, 4 + sup.readUInt16BE(2))];
  t.same(pages, [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2], 'supported pages');
  for (const p of pages) {
    const d = (await run(target, n, cdb.inquiry(true, p))).data!;
    t.equal(d[1], p, `page ${p.toString(16)} readable`);
    t.equal(d.readUInt16BE(2), d.length - 4, `page ${p.toString(16)} length matches`);
  }
  const serial = (await run(target, n, cdb.inquiry(true, 0x80))).data!;
  t.match(serial.subarray(4).toString('latin1'), /^[0-9a-f]{16}$/, 'unit serial number');

  const id = (await run(target, n, cdb.inquiry(true, 0x83))).data!;
  const designators: { type: number; assoc: number; value: Buffer }[] = [];
  for (let p = 4; p < id.length; p += 4 + id[p + 3]!) designators.push({ type: id[p + 1]! & 0x0f, assoc: (id[p + 1]! >> 4) & 3, value: id.subarray(p + 4, p + 4 + id[p + 3]!) });
  const naa = designators.find((d) => d.type === 3)!;
  t.equal(naa.value.length, 8, 'NAA designator');
  t.equal(naa.value[0]! >> 4, 3, 'NAA-3 (locally assigned)');
  t.ok(designators.find((d) => d.type === 1)?.value.toString('latin1').startsWith('ESXEMU  '), 'T10 vendor ID designator');
  t.equal(designators.find((d) => d.type === 4 && d.assoc === 1)?.value.readUInt16BE(2), 1, 'relative target port = TPGT');
  t.ok(designators.find((d) => d.type === 8 && d.assoc === 1)?.value.toString('utf8').startsWith(`${TARGET},t,0x0001`), 'target port name');

  const bl = (await run(target, n, cdb.inquiry(true, 0xb0))).data!;
  t.equal(bl.readUInt16BE(2), 0x3c, 'block limits page length 3Ch (SBC-3)');
  t.equal(bl[4]! & 1, 1, 'WSNZ');
  t.equal(bl[5], 255, 'max compare and write length');
  t.equal(bl.readUInt32BE(8), (8 * 1024 * 1024) / 512, 'max transfer length');
  t.ok(bl.readUInt32BE(20) > 0 && bl.readUInt32BE(24) > 0, 'max unmap LBA and descriptor counts');
  t.ok(bl.readBigUInt64BE(36) > 0n, 'max write same length');

  const b1 = (await run(target, n, cdb.inquiry(true, 0xb1))).data!;
  t.equal(b1.readUInt16BE(4), 1, 'non-rotating medium');
  const b2 = (await run(target, n, cdb.inquiry(true, 0xb2))).data!;
  t.equal(b2[5]! & 0xe4, 0xe4, 'LBPU, LBPWS, LBPWS10, LBPRZ');
  t.equal(b2[6]! & 0x07, 2, 'thin provisioned');

  const rc16 = (await run(target, n, cdb.readCapacity16())).data!;
  t.equal(Number(rc16.readBigUInt64BE(0)), BLOCKS - 1, 'READ CAPACITY(16) last LBA');
  t.equal(rc16[14]! & 0xc0, 0xc0, 'LBPME and LBPRZ');
  const rc10 = (await run(target, n, cdb.readCapacity10())).data!;
  t.same([rc10.readUInt32BE(0), rc10.readUInt32BE(4)], [BLOCKS - 1, 512], 'READ CAPACITY(10)');
  for (let alloc = 0; alloc < 16; alloc++) t.equal((await run(target, n, cdb.readCapacity16(alloc))).data!.length, alloc, `READ CAPACITY(16) alloc ${alloc}`);
});

t.test('REQUEST SENSE and unknown opcodes', async (t) => {
  const { target, n } = await setup(t);
  const r = await run(target, n, cdb.requestSense());
  t.equal(outcome(r), OK);
  t.same([r.data![0], r.data![2]! & 0x0f, r.data![12]], [0x70, 0, 0], 'NO SENSE when nothing is pending');
  t.equal((await run(target, n, cdb.requestSense(252, true))).data![0], 0x72, 'DESC=1 gives descriptor format');
  t.equal(outcome(await run(target, n, Buffer.from([0xc7, 0, 0, 0, 0, 0]))), INVALID_OPCODE, 'unknown opcode');
  t.equal(outcome(await run(target, n, Buffer.from([0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))), INVALID_FIELD_IN_CDB, 'unknown service action');
  const withNaca = cdb.tur();
  withNaca[5] = 0x04;
  t.equal(outcome(await run(target, n, withNaca)), INVALID_FIELD_IN_CDB, 'NACA is not supported');
});

t.test('MODE SENSE: pages, page control, block descriptors', async (t) => {
  const { target, n } = await setup(t);
  const all = (await run(target, n, cdb.modeSense6(0x3f))).data!;
  t.equal(all[0], all.length - 1, 'mode data length');
  t.equal(all[2], 0x10, 'DPOFUA, not write protected');
  t.equal(all[3], 8, 'a block descriptor');
  t.equal(all.readUInt32BE(4), BLOCKS, 'descriptor: number of blocks');
  t.equal(all.readUIntBE(9, 3), 512, 'descriptor: block length');
  const codes: number[] = [];
  for (let p = 12; p < all.length; p += 2 + all[p + 1]!) codes.push(all[p]! & 0x3f);
  t.same(codes, [0x01, 0x08, 0x0a, 0x1c], 'all pages');
  const ctl = (await run(target, n, cdb.modeSense6(0x0a, 0, 255, true))).data!;
  t.same([ctl[3], ctl[4], ctl[5]], [0, 0x0a, 0x0a], 'DBD: control page only');
  const ch = (await run(target, n, cdb.modeSense6(0x0a, 1, 255, true))).data!;
  t.equal(ch[6], 0x04, 'D_SENSE changeable');
  t.equal(ch[8], 0x08, 'SWP changeable');
  t.equal(outcome(await run(target, n, cdb.modeSense6(0x0a, 3))), '5/39/00', 'saved values are not supported');
  t.equal(outcome(await run(target, n, cdb.modeSense6(0x0a, 0, 255, false, 1))), INVALID_FIELD_IN_CDB, 'no subpages');
  t.equal(outcome(await run(target, n, cdb.modeSense6(0x19))), INVALID_FIELD_IN_CDB, 'unknown page');
  t.equal((await run(target, n, cdb.modeSense6(0x3f, 0, 4))).data!.length, 4, 'allocation length 4');
  const ten = (await run(target, n, cdb.modeSense10(0x08, 0, 1024, false, true))).data!;
  t.equal(ten.readUInt16BE(0), ten.length - 2, 'MODE SENSE(10) mode data length');
  t.equal(ten.readUInt16BE(6), 16, 'long LBA block descriptor');
  t.equal(ten[8 + 16 + 2]! & 0x04, 0x04, 'WCE set by default');
});

t.test('MODE SELECT: D_SENSE switches the sense format; non-changeable fields are refused', async (t) => {
  const { target, n } = await setup(t);
  const n2 = nexus('iqn.2026-01.io.test:host2');
  target.nexusAdded(n2);
  await run(target, n2, cdb.tur());
  const oob = () => run(target, n, cdb.read10(BLOCKS, 1));
  t.equal(sense(await oob())!.descriptor, false, 'fixed format by default');
  const page = (await run(target, n, cdb.modeSense6(0x0a, 0, 255, true))).data!.subarray(4);
  const dsense = Buffer.from(page);
  dsense[2]! |= 0x04;
  const list = Buffer.concat([Buffer.alloc(4), dsense]);
  t.equal(outcome(await run(target, n, cdb.modeSelect6(list.length), { dataOut: list })), OK, 'MODE SELECT D_SENSE=1');
  const r = await oob();
  t.equal(outcome(r), LBA_OUT_OF_RANGE, 'same condition');
  t.equal(sense(r)!.descriptor, true, 'now in descriptor format');
  t.equal(outcome(await run(target, n2, cdb.tur())), '6/2a/01', 'the other nexus is told MODE PARAMETERS CHANGED');
  t.equal(outcome(await run(target, n2, cdb.tur())), OK, 'once');

  const bad = Buffer.from(dsense);
  bad[3] = 0x00; // QUEUE ALGORITHM MODIFIER is not changeable
  const badList = Buffer.concat([Buffer.alloc(4), bad]);
  const rb = await run(target, n, cdb.modeSelect6(badList.length), { dataOut: badList });
  t.equal(outcome(rb), INVALID_FIELD_IN_PARAM, 'non-changeable field');
  t.same(sense(rb)!.field, { cdb: false, byte: 4 + 3, bit: 4 }, 'field pointer at the offending bit');
  t.equal(outcome(await run(target, n, cdb.modeSelect6(badList.length, true), { dataOut: badList })), INVALID_FIELD_IN_CDB, 'SP=1 refused');
  const short = Buffer.concat([Buffer.alloc(4), dsense.subarray(0, 6)]);
  t.equal(outcome(await run(target, n, cdb.modeSelect6(short.length), { dataOut: short })), '5/1a/00', 'truncated page');
  dsense[2]! &= ~0x04;
  const back = Buffer.concat([Buffer.alloc(8), dsense]);
  t.equal(outcome(await run(target, n, cdb.modeSelect10(back.length), { dataOut: back })), OK, 'MODE SELECT(10) D_SENSE=0');
  t.equal(sense(await oob())!.descriptor, false, 'fixed format again');
});

t.test('MODE SELECT: SWP write-protects the unit; WCE=0 still writes', async (t) => {
  const { target, n } = await setup(t);
  const page = Buffer.from((await run(target, n, cdb.modeSense6(0x0a, 0, 255, true))).data!.subarray(4));
  page[4]! |= 0x08;
  t.equal(outcome(await run(target, n, cdb.modeSelect6(4 + page.length), { dataOut: Buffer.concat([Buffer.alloc(4), page]) })), OK, 'SWP=1');
  t.equal((await run(target, n, cdb.modeSense6(0x3f))).data![2]! & 0x80, 0x80, 'WP in the device-specific parameter');
  t.equal(outcome(await run(target, n, cdb.write10(0, 1), { dataOut: fill(1, 7) })), WRITE_PROTECTED, 'writes refused');
  t.equal(outcome(await run(target, n, cdb.read10(0, 1))), OK, 'reads allowed');
  page[4]! &= ~0x08;
  await run(target, n, cdb.modeSelect6(4 + page.length), { dataOut: Buffer.concat([Buffer.alloc(4), page]) });
  const caching = Buffer.from((await run(target, n, cdb.modeSense6(0x08, 0, 255, true))).data!.subarray(4));
  caching[2]! &= ~0x04;
  t.equal(outcome(await run(target, n, cdb.modeSelect6(4 + caching.length), { dataOut: Buffer.concat([Buffer.alloc(4), caching]) })), OK, 'WCE=0');
  t.equal(outcome(await run(target, n, cdb.write10(0, 1), { dataOut: fill(1, 7) })), OK, 'write-through write');
  t.equal((await run(target, n, cdb.read10(0, 1))).data![0], 7);
});

t.test('REPORT LUNS', async (t) => {
  const { target, n } = await setup(t);
  const r = (await run(target, n, cdb.reportLuns())).data!;
  t.equal(r.readUInt32BE(0), 8, 'one LUN');
  t.same([...r.subarray(8, 16)], [0, 0, 0, 0, 0, 0, 0, 0], 'LUN 0');
  t.equal(outcome(await run(target, n, cdb.reportLuns(8))), INVALID_FIELD_IN_CDB, 'allocation length below 16');
  t.equal(outcome(await run(target, n, cdb.reportLuns(4096, 7))), INVALID_FIELD_IN_CDB, 'bad SELECT REPORT');
  t.equal((await run(target, n, cdb.reportLuns(4096, 1))).data!.readUInt32BE(0), 0, 'no well-known LUNs');
});

t.test('REPORT SUPPORTED OPERATION CODES and TASK MANAGEMENT FUNCTIONS', async (t) => {
  const { target, n } = await setup(t);
  const all = (await run(target, n, cdb.rsoc(0))).data!;
  const len = all.readUInt32BE(0);
  const descs: { op: number; sa: number; servactv: boolean; cdbLen: number }[] = [];
  for (let p = 4; p < 4 + len; p += 8) descs.push({ op: all[p]!, sa: all.readUInt16BE(p + 2), servactv: (all[p + 5]! & 1) === 1, cdbLen: all.readUInt16BE(p + 6) });
  for (const op of [0x00, 0x12, 0x28, 0x2a, 0x89, 0x93, 0x42, 0x35, 0x8b, 0xa0]) t.ok(descs.some((d) => d.op === op), `opcode ${op.toString(16)} listed`);
  t.ok(descs.some((d) => d.op === 0x9e && d.sa === 0x12 && d.servactv), 'GET LBA STATUS with its service action');
  t.ok(descs.filter((d) => !d.servactv).every((d) => d.sa === 0), 'SA zero when SERVACTV clear');
  const withTimeouts = (await run(target, n, cdb.rsoc(0, 0, 0, true))).data!;
  t.equal(withTimeouts.readUInt32BE(0), 20 * descs.length, 'RCTD adds a 12-byte timeouts descriptor each');
  const one = (await run(target, n, cdb.rsoc(1, 0x28))).data!;
  t.equal(one[1]! & 0x07, 3, 'READ(10) supported');
  t.equal(one.readUInt16BE(2), 10, 'CDB size');
  t.same([one[4], one[5]! & 0x18], [0x28, 0x18], 'usage data: opcode, DPO and FUA');
  t.equal(outcome(await run(target, n, cdb.rsoc(1, 0x9e))), INVALID_FIELD_IN_CDB, 'one-command form for an opcode with service actions');
  t.equal(outcome(await run(target, n, cdb.rsoc(2, 0x28))), INVALID_FIELD_IN_CDB, 'service-action form for an opcode without');
  const sa = (await run(target, n, cdb.rsoc(2, 0x9e, 0x10))).data!;
  t.same([sa[1]! & 7, sa[4], sa[5]], [3, 0x9e, 0x10], 'READ CAPACITY(16) by service action');
  t.equal((await run(target, n, cdb.rsoc(1, 0xc7))).data![1]! & 7, 1, 'unknown opcode reported as not supported');
  for (const d of descs) {
    const r = await run(target, n, cdb.rsoc(d.servactv ? 2 : 1, d.op, d.sa));
    t.equal(r.data![4], d.op, `usage data of ${d.op.toString(16)}/${d.sa.toString(16)} starts with the opcode`);
  }
  const tmf = (await run(target, n, cdb.rstmf(4))).data!;
  t.equal(tmf[0]! & 0xda, 0xda, 'abort task, abort task set, clear task set, LU reset, target reset');
  t.equal((await run(target, n, cdb.rstmf(16, true))).data!.length, 16, 'REPD form');
});
