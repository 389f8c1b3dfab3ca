/**
 * Guest memory across a real TCP connection on loopback, the way vMotion's pre-copy moves it:
 * the source sends every page from machine memory (untouched pages as zero entries), the guest
 * keeps writing with the dirty log on, the source sends the dirty pages again, and after the
 * last pass the destination's memory equals the source's page for page. The destination
 * touches no machine page for memory the guest never used, and running out of machine memory
 * on the destination is INSUFFICIENT_RESOURCES.
 */
import { createServer, connect, type Socket } from 'node:net';
import t from 'tap';
import { PAGE_SIZE } from '@esxemu/shared';
import { MachineMemory } from '../src/vmkernel/memory/machine-memory.js';
import { Pmap } from '../src/vmkernel/memory/pmap.js';
import { applyPages, pageBatches } from '../src/migration/pages.js';
import { encodeControl, encodePages, encodePreamble, REC, StreamReader, type StreamEvent } from '../src/migration/stream.js';

const PAGES = 512; // 2 MiB of guest memory

/** A guest write through the pmap as the MMU does it: fault in, write, log dirty when on. */
function guestWrite(pmap: Pmap, gpn: number, byte: number): void {
  const mpn = pmap.fault(gpn);
  pmap.machine.fill(byte, mpn * PAGE_SIZE, mpn * PAGE_SIZE + 64);
  if (pmap.dirtyLogging) pmap.dirty.set(gpn);
}

function write(sock: Socket, parts: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.cork();
    for (const p of parts.slice(0, -1)) sock.write(p);
    sock.write(parts[parts.length - 1]!, (err) => (err ? reject(err) : resolve()));
    sock.uncork();
  });
}

t.test('pre-copy over TCP: every page arrives, dirty pages are sent again, the last version wins', async (t) => {
  const srcMem = MachineMemory.createPages(PAGES + 8);
  const dstMem = MachineMemory.createPages(PAGES + 8);
  const src = Pmap.create(PAGES, srcMem);
  const dst = Pmap.create(PAGES, dstMem);
  for (let gpn = 0; gpn < PAGES; gpn += 3) guestWrite(src, gpn, (gpn % 250) + 1); // a third of the memory used

  const events: StreamEvent[] = [];
  let error: Error | null = null;
  let rawPages = 0;
  let zeroPages = 0;
  const done = new Promise<void>((resolve) => {
    const server = createServer((sock) => {
      const reader = new StreamReader({
        side: 'destination',
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'pages') {
            const r = applyPages(dst, e.pages);
            rawPages += r.raw;
            zeroPages += r.zero;
          }
          if (e.type === 'complete') {
            sock.end();
            server.close();
            resolve();
          }
        },
        onError: (e) => {
          error = e;
          sock.destroy();
          server.close();
          resolve();
        },
      });
      sock.on('data', (c: Buffer) => reader.push(c));
      sock.on('end', () => reader.end());
    });
    server.listen(0, '127.0.0.1', () => void run((server.address() as { port: number }).port));
  });

  const run = async (port: number): Promise<void> => {
    const sock = connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    await write(sock, [encodePreamble(), ...encodeControl(REC.HELLO, { migrationId: 'm', vmId: 'v', pages: PAGES })]);
    src.setDirtyLogging(true);
    // Pass 1: all memory; the guest goes on writing meanwhile.
    for (const batch of pageBatches(src, Array.from({ length: PAGES }, (_, i) => i))) {
      await write(sock, encodePages(batch));
      guestWrite(src, (batch[0]!.gpn * 7 + 5) % PAGES, 0xee);
    }
    let dirty = src.dirty.harvest();
    await write(sock, encodeControl(REC.ITERATION, { n: 1, dirtyPages: dirty.length }));
    // Pass 2: what changed during pass 1, while a few more pages change.
    for (const batch of pageBatches(src, dirty)) await write(sock, encodePages(batch));
    guestWrite(src, 1, 0x11);
    guestWrite(src, 2, 0x22);
    // Switchover: the guest is stopped; the last dirty pages, then the end.
    dirty = src.dirty.harvest();
    src.setDirtyLogging(false);
    await write(sock, encodeControl(REC.SWITCHOVER));
    for (const batch of pageBatches(src, dirty)) await write(sock, encodePages(batch));
    await write(sock, [...encodeControl(REC.DEVICE_STATE, { regs: [] }), ...encodeControl(REC.COMPLETE)]);
    sock.end();
  };

  await done;
  t.equal(error, null, 'no protocol error');
  t.same(events.filter((e) => e.type !== 'pages').map((e) => e.type), ['hello', 'iteration', 'switchover', 'deviceState', 'complete']);
  let differ = 0;
  for (let gpn = 0; gpn < PAGES; gpn++) if (!Buffer.from(src.readPage(gpn)).equals(Buffer.from(dst.readPage(gpn)))) differ++;
  t.equal(differ, 0, 'the destination memory equals the source page for page');
  t.equal(dst.consumedPages, src.consumedPages, `the destination backs exactly the pages the guest used (${src.consumedPages}), not all ${PAGES}`);
  t.ok(zeroPages >= PAGES - src.consumedPages, `${zeroPages} zero pages travelled as index entries only, ${rawPages} raw`);
});

t.test('the destination out of machine memory: INSUFFICIENT_RESOURCES', (t) => {
  const src = Pmap.create(16, MachineMemory.createPages(16));
  for (let gpn = 0; gpn < 16; gpn++) guestWrite(src, gpn, 7);
  const host = MachineMemory.createPages(16);
  const other = Pmap.create(16, host);
  for (let gpn = 0; gpn < 6; gpn++) guestWrite(other, gpn, 1); // another VM holds 6 of the 16 machine pages
  const dst = Pmap.create(16, host);
  const [batch] = [...pageBatches(src, Array.from({ length: 16 }, (_, i) => i))];
  t.throws(() => applyPages(dst, batch!), { code: 'INSUFFICIENT_RESOURCES' }, '16 pages arriving where 10 are free');
  t.equal(dst.consumedPages, 10, 'it stopped at the first page it could not back');
  t.equal(other.consumedPages, 6, 'the other VM keeps its pages');
  t.end();
});
