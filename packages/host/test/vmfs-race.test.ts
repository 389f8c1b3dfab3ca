/**
 * Two hosts race to power on the same VM (open its files exclusively) over real iSCSI
 * sessions to one esxemu target: in each of 100 races exactly one wins and the other gets
 * FILE_LOCKED; for the COMPARE AND WRITE path and for the RESERVE/RELEASE path.
 */
import t from 'tap';
import { EsxError } from '@esxemu/shared';
import { fsck, mkfs, mount, type Vmfs } from '../src/vmfs/index.js';
import { connectHost, startTarget } from './vmfs-iscsi-helpers.js';

t.setTimeout(60_000);
const RACES = 100;
const HB = { heartbeatMs: 200, leaseMs: 1500 };

const { target, portal } = await startTarget(32);
t.teardown(() => target.close());

for (const ats of [true, false]) {
  t.test(`${ats ? 'ATS' : 'reservations'}: ${RACES} races for one VM, exactly one winner each`, async (t) => {
    const a = await connectHost(portal, ats ? 1 : 3, ats);
    const b = await connectHost(portal, ats ? 2 : 4, ats);
    t.teardown(async () => {
      await a.init.close();
      await b.init.close();
    });
    if (ats) await mkfs(a.dev, { label: 'race', fileBlockSize: 64 * 1024, maxHosts: 8, force: true });
    const fa = await mount(a.dev, { hostId: ats ? 1 : 3, ...HB });
    const fb = await mount(b.dev, { hostId: ats ? 2 : 4, ...HB });
    const vm = ats ? 'vm-ats' : 'vm-res';
    await fa.mkdir(vm);
    await fa.writeFile(`${vm}/${vm}.vmx`, Buffer.from('memsize = "64"\n'));
    const wins = [0, 0];
    let bad = 0;
    for (let i = 0; i < RACES; i++) {
      const order: Vmfs[] = i % 2 ? [fa, fb] : [fb, fa];
      const r = await Promise.allSettled(order.map((fs) => fs.open(`${vm}/${vm}.vmx`, 'exclusive')));
      const won = r.filter((x) => x.status === 'fulfilled');
      const lost = r.filter((x): x is PromiseRejectedResult => x.status === 'rejected');
      if (won.length !== 1 || lost.length !== 1 || !(lost[0]!.reason instanceof EsxError && lost[0]!.reason.code === 'FILE_LOCKED')) {
        bad++;
        t.fail(`race ${i}: ${won.length} winners; ${lost.map((l) => String(l.reason)).join('; ')}`);
      }
      for (let k = 0; k < 2; k++) {
        const x = r[k]!;
        if (x.status === 'fulfilled') {
          wins[order[k] === fa ? 0 : 1]!++;
          await x.value.close();
        }
      }
    }
    t.equal(bad, 0, `${RACES} races, one winner each (host A won ${wins[0]}, host B ${wins[1]})`);
    const s = fa.atomicStats();
    if (ats) t.ok(s.ats > 0 && s.reservations === 0, `locks changed with COMPARE AND WRITE (${JSON.stringify(s)})`);
    else t.ok(s.reservations > 0 && s.ats === 0, `locks changed under RESERVE/RELEASE (${JSON.stringify(s)})`);
    await fa.unmount();
    await fb.unmount();
    t.same((await fsck(a.dev)).errors, []);
  });
}
