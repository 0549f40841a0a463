// Containers in cgroups through the launch path: linux.resources in the spec
// put the init in a cgroup of its own at the start gate, before the payload's
// first instruction; limits are felt inside, the exit result carries the
// cgroup's figures, a payload that escapes the init's reaping is killed with
// the cgroup, and nothing is left in any hierarchy.
import t from 'tap';
import { execFileSync, spawn as spawnProc } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, type Spec } from '../../lib/index.js';
import { hierarchies } from '../../lib/cgroups/index.js';
import { capture } from '../helpers/run.js';
import { isRoot, openFds, repoRoot, scratch, spec, testRootfs } from '../helpers/env.js';

const h = hierarchies();
const name = (s: string) => `cgtest-${process.pid}-${s}`;
/** Every directory our cgroups could be in, to check that none is left. */
const leftovers = (id: string) =>
  [...new Set([...[...h.v1.values()].map((x) => x.own), h.v2!.own])].filter((d) => existsSync(`${d}/nodularity-${id}`));
const gone = (pid: number) =>
  !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

function withResources(s: Spec, resources: NonNullable<Spec['linux']>['resources'], path?: string): Spec {
  s.linux = { ...s.linux, resources, ...(path ? { cgroupsPath: path } : {}) };
  return s;
}

t.test("limits are felt from the payload's first instruction; figures at exit; nothing left", async (t) => {
  if (!isRoot) return t.pass("v1 hierarchies are root's here: the unprivileged refusal is tested below");
  const id = name('pids');
  const r = await capture(
    withResources(
      spec(['/bin/sh', '-c', 'grep pids /proc/self/cgroup; for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait']),
      {
        pids: { limit: 5 },
        memory: { limit: 64 << 20 },
      },
    ),
    { cgroupName: id },
  );
  t.match(r.out, new RegExp(`pids:.*/nodularity-${id}\\n`), "the payload runs in the container's cgroup");
  t.match(r.err, /can't fork/, `pids.max=5 holds inside:\n${r.err}`);
  t.ok(r.cgroup, 'the exit result has the cgroup figures');
  t.ok(r.cgroup!.memoryPeak! > 0 && r.cgroup!.cpuUsageMicros! > 0, JSON.stringify(r.cgroup));
  t.equal(r.cgroup!.oomKills, 0);
  t.same(leftovers(id), [], 'the cgroup is removed at exit');

  const oom = await capture(
    withResources(spec(['/bin/sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}']), {
      memory: { limit: 32 << 20 },
    }),
    { cgroupName: name('oom') },
  );
  t.equal(oom.cgroup!.oomKills, 1, 'the OOM kill is reported');
  t.ok(oom.cgroup!.memoryPeak! >= 31 << 20, `peak ${oom.cgroup!.memoryPeak}`);
  t.same(leftovers(name('oom')), []);
});

t.test('without a pid namespace, what escapes the init is killed with the cgroup', async (t) => {
  if (!isRoot) return t.pass('root only here');
  const s = withResources(spec(['/bin/sh', '-c', '(sleep 300 & echo $!); echo done']), { pids: { limit: 50 } });
  // No pid namespace, so no proc of its own either (the kernel refuses it).
  s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'pid');
  s.mounts = s.mounts!.filter((m) => m.type !== 'proc');
  const r = await capture(s, { cgroupName: name('orphan'), init: true });
  const orphan = Number(/^(\d+)$/m.exec(r.out)![1]);
  t.ok(orphan > 1, `the orphan's host pid ${orphan}`);
  for (let i = 0; i < 200 && !gone(orphan); i++) await new Promise((res) => setTimeout(res, 10));
  t.ok(gone(orphan), 'the orphan (reparented away from the init) is gone with the cgroup');
  t.same(leftovers(name('orphan')), []);
});

t.test('unprivileged with limits and no delegated subtree: one clear error, nothing left', async (t) => {
  if (isRoot) return t.pass('root may write every hierarchy here');
  await capture(spec(['/bin/true'])); // the addon's one-time fds (the init's memfd) are not a leak
  const before = openFds();
  const id = name('deny');
  t.throws(() => spawn(withResources(spec(['/bin/true']), { pids: { limit: 5 } }), { cgroupName: id }), {
    name: 'CgroupError',
    message: /Delegate=yes/,
  });
  t.same(openFds(), before, 'no fd left');
  t.same(leftovers(id), []);
  // A cgroupsPath alone is a wish: without a writable hierarchy the container runs without one.
  const r = await capture(withResources(spec(['/bin/echo', 'ran']), undefined, 'nodularity-wish'));
  t.equal(r.out, 'ran\n');
  t.equal(r.cgroup, undefined);
});

t.test('a hostile cgroupsPath is refused before anything is made', async (t) => {
  t.throws(() => spawn(withResources(spec(['/bin/true']), { pids: { limit: 5 } }, '../../../escape')), {
    name: 'SpecError',
    pointer: '/linux/cgroupsPath',
  });
  t.same(
    readdirSync('/sys/fs/cgroup/pids').filter((d) => d === 'escape'),
    [],
  );
});

t.test(
  'device rules: deny-all as clients send it keeps /dev/null working; the rules are in the devices controller',
  async (t) => {
    if (!isRoot) return t.pass("the v1 devices controller is root's here");
    const s = withResources(spec(['/bin/sh', '-c', 'echo ok > /dev/null && echo null-ok; read x']), {
      devices: [{ allow: false, access: 'rwm' }],
    });
    const c = spawn(s, { stdio: ['pipe', 'pipe', 'pipe'], cgroupName: name('dev') });
    let out = '';
    c.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    await c.spawned;
    const list = readFileSync(`${c.cgroup!.v1.get('devices')}/devices.list`, 'utf8');
    t.match(list, /^c 1:3 rwm$/m, 'the default nodes are allowed after the deny-all');
    t.notMatch(list, /^a \*:\* rwm$/m, 'not everything');
    t.notMatch(list, /^b 7:/m, 'no loop device');
    c.stdin!.end('\n');
    const r = await c.exited;
    t.equal(r.exitCode, 0);
    t.equal(out, 'null-ok\n');
    t.same(leftovers(name('dev')), []);
  },
);

t.test('a recorded cgroup is found again; records outside the cgroup mounts are refused', async (t) => {
  const { Cgroup } = await import('../../lib/cgroups/index.js');
  t.throws(() => Cgroup.fromDirs(['/etc']), { name: 'CgroupError', message: /not a cgroup directory/ });
  t.throws(() => Cgroup.fromDirs([`${h.v2!.mount}/../../etc`]), { name: 'CgroupError' });
  t.throws(() => Cgroup.fromDirs([`${h.v2!.mount}/a`], ['/tmp']), { name: 'CgroupError', message: /not one of/ });
  if (!isRoot) return;
  const made = Cgroup.create({ id: name('rec'), path: `/${name('rec')}/c` });
  const again = Cgroup.fromDirs(made.dirs, made.created);
  t.same(again.dirs, made.dirs);
  await again.destroy();
  t.same(
    made.dirs.filter((d) => existsSync(d)),
    [],
    'removed, with the parent it made',
  );
  t.notOk(existsSync(`/sys/fs/cgroup/pids/${name('rec')}`));
});

t.test("an exec (joinPid) is under the container's limits: it joins its cgroup before its payload runs", async (t) => {
  if (!isRoot) {
    // A container without a cgroup of its own: the exec moves nowhere and runs.
    const c = spawn(spec(['/bin/sh', '-c', 'read x']), { stdio: ['pipe', 'ignore', 'ignore'] });
    await c.spawned;
    const e = await capture(spec(['/bin/sh', '-c', 'echo in']), { joinPid: c.pid! });
    t.equal(e.out, 'in\n');
    c.stdin!.end('\n');
    await c.exited;
    return;
  }
  const c = spawn(withResources(spec(['/bin/sh', '-c', 'read x']), { pids: { limit: 6 } }), {
    stdio: ['pipe', 'ignore', 'ignore'],
    cgroupName: name('join'),
  });
  await c.spawned;
  const e = await capture(
    spec(['/bin/sh', '-c', 'grep pids /proc/self/cgroup; for i in 1 2 3 4 5 6; do sleep 1 & done; wait']),
    { joinPid: c.pid! },
  );
  t.match(e.out, new RegExp(`pids:.*/nodularity-${name('join')}\\n`), "the exec runs in the container's cgroup");
  t.match(e.err, /can't fork/, `the container's pids.max=6 holds for the exec:\n${e.err}`);
  t.notOk(e.cgroup, "the container's cgroup is not the exec's to read or remove");
  t.ok(existsSync(`${c.cgroup!.v1.get('pids')}`), 'and it is still there after the exec');
  c.stdin!.end('\n');
  await c.exited;
  t.same(leftovers(name('join')), []);
});

t.test(
  "an unprivileged exec into a container in a cgroup it may not write (another session's) runs, unmoved",
  async (t) => {
    if (!isRoot)
      return t.pass("the root pass puts the test user's container in a root-owned cgroup and execs as that user");
    const user = process.env.NODULARITY_TEST_USER || 'nodularity-test';
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }));
    const foreign = join(h.v1.get('pids')!.mount, name('foreign'));
    mkdirSync(foreign);
    t.teardown(() => rmdirSync(foreign));
    const dir = scratch(t);
    const script = join(dir, 'exec.mts');
    writeFileSync(
      script,
      `import { spawn, run, createSpec } from ${JSON.stringify(join(repoRoot, 'lib/index.js'))};
import { createInterface } from 'node:readline';
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const c = spawn(createSpec({ rootfs: ${JSON.stringify(testRootfs())}, args: ['/bin/sh', '-c', 'read x'] }), { stdio: ['pipe', 'ignore', 'ignore'] });
await c.spawned;
console.log(c.pid);
await lines.next();
try {
  const r = await run(createSpec({ rootfs: '/', args: ['/bin/sh', '-c', 'grep pids /proc/self/cgroup'] }), { joinPid: c.pid, stdio: 'pipe' });
  console.log(JSON.stringify({ code: r.exitCode, out: r.stdout.toString() }));
} catch (e) {
  console.log(JSON.stringify({ error: e.message }));
}
c.stdin.end('\\n');
await c.exited;
`,
    );
    execFileSync('chmod', ['-R', 'a+rX', dir]);
    const p = spawnProc(
      'setpriv',
      [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', process.execPath, '--import=tsx', script],
      { cwd: repoRoot, stdio: ['pipe', 'pipe', 'inherit'] },
    );
    let out = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    for (let i = 0; i < 500 && !/^\d+\n/.test(out); i++) await new Promise((r) => setTimeout(r, 20));
    const init = Number(/^(\d+)\n/.exec(out)![1]);
    // As if the container had been started from another login session: its init is in a cgroup the user may not write.
    writeFileSync(join(foreign, 'cgroup.procs'), String(init));
    p.stdin!.end('go\n');
    await once(p, 'close');
    const r = JSON.parse(out.split('\n')[1]);
    t.equal(r.code, 0, `the exec ran: ${JSON.stringify(r)}`);
    t.match(r.out, /^\d+:pids:\/\n$/, "it stayed in the user's own cgroup");
  },
);

t.test('a launch the addon refuses before clone leaves no gate pipe behind', async (t) => {
  if (!isRoot) return t.pass("v1 hierarchies are root's here: a launch with limits cannot be made unprivileged");
  // A cgroup gives the launch a start gate of ours (a pipe); a preserveFds
  // count the addon refuses throws from spawn(), after the pipe was made.
  const before = openFds();
  for (let i = 0; i < 5; i++)
    t.throws(
      () => spawn(withResources(spec(['/bin/true']), { pids: { limit: 20 } }), { preserveFds: -1 }),
      /preserveFds/,
    );
  t.same(openFds(), before, 'no fd left open by the refused launches');
});
