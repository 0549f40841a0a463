// SpawnOptions.timing: the points of a launch the bench's phase breakdown is
// cut from, in the order they happen, on process.hrtime's clock.
import t from 'tap';
import { hrtime } from 'node:process';
import { prepare, spawn } from '../../lib/index.js';
import { spec } from '../helpers/env.js';

const ORDER = [
  'start',
  'planned',
  'call',
  'queued',
  'worker',
  'clone',
  'cloneDone',
  'verdict',
  'mainThread',
  'spawned',
];

t.test('a timed launch reports its points in order, the child steps between clone and its exec', async (t) => {
  const before = Number(hrtime.bigint());
  const c = spawn(spec(['/bin/true']), { stdio: 'ignore', timing: true });
  t.equal(c.timing, undefined, 'known once spawned');
  const r = await c.exited;
  t.equal(r.exitCode, 0);
  const tm = c.timing!;
  t.ok(tm, 'timing set');
  const points = ORDER.map((k) => (tm as unknown as Record<string, number>)[k]);
  t.ok(points[0] >= before, 'the same clock as process.hrtime');
  for (let i = 1; i < points.length; i++) t.ok(points[i] >= points[i - 1], `${ORDER[i - 1]} <= ${ORDER[i]}`);
  t.ok(tm.exitSeen! >= tm.spawned && tm.exited! >= tm.exitSeen!, 'exit seen, then delivered');
  // The default container is vfork-style: the child's own step times are there.
  t.ok(tm.childStart! > tm.clone && tm.childStart! < tm.cloneDone, 'child start between clone and its return');
  const steps = tm.childSteps.map((s) => s.step);
  for (const s of ['uid-map', 'bind-rootfs', 'mount', 'pivot-root', 'close-fds'])
    t.ok(steps.includes(s), `step ${s} timed`);
  t.ok(
    tm.childSteps.every((s, i) => s.ns >= (i ? tm.childSteps[i - 1].ns : tm.childStart!) && s.ns <= tm.cloneDone),
    'child steps in order, before the exec',
  );
});

t.test('an untimed launch has no timing; a prepared one has its own', async (t) => {
  const c = spawn(spec(['/bin/true']), { stdio: 'ignore' });
  await c.exited;
  t.equal(c.timing, undefined);
  const tpl = prepare(spec(['/bin/true']));
  t.teardown(() => tpl.close());
  const p = tpl.spawn({ stdio: 'ignore', timing: true });
  await p.exited;
  t.ok(p.timing && p.timing.planned >= p.timing.start && p.timing.exited! > p.timing.spawned);
});
