import t from 'tap';
import { CpuScheduler, maxMinFair } from '../src/vmkernel/scheduler.js';

t.test('max-min fair grants, equal shares', async (t) => {
  t.same(maxMinFair(4000, []), []);
  t.same(maxMinFair(4000, [{ demandMhz: 100, capMhz: 2000 }]), [100], 'a small demand is granted in full');
  t.same(maxMinFair(4000, [{ demandMhz: 9000, capMhz: 2000 }]), [2000], 'capped at vcpus x MHz');
  t.same(
    maxMinFair(3000, [
      { demandMhz: 500, capMhz: 4000 },
      { demandMhz: 4000, capMhz: 4000 },
      { demandMhz: 4000, capMhz: 4000 },
    ]),
    [500, 1250, 1250],
    'what the small one leaves is split evenly',
  );
  const g = maxMinFair(1000, [
    { demandMhz: 300, capMhz: 2000 },
    { demandMhz: 2000, capMhz: 2000 },
    { demandMhz: 400, capMhz: 2000 },
  ]);
  t.same(g, [300, 350, 350], '300 fits its share; the other two split the rest');
  t.ok(g.reduce((a, b) => a + b) <= 1000, 'never more than the capacity');
  t.same(maxMinFair(1000, [{ demandMhz: Number.NaN, capMhz: 100 }, { demandMhz: -5, capMhz: 100 }]), [0, 0], 'nonsense demands get nothing');
});

t.test('the scheduler publishes entitlements', async (t) => {
  const s = new CpuScheduler(2, 1000);
  t.equal(s.capacityMhz, 2000);
  t.equal(s.capFor(2), 2000);
  const got: number[] = [0, 0];
  s.rebalance([
    { cpuClaim: { demandMhz: 1500, capMhz: 1000 }, setEntitlementMhz: (m) => (got[0] = m) },
    { cpuClaim: { demandMhz: 1500, capMhz: 2000 }, setEntitlementMhz: (m) => (got[1] = m) },
  ]);
  t.same(got, [1000, 1000]);
});
