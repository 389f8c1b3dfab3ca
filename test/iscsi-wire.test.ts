/**
 * On the wire, judged by a decoder no one here wrote: tshark captures the loopback traffic of
 * esxemu's iSCSI target process while real third-party initiators (libiscsi's iscsi-ls,
 * iscsi-inq, iscsi-readcapacity16, iscsi-perf) and the hosts' own initiator (discovery, a 1 MiB
 * write that needs R2T, reads, COMPARE AND WRITE, flush, task management, NOP pings, logout; one
 * session with CRC32C header and data digests) talk to it. Then tshark reads the capture back
 * with the iSCSI dissector forced on the port and must decode every PDU: no malformed frame, no
 * error-level expert info, no TCP payload left undecoded, every opcode of the conversation
 * present, and in the digest session every header and data digest present and correct.
 *
 * Wireshark's iSCSI dissector detects digests per TCP conversation by itself (in tshark 4.0 the
 * old iscsi.enable_*_digests preferences are obsolete), so one capture can hold sessions with and
 * without digests; the test checks that the detection happened where it should and nowhere else.
 * `-o iscsi.bogus_pdu_filter:FALSE` keeps the dissector from silently skipping PDUs it finds
 * implausible, and two-pass reading (-2) knows, for every TCP segment, the PDU it belongs to.
 *
 * Skips when tshark (apt-get install tshark) or libiscsi-bin is absent; capturing on `lo`
 * needs root (or dumpcap's capabilities).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import t, { type Test } from 'tap';
import { IscsiInitiator } from '@esxemu/iscsi';
import { startEsxemuTarget, type EsxemuTarget } from '@esxemu/scripts/peers/esxemu-target.js';
import { pattern } from './helpers/pattern.js';

t.setTimeout(120_000);

const TSHARK = '/usr/bin/tshark';
const LIBISCSI_TOOLS = ['/usr/bin/iscsi-ls', '/usr/bin/iscsi-inq', '/usr/bin/iscsi-readcapacity16', '/usr/bin/iscsi-perf'];
const PLAIN_NAME = 'iqn.2026-11.io.esxemu:wire-plain';
const DIGEST_NAME = 'iqn.2026-11.io.esxemu:wire-digest';
const DISCOVERY_NAME = 'iqn.2026-11.io.esxemu:wire-discovery';

const OPCODES: Record<number, string> = {
  0x00: 'NOP-Out',
  0x01: 'SCSI Command',
  0x02: 'Task Management Request',
  0x03: 'Login Request',
  0x04: 'Text Request',
  0x05: 'SCSI Data-Out',
  0x06: 'Logout Request',
  0x20: 'NOP-In',
  0x21: 'SCSI Response',
  0x22: 'Task Management Response',
  0x23: 'Login Response',
  0x24: 'Text Response',
  0x25: 'SCSI Data-In',
  0x26: 'Logout Response',
  0x31: 'R2T',
};

function skipReason(): string | false {
  if (!existsSync(TSHARK)) return `${TSHARK} is not installed (apt-get install tshark)`;
  const missing = LIBISCSI_TOOLS.filter((p) => !existsSync(p));
  if (missing.length) return `libiscsi-bin is not installed (${missing.join(', ')} missing)`;
  return false;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A running `tshark -w` capture: started, and known to be capturing, within a bound. */
class Capture {
  private readonly child: ChildProcess;
  private stderr = '';
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;
  private dumpcapPids: number[] = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      if (this.stderr.length < 64 * 1024) this.stderr += s;
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code) => {
        this.exitCode = code;
        resolve(code);
      });
      child.once('error', (err) => {
        this.stderr += `\nspawn error: ${err.message}`;
        this.exitCode = null;
        resolve(null);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get log(): string {
    return this.stderr;
  }

  static async start(port: number, file: string, timeoutMs: number): Promise<Capture> {
    // -B: a 64 MiB kernel buffer so that iscsi-perf at full speed does not make the capture drop.
    const child = spawn(TSHARK, ['-i', 'lo', '-B', '64', '-f', `tcp port ${port}`, '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    const c = new Capture(child);
    const deadline = Date.now() + timeoutMs;
    while (!/Capturing on/.test(c.stderr)) {
      if (c.exitCode !== undefined) throw new Error(`tshark exited (${c.exitCode}) before capturing: ${c.stderr}`);
      if (Date.now() > deadline) {
        c.dumpcapPids = childPids(child.pid!);
        c.kill();
        throw new Error(`tshark did not start capturing within ${timeoutMs} ms: ${c.stderr}`);
      }
      await sleep(50);
    }
    c.dumpcapPids = childPids(child.pid!);
    // "Capturing on" is printed once dumpcap has the interface open; a short margin for the filter.
    await sleep(300);
    return c;
  }

  /** SIGINT (tshark flushes the file and reports its counts), SIGKILL if it does not exit in time. */
  async stop(timeoutMs: number): Promise<{ code: number | null; log: string }> {
    if (this.exitCode === undefined && this.child.pid) {
      try {
        process.kill(this.child.pid, 'SIGINT');
      } catch {
        /* gone */
      }
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), timeoutMs);
    });
    const code = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (code === 'timeout') {
      this.kill();
      throw new Error(`tshark did not stop within ${timeoutMs} ms after SIGINT: ${this.stderr}`);
    }
    return { code, log: this.stderr };
  }

  /**
   * Hard stop (teardown after a failure): tshark's dumpcap child first, by its pid, since it
   * outlives a SIGKILLed tshark and would capture on; then tshark.
   */
  kill(): void {
    for (const pid of this.dumpcapPids) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('dumpcap')) process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (this.exitCode === undefined && this.child.pid && pidAlive(this.child.pid)) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

/** Direct children of a process (Linux /proc). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Run a libiscsi tool against the target, bounded; its output for the test log. */
async function libiscsi(tool: string, args: string[], timeoutMs = 20_000): Promise<{ exitCode: number; out: string }> {
  const r = await execa(tool, args, { reject: false, timeout: timeoutMs, stdin: 'ignore', all: true });
  return { exitCode: r.exitCode ?? -1, out: String(r.all ?? '') };
}

interface CaptureReader {
  args: string[];
}

/** tshark reading the capture with the iSCSI dissector forced on the target's port. */
function reader(pcap: string, port: number): CaptureReader {
  return {
    args: [
      // Two passes: reassembly results (tcp.reassembled_in) are known for every frame.
      '-2',
      '-r',
      pcap,
      '-d',
      `tcp.port==${port},iscsi`,
      // Do not let the dissector silently skip PDUs it finds implausible: decode (or flag) them.
      '-o',
      'iscsi.bogus_pdu_filter:FALSE',
      '-o',
      'tcp.desegment_tcp_streams:TRUE',
      // Loopback under load reorders and retransmits now and then: reassemble across that.
      '-o',
      'tcp.reassemble_out_of_order:TRUE',
      '-o',
      'iscsi.desegment_iscsi_messages:TRUE',
    ],
  };
}

async function tshark(d: CaptureReader, extra: string[]): Promise<string> {
  const r = await execa(TSHARK, [...d.args, ...extra], { reject: false, timeout: 60_000, stdin: 'ignore', maxBuffer: 256 * 1024 * 1024 });
  if (r.exitCode !== 0) throw new Error(`tshark ${extra.join(' ')} exited ${r.exitCode}: ${String(r.stderr).slice(-1000)}`);
  return String(r.stdout);
}

interface FrameRow {
  frame: string;
  stream: string;
  tcpLen: number;
  /** iSCSI opcodes of the PDUs that end in this frame (a frame may carry several). */
  opcodes: number[];
  reassembledIn: boolean;
  /** A TCP-level copy or probe (retransmission, zero-window probe, keep-alive): its bytes are sent again. */
  tcpArtifact: boolean;
  /** tshark saw a gap in the sequence space: the capture missed a segment. */
  lostSegment: boolean;
  /** A header or data digest was decoded in this frame. */
  digest: boolean;
  keyValues: string[];
}

/** Every frame of the capture with the fields the checks need (one tshark pass). */
async function frameTable(d: CaptureReader): Promise<FrameRow[]> {
  const fields = [
    'frame.number',
    'tcp.stream',
    'tcp.len',
    'iscsi.opcode',
    'tcp.reassembled_in',
    'tcp.analysis.retransmission',
    'tcp.analysis.spurious_retransmission',
    'tcp.analysis.fast_retransmission',
    'tcp.analysis.zero_window_probe',
    'tcp.analysis.keep_alive',
    'tcp.analysis.lost_segment',
    'tcp.analysis.ack_lost_segment',
    'iscsi.headerdigest32',
    'iscsi.datadigest32',
    'iscsi.keyvalue',
  ];
  // Key=value pairs may contain commas (HeaderDigest=None,CRC32C): aggregate with '|'.
  const out = await tshark(d, ['-T', 'fields', '-E', 'separator=/t', '-E', 'aggregator=|', ...fields.flatMap((f) => ['-e', f])]);
  const list = (v: string | undefined): string[] => (v ? v.split('|').filter(Boolean) : []);
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const c = l.split('\t');
      return {
        frame: c[0] ?? '',
        stream: c[1] ?? '',
        tcpLen: Number(c[2] || 0),
        opcodes: list(c[3]).map(Number),
        reassembledIn: Boolean(c[4]),
        tcpArtifact: Boolean(c[5] || c[6] || c[7] || c[8] || c[9]),
        lostSegment: Boolean(c[10] || c[11]),
        digest: Boolean(c[12] || c[13]),
        keyValues: list(c[14]),
      };
    });
}

interface PduDigests {
  frame: string;
  opcode: number;
  dataSegmentLength: number;
  header: 'good' | 'bad' | null;
  data: 'good' | 'bad' | null;
}

/** Parse `-O iscsi -V`: one entry per iSCSI PDU with its digests as the dissector judged them. */
function parseDigestTree(text: string): PduDigests[] {
  const pdus: PduDigests[] = [];
  let frame = '?';
  let cur: PduDigests | null = null;
  for (const line of text.split('\n')) {
    const f = /^Frame (\d+):/.exec(line);
    if (f) {
      frame = f[1]!;
      cur = null;
      continue;
    }
    const op = /= Opcode: .*\((0x[0-9a-f]+)\)\s*$/.exec(line);
    if (op) {
      cur = { frame, opcode: Number(op[1]), dataSegmentLength: 0, header: null, data: null };
      pdus.push(cur);
      continue;
    }
    if (!cur) continue;
    const len = /^\s+DataSegmentLength: (\d+)/.exec(line);
    if (len) cur.dataSegmentLength = Number(len[1]);
    const hd = /^\s+HeaderDigest: 0x[0-9a-f]+ \((Good|Bad) CRC32/.exec(line);
    if (hd) cur.header = hd[1] === 'Good' ? 'good' : 'bad';
    const dd = /^\s+DataDigest: 0x[0-9a-f]+ \((Good|Bad) CRC32/.exec(line);
    if (dd) cur.data = dd[1] === 'Good' ? 'good' : 'bad';
  }
  return pdus;
}


/** What the hosts' initiator does on one session: every data path the target offers. */
async function driveOwnInitiator(t: Test, target: EsxemuTarget, initiatorName: string, digests: boolean, lbaBase: number): Promise<void> {
  const s = await IscsiInitiator.connect({
    portal: target.portal,
    targetName: target.targetName,
    initiatorName,
    headerDigest: digests ? ['CRC32C'] : ['None'],
    dataDigest: digests ? ['CRC32C'] : ['None'],
    // Short NOP interval: the idle pause below makes the initiator ping (NOP-Out / NOP-In).
    timeouts: { nopIntervalMs: 150, nopTimeoutMs: 5_000, commandMs: 15_000, recoveryMs: 5_000 },
  });
  try {
    t.equal(s.params?.headerDigest, digests, `${initiatorName}: HeaderDigest ${digests ? 'CRC32C' : 'None'} negotiated`);
    t.equal(s.params?.dataDigest, digests, `${initiatorName}: DataDigest ${digests ? 'CRC32C' : 'None'} negotiated`);
    const cap = await s.readCapacity(target.lun);
    t.ok(cap.ok, `${initiatorName}: READ CAPACITY(16)`);
    const inq = await s.inquiry(target.lun);
    t.ok(inq.ok, `${initiatorName}: INQUIRY`);
    const firstBurst = s.params?.firstBurstLength ?? 0;
    const data = pattern(1024 * 1024, lbaBase + 1);
    t.ok(firstBurst < data.length, `${initiatorName}: FirstBurstLength ${firstBurst} < 1 MiB, so the write needs R2T`);
    const w = await s.write(target.lun, lbaBase, data);
    t.ok(w.ok, `${initiatorName}: 1 MiB WRITE(16)`);
    const r = await s.read(target.lun, lbaBase, data.length / 512);
    t.ok(r.ok && r.value.equals(data), `${initiatorName}: 1 MiB READ(16) returns what was written`);
    const small = await s.read(target.lun, lbaBase + 7, 3);
    t.ok(small.ok && small.value.equals(data.subarray(7 * 512, 10 * 512)), `${initiatorName}: a 3-block read at an odd LBA`);
    const before = data.subarray(0, 512);
    const lock = Buffer.alloc(512, digests ? 0xd1 : 0xa1);
    const caw = await s.compareAndWrite(target.lun, lbaBase, before, lock);
    t.ok(caw.ok && caw.value.match, `${initiatorName}: COMPARE AND WRITE matches and writes`);
    const caw2 = await s.compareAndWrite(target.lun, lbaBase, before, lock);
    t.ok(caw2.ok && !caw2.value.match, `${initiatorName}: a second COMPARE AND WRITE with the stale image miscompares`);
    const f = await s.flush(target.lun);
    t.ok(f.ok, `${initiatorName}: SYNCHRONIZE CACHE(16)`);
    t.equal(await s.abortTaskSet(target.lun), 0, `${initiatorName}: ABORT TASK SET (nothing to abort) completes`);
    const pingsBefore = Number((s.stats()['session'] as { pings?: number } | null)?.pings ?? 0);
    await sleep(600);
    const pingsAfter = Number((s.stats()['session'] as { pings?: number } | null)?.pings ?? 0);
    t.ok(pingsAfter > pingsBefore, `${initiatorName}: idle session pinged the target (${pingsAfter - pingsBefore} NOP-Outs)`);
  } finally {
    await s.close();
  }
}

t.test('tshark decodes esxemu iSCSI traffic without a malformed PDU', { skip: skipReason() }, async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'esxemu-wire-'));
  let target: EsxemuTarget | null = null;
  let capture: Capture | null = null;
  t.teardown(async () => {
    // After a failure: SIGINT first (tshark stops and reaps dumpcap), SIGKILL both if it hangs.
    if (capture) await capture.stop(5_000).catch(() => undefined);
    if (target) {
      await target.stop().catch(() => undefined);
      if (pidAlive(target.pid)) process.kill(target.pid, 'SIGKILL');
    }
    rmSync(work, { recursive: true, force: true });
  });

  target = await startEsxemuTarget({ dir: join(work, 'target'), sizeMiB: 64 });
  const port = Number(target.portal.split(':').pop());
  t.ok(port > 0, `target process ${target.pid} listens on ${target.portal}`);
  const pcap = join(work, 'iscsi.pcap');
  capture = await Capture.start(port, pcap, 20_000);

  // Third-party initiators.
  const portalUrl = `iscsi://${target.portal}`;
  const ls = await libiscsi('/usr/bin/iscsi-ls', ['-i', 'iqn.2026-11.io.esxemu:wire-ls', '-s', portalUrl]);
  t.equal(ls.exitCode, 0, `iscsi-ls -s exits 0`);
  t.match(ls.out, new RegExp(`Target:${target.targetName.replace(/\./g, '\\.')}`), 'iscsi-ls discovers the target');
  t.match(ls.out, /Lun:0\s+Type:DIRECT_ACCESS/, 'iscsi-ls sees LUN 0 as a disk');
  const inq = await libiscsi('/usr/bin/iscsi-inq', ['-i', 'iqn.2026-11.io.esxemu:wire-inq', target.url]);
  t.equal(inq.exitCode, 0, 'iscsi-inq exits 0');
  t.match(inq.out, /Peripheral Device Type:DIRECT_ACCESS/, 'iscsi-inq reads the standard INQUIRY');
  const rc = await libiscsi('/usr/bin/iscsi-readcapacity16', ['-i', 'iqn.2026-11.io.esxemu:wire-rc16', target.url]);
  t.equal(rc.exitCode, 0, 'iscsi-readcapacity16 exits 0');
  t.match(rc.out, /Total size:67108864/, 'iscsi-readcapacity16 reports 64 MiB');
  const perf = await libiscsi('/usr/bin/iscsi-perf', ['-i', 'iqn.2026-11.io.esxemu:wire-perf', '-t', '2', target.url], 30_000);
  t.equal(perf.exitCode, 0, `iscsi-perf -t 2 exits 0 (${perf.out.trim().split(/[\r\n]+/).slice(-2).join(' | ')})`);

  // The hosts' initiator: discovery, then a session without digests and one with both digests.
  const discovered = await IscsiInitiator.discover({ portal: target.portal, initiatorName: DISCOVERY_NAME });
  t.ok(
    discovered.some((d) => d.name === target!.targetName),
    'our initiator discovers the target (SendTargets)',
  );
  await t.test('own initiator, no digests', (t) => driveOwnInitiator(t, target!, PLAIN_NAME, false, 32768));
  await t.test('own initiator, CRC32C header and data digests', (t) => driveOwnInitiator(t, target!, DIGEST_NAME, true, 40960));

  // dumpcap hands packets over in blocks (libpcap TPACKET_V3, a 250 ms block timeout) and stops
  // at SIGINT without draining the ring: give the last block (the logouts) time to be written.
  await sleep(1500);
  const stopped = await capture.stop(15_000);
  capture = null;
  t.equal(stopped.code, 0, 'tshark stopped cleanly');
  const dropped = /(\d+) packets? dropped/.exec(stopped.log);
  t.ok(!dropped || Number(dropped[1]) === 0, `the capture lost no packet${dropped ? ` (${dropped[0]})` : ''}`);
  t.comment(stopped.log.trim().split('\n').slice(-2).join(' / '));

  const d = reader(pcap, port);

  // 1. Nothing malformed, no error-level expert info anywhere in the capture.
  const bad = await tshark(d, ['-Y', '_ws.malformed || _ws.expert.severity == error']);
  if (bad.trim()) {
    t.comment('frames tshark flags as malformed or in error:');
    t.comment(bad.trim().split('\n').slice(0, 50).join('\n'));
    const detail = await tshark(d, ['-Y', '_ws.malformed || _ws.expert.severity == error', '-T', 'fields', '-e', 'frame.number', '-e', '_ws.expert.message']);
    t.comment(detail.trim().split('\n').slice(0, 50).join('\n'));
  }
  t.equal(bad.trim().split('\n').filter(Boolean).length, 0, 'zero frames matching _ws.malformed || _ws.expert.severity == error');

  // One pass over every frame for the checks below.
  const frames = await frameTable(d);
  const framesWithOps = frames.filter((f) => f.opcodes.length > 0);

  // 2. The capture is complete, and every byte of TCP payload belongs to a decoded iSCSI PDU
  // (TCP-level copies aside: loopback under load does retransmit, and tshark flags those frames).
  const gaps = frames.filter((f) => f.lostSegment);
  t.equal(gaps.length, 0, `no segment missing from the capture${gaps.length ? ` (gaps before frames ${gaps.slice(0, 20).map((f) => f.frame).join(', ')})` : ''}`);
  const undecoded = frames.filter((f) => f.tcpLen > 0 && f.opcodes.length === 0 && !f.reassembledIn && !f.tcpArtifact);
  if (undecoded.length) {
    const list = undecoded.slice(0, 30).map((f) => f.frame);
    t.comment(`TCP payload not decoded as iSCSI:\n${await tshark(d, ['-Y', `frame.number in {${list.join(' ')}}`])}`);
    if (process.env['ESXEMU_KEEP_PCAP']) copyFileSync(pcap, process.env['ESXEMU_KEEP_PCAP']);
  }
  t.equal(undecoded.length, 0, 'no TCP payload left undecoded');

  // 3. The opcodes of the whole conversation, counted per PDU (a frame may carry several).
  const counts = new Map<number, number>();
  const perStream = new Map<string, Map<number, number>>();
  let pdus = 0;
  for (const f of framesWithOps) {
    for (const code of f.opcodes) {
      pdus++;
      counts.set(code, (counts.get(code) ?? 0) + 1);
      const m = perStream.get(f.stream) ?? new Map<number, number>();
      m.set(code, (m.get(code) ?? 0) + 1);
      perStream.set(f.stream, m);
    }
  }
  t.comment(`decoded iSCSI PDUs by opcode: ${[...counts].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${OPCODES[k] ?? `0x${k.toString(16)}`}=${v}`).join(', ')}`);
  t.ok(pdus >= 1000, `many PDUs decoded as iSCSI (${pdus} in ${framesWithOps.length} frames, ${perStream.size} TCP connections)`);
  t.ok(perStream.size >= 8, `every session was captured (${perStream.size} TCP connections: 2 for iscsi-ls, 3 libiscsi tools, discovery and 2 own sessions)`);
  for (const code of [0x03, 0x23, 0x04, 0x24, 0x01, 0x21, 0x25, 0x05, 0x31, 0x06, 0x26, 0x00, 0x20, 0x02, 0x22]) {
    t.ok((counts.get(code) ?? 0) > 0, `${OPCODES[code]} (0x${code.toString(16).padStart(2, '0')}) seen (${counts.get(code) ?? 0})`);
  }
  const unknown = [...counts.keys()].filter((k) => !(k in OPCODES));
  t.same(unknown, [], 'no opcode outside the ones these initiators and the target use (no Reject, no Async)');

  // 4. Our own sessions, one TCP connection each (found by the InitiatorName they logged in
  // with), each carry the whole command set: SCSI, Data-In/Out, R2T, NOP, TMF, logout.
  const streamOf = (name: string): string => {
    const streams = [...new Set(frames.filter((f) => f.keyValues.includes(`InitiatorName=${name}`)).map((f) => f.stream))];
    t.equal(streams.length, 1, `one TCP connection logged in as ${name}`);
    return streams[0] ?? '-1';
  };
  const ps = streamOf(PLAIN_NAME);
  const ds = streamOf(DIGEST_NAME);
  for (const [name, stream] of [
    [PLAIN_NAME, ps],
    [DIGEST_NAME, ds],
  ] as const) {
    const ops = perStream.get(stream) ?? new Map<number, number>();
    const missing = [0x03, 0x23, 0x01, 0x21, 0x25, 0x05, 0x31, 0x00, 0x20, 0x02, 0x22, 0x06, 0x26].filter((c) => !ops.has(c)).map((c) => OPCODES[c]);
    t.same(missing, [], `${name}: its connection carries Login, SCSI Command/Response, Data-In, Data-Out, R2T, NOP-Out/In, TMF, Logout`);
  }

  // 5. Digests: exactly the digest session carries them, and the dissector finds them all good.
  const elsewhere = frames.filter((f) => f.digest && f.stream !== ds);
  t.equal(elsewhere.length, 0, `no digest decoded on the connections that negotiated None${elsewhere.length ? ` (frames ${elsewhere.slice(0, 20).map((f) => f.frame).join(', ')})` : ''}`);
  const tree = parseDigestTree(await tshark(d, ['-Y', `tcp.stream == ${ds} && iscsi`, '-O', 'iscsi', '-V']));
  const streamOps = perStream.get(ds) ?? new Map<number, number>();
  const streamPdus = [...streamOps.values()].reduce((a, b) => a + b, 0);
  t.equal(tree.length, streamPdus, `the verbose tree of the digest connection has all its ${streamPdus} PDUs`);
  // Login PDUs never carry digests (they start after the login phase, RFC 7143 13.1).
  const ffp = tree.filter((p) => p.opcode !== 0x03 && p.opcode !== 0x23);
  t.ok(ffp.length >= 20, `${ffp.length} full-feature-phase PDUs on the digest connection`);
  const noHeader = ffp.filter((p) => p.header !== 'good');
  if (noHeader.length) t.comment(`PDUs without a good header digest: ${JSON.stringify(noHeader.slice(0, 10))}`);
  t.equal(noHeader.length, 0, 'every full-feature PDU has a header digest tshark verifies as good CRC32C');
  const withData = ffp.filter((p) => p.dataSegmentLength > 0);
  const noData = withData.filter((p) => p.data !== 'good');
  if (noData.length) t.comment(`PDUs with data but no good data digest: ${JSON.stringify(noData.slice(0, 10))}`);
  t.ok(withData.length > 10, `${withData.length} PDUs with a data segment on the digest connection`);
  t.equal(noData.length, 0, 'every data segment has a data digest tshark verifies as good CRC32C');
  t.equal(
    ffp.filter((p) => p.dataSegmentLength === 0 && p.data !== null).length,
    0,
    'no data digest where there is no data segment',
  );
});
