import t from 'tap';
import { F, LOGOUT_REQ, LOGOUT_RSP, SCSI_RSP, TMF_REQ, TMF_RSP } from '../src/transport/fields.js';
import { OP } from '../src/transport/opcodes.js';
import { RESERVED_TAG } from '../src/transport/pdu.js';
import { TMF_RESPONSE } from '../src/scsi/types.js';
import { INITIATOR, loggedIn, SLOW_OPCODE, startTestTarget } from './session-peer.js';

t.setTimeout(60_000);

const slow = [SLOW_OPCODE, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const tur = [0, 0, 0, 0, 0, 0];

async function until(cond: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

t.test('ABORT TASK: the task gets no response, the TMF answers COMPLETE; unknown tags do not exist', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());
  const cmd = peer.scsiCommand({ cdb: slow, edtl: 0 });
  peer.send(cmd);
  t.ok(await until(() => device.slowStarted === 1), 'the slow command is running');
  peer.send(peer.tmf({ fn: TMF_REQ.ABORT_TASK, rtt: cmd.itt, refCmdSN: cmd.u32(F.CMDSN) }));
  const r = await peer.expect(OP.TASK_MGMT_RESPONSE);
  t.equal(r.u8(TMF_RSP.RESPONSE), TMF_RESPONSE.COMPLETE);
  t.equal(device.slowAborted, 1, 'the SCSI layer saw the abort signal');
  t.equal(await peer.next(300), null, 'no SCSI Response for the aborted task');
  peer.send(peer.tmf({ fn: TMF_REQ.ABORT_TASK, rtt: 0x7777 }));
  t.equal((await peer.expect(OP.TASK_MGMT_RESPONSE)).u8(TMF_RSP.RESPONSE), TMF_RESPONSE.TASK_DOES_NOT_EXIST);
  peer.send(peer.tmf({ fn: TMF_REQ.TASK_REASSIGN, rtt: 0x1 }));
  t.equal((await peer.expect(OP.TASK_MGMT_RESPONSE)).u8(TMF_RSP.RESPONSE), TMF_RESPONSE.REASSIGNMENT_NOT_SUPPORTED, 'no task reassignment at ERL 0');
  peer.send(peer.tmf({ fn: 0x55 }));
  t.equal((await peer.expect(OP.TASK_MGMT_RESPONSE)).u8(TMF_RSP.RESPONSE), TMF_RESPONSE.NOT_SUPPORTED, 'unknown function');
  // The session still works, and the aborted ITT can be reused.
  peer.send(peer.scsiCommand({ cdb: tur, edtl: 0, itt: cmd.itt }));
  t.equal((await peer.expect(OP.SCSI_RESPONSE)).u8(SCSI_RSP.STATUS), 0, 'the ITT is free again');
});

t.test('LUN RESET aborts the tasks of every session on that LUN', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const a = await loggedIn(port);
  const b = await loggedIn(port, [], { initiatorName: 'iqn.2026-11.io.esxemu:initiator2' });
  t.teardown(() => {
    a.close();
    b.close();
  });
  a.send(a.scsiCommand({ cdb: slow, edtl: 0 }));
  b.send(b.scsiCommand({ cdb: slow, edtl: 0 }));
  t.ok(await until(() => device.slowStarted === 2), 'both sessions have a task running');
  a.send(a.tmf({ fn: TMF_REQ.LOGICAL_UNIT_RESET, lun: 0 }));
  t.equal((await a.expect(OP.TASK_MGMT_RESPONSE)).u8(TMF_RSP.RESPONSE), TMF_RESPONSE.COMPLETE);
  t.equal(device.slowAborted, 2, 'both tasks were aborted');
  t.ok(device.events.includes('tmf lunReset 0'), 'the SCSI layer was told (unit attentions are its job)');
  t.equal(await b.next(300), null, 'the other initiator gets no response for its aborted task');
  a.send(a.tmf({ fn: TMF_REQ.LOGICAL_UNIT_RESET, lun: 3 }));
  t.equal((await a.expect(OP.TASK_MGMT_RESPONSE)).u8(TMF_RSP.RESPONSE), TMF_RESPONSE.LUN_DOES_NOT_EXIST, 'the SCSI layer decides LUN existence');
});

t.test('Logout closes the session: tasks aborted, response, connection closed, nexus lost', async (t) => {
  const { target, device, port } = await startTestTarget();
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());
  peer.send(peer.scsiCommand({ cdb: slow, edtl: 0 }));
  t.ok(await until(() => device.slowStarted === 1));
  peer.send(peer.logout(LOGOUT_REQ.CLOSE_CONNECTION, 9));
  t.equal((await peer.expect(OP.LOGOUT_RESPONSE)).u8(LOGOUT_RSP.RESPONSE), LOGOUT_RSP.CID_NOT_FOUND, 'closing a connection that does not exist');
  peer.send(peer.logout(LOGOUT_REQ.REMOVE_CONNECTION_FOR_RECOVERY, 0));
  t.equal((await peer.expect(OP.LOGOUT_RESPONSE)).u8(LOGOUT_RSP.RESPONSE), LOGOUT_RSP.RECOVERY_NOT_SUPPORTED, 'no connection recovery at ERL 0');
  peer.send(peer.logout());
  const r = await peer.expect(OP.LOGOUT_RESPONSE);
  t.equal(r.u8(LOGOUT_RSP.RESPONSE), LOGOUT_RSP.CLOSED_SUCCESSFULLY);
  t.ok(await peer.waitClosed(), 'the target closed the connection');
  t.equal(device.slowAborted, 1, 'the running task was aborted');
  t.equal(target.sessions().length, 0, 'the session is gone');
  t.ok(device.events.some((e) => e.startsWith(`lost ${INITIATOR}`)), 'the nexus was released');
});

t.test('NOP: pings are answered; the target pings an idle initiator and drops a dead one', async (t) => {
  const { target, port } = await startTestTarget({}, { limits: { nopIntervalMs: 150, nopTimeoutMs: 200 } });
  t.teardown(() => target.close());
  const peer = await loggedIn(port);
  t.teardown(() => peer.close());
  const ping = peer.nopOut({ data: Buffer.from('are you there') });
  peer.send(ping);
  const pong = await peer.expect(OP.NOP_IN);
  t.equal(pong.itt, ping.itt);
  t.equal(pong.u32(F.TTT), RESERVED_TAG);
  t.equal(pong.data.toString(), 'are you there');

  const theirPing = await peer.expect(OP.NOP_IN, 2000);
  t.equal(theirPing.itt, RESERVED_TAG, 'a target-initiated ping');
  t.not(theirPing.u32(F.TTT), RESERVED_TAG, 'with a transfer tag to echo');
  peer.send(peer.nopOut({ itt: RESERVED_TAG, ttt: theirPing.u32(F.TTT) }));
  const again = await peer.expect(OP.NOP_IN, 2000);
  t.equal(again.itt, RESERVED_TAG, 'answered: the connection lives and is pinged again later');
  t.ok(await peer.waitClosed(2000), 'unanswered: the connection is dropped');
  t.equal(target.sessions().length, 0);
});
