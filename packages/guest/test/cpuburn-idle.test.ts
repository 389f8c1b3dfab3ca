import t from 'tap';
import {
  bootGuest,
  CB_OFF_ACC,
  CB_OFF_STEPS_HI,
  CB_OFF_STEPS_LO,
  cpuburn,
  cpuburnMix,
  CPUBURN_MIXES_PER_STEP,
  CPUBURN_STEP_CYCLES,
  getWorkload,
  idle,
  nextU32,
  R_KCYCLES_LO,
  R_WORKLOAD,
  Registers,
  stepGuest,
  WORKLOAD_IDS,
} from '../src/index.js';
import { copyPresentPages, makeGuest } from './helpers/simple-test-backing.js';

t.test('cpuburn asks for its configured demand and keeps its result in page 0', async (t) => {
  const g = makeGuest(16);
  bootGuest(g.ctx, cpuburn, { kind: 'cpuburn', demandMhz: 1500 }, 3);
  t.equal(cpuburn.demandMhz(g.ctx), 1500);
  t.equal(g.regs.get(R_WORKLOAD), WORKLOAD_IDS.cpuburn);

  // Expected accumulator, computed on a copy of the PRNG registers.
  const shadow = new Registers();
  shadow.restore(g.regs.save());
  let acc = 0;
  for (let s = 0; s < 10; s++) {
    for (let i = 0; i < CPUBURN_MIXES_PER_STEP; i++) acc = cpuburnMix(acc, nextU32(shadow));
    t.equal(stepGuest(g.ctx, cpuburn), CPUBURN_STEP_CYCLES);
  }
  t.equal(g.mem.readU32(CB_OFF_ACC), acc, 'accumulator in guest memory');
  t.equal(g.mem.readU32(CB_OFF_STEPS_LO), 10, 'step count in guest memory');
  t.equal(g.mem.readU32(CB_OFF_STEPS_HI), 0);
  t.equal(g.regs.steps, 10);
  t.equal(g.regs.get64(R_KCYCLES_LO), 10 * (CPUBURN_STEP_CYCLES / 1000), 'cycles counted in registers');
  t.equal(g.backing.allocated, 1, 'only page 0 is used');
  t.equal(cpuburn.demandMhz(g.ctx), 1500, 'demand does not drift');

  // The step count carries into its high word.
  g.mem.writeU32(CB_OFF_STEPS_LO, 0xffffffff);
  stepGuest(g.ctx, cpuburn);
  t.equal(g.mem.readU32(CB_OFF_STEPS_LO), 0);
  t.equal(g.mem.readU32(CB_OFF_STEPS_HI), 1);

  t.throws(() => bootGuest(g.ctx, cpuburn, { kind: 'cpuburn', demandMhz: 0 }, 1), { code: 'INVALID_ARGUMENT' });
});

t.test('cpuburn resumes from copied state with the same result', async (t) => {
  const a = makeGuest(4);
  bootGuest(a.ctx, cpuburn, { kind: 'cpuburn', demandMhz: 800 }, 5);
  for (let i = 0; i < 20; i++) stepGuest(a.ctx, cpuburn);
  const b = makeGuest(4);
  bootGuest(b.ctx, cpuburn, { kind: 'cpuburn', demandMhz: 800 }, 5);
  for (let i = 0; i < 7; i++) stepGuest(b.ctx, cpuburn);
  const c = makeGuest(4);
  copyPresentPages(b, c);
  c.regs.restore(b.regs.save());
  for (let i = 0; i < 13; i++) stepGuest(c.ctx, cpuburn);
  t.equal(c.mem.readU32(CB_OFF_ACC), a.mem.readU32(CB_OFF_ACC));
  t.equal(c.mem.hash(), a.mem.hash());
  t.equal(cpuburn.demandMhz(c.ctx), 800, 'demand comes from the registers');
});

t.test('idle ticks in page 0 and asks for 10 MHz', async (t) => {
  const g = makeGuest(4);
  bootGuest(g.ctx, idle, { kind: 'idle' }, 0);
  t.equal(idle.demandMhz(g.ctx), 10);
  for (let i = 0; i < 5; i++) t.equal(stepGuest(g.ctx, idle), 10_000);
  t.equal(g.mem.readU32(0), 5);
  t.equal(g.regs.steps, 5);
});

t.test('the registry knows every kind; bootGuest refuses a spec of another kind', async (t) => {
  for (const kind of ['idle', 'memstress', 'cpuburn', 'webserver'] as const) t.equal(getWorkload(kind).kind, kind);
  t.throws(() => getWorkload('nope' as never), /unknown workload kind/);
  const g = makeGuest(4);
  t.throws(() => bootGuest(g.ctx, idle, { kind: 'cpuburn', demandMhz: 5 }, 0), /cannot boot/);
});
