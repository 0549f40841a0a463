// `resources` in the library's front ends (issue 17): createSpec({resources}),
// exec() and runscript() of an image, and an instance whose limits hold for
// every process joined into it. Limits are felt inside (a pids limit makes
// fork fail); unprivileged without a delegated cgroup they are refused with
// what to do, never dropped.
import t from 'tap';
import { createSpec, exec, run, runscript } from '../../lib/index.js';
import { startInstance } from '../../lib/singularity/index.js';
import { isRoot, testRootfs } from '../helpers/env.js';
import { storeBase } from '../instances/helpers.js';
import { makeSandbox, sh } from '../singularity/fixtures.js';

/** Output and exit of a started container whose stdout and stderr are pipes. */
async function collect(c: Awaited<ReturnType<typeof exec>>) {
  let out = '';
  let err = '';
  c.stdout!.on('data', (d: Buffer) => (out += d));
  c.stderr!.on('data', (d: Buffer) => (err += d));
  const closed = new Promise((res) => c.once('close', res));
  const r = await c.exited;
  await closed;
  return { ...r, out, err };
}

const FORK = 'grep pids /proc/self/cgroup; for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait';

t.test('createSpec({resources}): the limits are felt inside', async (t) => {
  const s = createSpec({ rootfs: testRootfs(), args: ['/bin/sh', '-c', FORK], resources: { pids: { limit: 5 } } });
  t.same(s.linux!.resources, { pids: { limit: 5 } });
  if (!isRoot) {
    await t.rejects(run(s, { stdio: 'pipe' }), { name: 'CgroupError', message: /Delegate=yes/ });
    return;
  }
  const r = await run(s, { stdio: 'pipe', cgroupName: `cglib-${process.pid}-spec` });
  t.match(r.stdout!.toString(), /pids:.*\/nodularity-cglib-/, 'in a cgroup of its own');
  t.match(r.stderr!.toString(), /can't fork/, 'pids.max 5 holds');
  t.ok(r.cgroup && r.cgroup.cpuUsageMicros! > 0, 'the figures at exit');
});

t.test('exec() and runscript() with resources: felt inside', async (t) => {
  const img = makeSandbox(t, { runscript: `#!/bin/sh\n${FORK}\n` });
  if (!isRoot) {
    await t.rejects(exec(img, ['true'], { resources: { pids: { limit: 5 } } }), {
      name: 'CgroupError',
      message: /Delegate=yes/,
    });
    return;
  }
  const e = await sh(img, FORK, { resources: { pids: { limit: 5 } } });
  t.match(e.out, /pids:.*\/nodularity-/, 'exec: in a cgroup of its own');
  t.match(e.err, /can't fork/, 'exec: pids.max 5 holds');
  const r = await collect(
    await runscript(img, [], { resources: { pids: { limit: 5 } }, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  t.match(r.err, /can't fork/, 'runscript: pids.max 5 holds');
  t.ok(r.cgroup, 'runscript: the figures at exit');
});

t.test("an instance's limits hold for what joins it; an exec into it cannot bring its own", async (t) => {
  if (!isRoot) return t.pass("limits need a cgroup, and the v1 hierarchies are root's here");
  const base = storeBase(t);
  const i = await startInstance(testRootfs(), 'lim', { instanceDir: base, resources: { pids: { limit: 6 } } });
  t.teardown(() => i.stop({ timeout: 0 }));
  const r = await collect(await exec(i, ['/bin/sh', '-c', FORK], { stdio: ['ignore', 'pipe', 'pipe'] }));
  t.match(r.out, /pids:/);
  t.match(r.err, /can't fork/, "the instance's pids.max holds for a process joined into it");
  await t.rejects(exec(i, ['true'], { resources: { pids: { limit: 100 } } }), {
    name: 'SpecError',
    message: /resources.*instance lim is under the instance's limits/,
  });
});
