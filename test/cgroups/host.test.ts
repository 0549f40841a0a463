// lib/cgroups on this host's real hierarchies (v1 controllers and a cgroup2
// tree at /sys/fs/cgroup/unified holding hugetlb): limits that processes feel,
// an OOM kill reported, a double fork killed as a whole, freezing, removal,
// hostile paths, and a v2 subtree delegated to an unprivileged user as
// systemd's Delegate=yes does. Processes here are host processes moved in
// before they start working (they wait on stdin); containers in cgroups are
// tested with the launch path.
import t from 'tap';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { Cgroup, hierarchies } from '../../lib/cgroups/index.js';
import { isRoot, repoRoot, scratch } from '../helpers/env.js';

const TAG = `nodularity-cgtest-${process.pid}`;
const h = hierarchies();
let n = 0;
const id = () => `${TAG}-${++n}`;

/** A host process that waits for a line on stdin before running SCRIPT; tagged in argv. */
function waiting(script: string): ChildProcess {
  return spawn('sh', ['-c', `read go; ${script}`, TAG], { stdio: ['pipe', 'pipe', 'pipe'] });
}

async function finish(
  c: ChildProcess,
): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  let out = '';
  let err = '';
  c.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  c.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  c.stdin!.end('go\n');
  const [code, signal] = (await once(c, 'close')) as [number | null, string | null];
  return { code, signal, out, err };
}

const gone = (pid: number) =>
  !existsSync(`/proc/${pid}`) || /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

t.test('the host has the hierarchies these tests are about', async (t) => {
  t.equal(h.mode, 'hybrid', 'v1 controllers and a cgroup2 tree (this machine type)');
  t.ok(h.v2?.controllers.has('hugetlb'), 'the cgroup2 tree offers hugetlb');
});

t.test(
  'unprivileged without a delegated subtree: one clear error, nothing made',
  { skip: isRoot ? false : undefined },
  async (t) => {
    if (isRoot) {
      t.pass('root may write every hierarchy here; the unprivileged pass checks the refusal');
      return;
    }
    const name = id();
    t.throws(() => Cgroup.create({ id: name, resources: { pids: { limit: 5 } } }), {
      name: 'CgroupError',
      code: 'EACCES',
      message: /Delegate=yes/,
    });
    for (const d of new Set([...h.v1.values()].map((x) => x.own).concat(h.v2 ? [h.v2.own] : [])))
      t.notOk(existsSync(join(d, `nodularity-${name}`)), `nothing left in ${d}`);
  },
);

t.test('limits the processes feel: pids, cpuset, memory with an OOM kill reported', async (t) => {
  if (!isRoot) return t.pass("v1 hierarchies are root's here; the delegated v2 case is tested below");
  const cg = Cgroup.create({
    id: id(),
    resources: {
      pids: { limit: 4 },
      cpu: { cpus: '0', shares: 256, quota: 20000, period: 100000 },
      memory: { limit: 24 << 20 },
    },
  });
  t.teardown(() => cg.destroy());
  t.equal(readFileSync(join(cg.v1.get('pids')!, 'pids.max'), 'utf8').trim(), '4');
  t.equal(readFileSync(join(cg.v1.get('cpu')!, 'cpu.cfs_quota_us'), 'utf8').trim(), '20000');
  const c = waiting(
    'grep Cpus_allowed_list /proc/self/status; for i in 1 2 3 4 5 6; do sleep 2 & done 2>&1; wait; echo forks-done',
  );
  cg.addProcess(c.pid!);
  const r = await finish(c);
  t.match(r.out, /Cpus_allowed_list:\s+0\n/, 'cpuset.cpus=0 is what the process may run on');
  t.match(
    r.out + r.err,
    /fork|Resource temporarily unavailable/i,
    `pids.max=4 stops the fifth fork:\n${r.out}${r.err}`,
  );

  const mem = Cgroup.create({ id: id(), resources: { memory: { limit: 16 << 20, swap: 16 << 20 } } });
  t.teardown(() => mem.destroy());
  const hog = waiting(`exec python3 -c 'b = bytearray(200 << 20); print(len(b))'`);
  mem.addProcess(hog.pid!);
  const m = await finish(hog);
  t.equal(m.signal, 'SIGKILL', 'the OOM killer ended the process that went over 16 MiB');
  const s = mem.stats();
  t.ok(s.oomKills! >= 1, `memory.oom_control says oom_kill ${s.oomKills}`);
  t.ok(s.memoryPeak! >= 15 << 20 && s.memoryPeak! <= 17 << 20, `peak ${s.memoryPeak} is the limit`);
});

t.test('a double fork is killed as a whole; the cgroup is gone afterwards in every hierarchy', async (t) => {
  if (!isRoot) return t.pass('see the delegated v2 case for the unprivileged path');
  const cg = Cgroup.create({ id: id(), resources: { pids: { limit: 20 } } });
  const c = waiting('(sleep 300 &); (sleep 300 &); echo started; exec sleep 300');
  cg.addProcess(c.pid!);
  c.stdin!.end('go\n');
  await once(c.stdout!, 'data');
  const pids = cg.pids();
  t.equal(pids.length, 3, `the shell and the two orphans: ${pids}`);
  const orphans = pids.filter((p) => p !== c.pid);
  t.ok(
    orphans.every((p) => readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] !== String(c.pid)),
    'the orphans left their parent',
  );
  await cg.killAll();
  await once(c, 'close');
  for (let i = 0; i < 200 && !pids.every(gone); i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(pids.every(gone), 'every process is gone, orphans included');
  const dirs = [...cg.dirs];
  await cg.destroy();
  t.same(
    dirs.filter((d) => existsSync(d)),
    [],
    'no directory left in any hierarchy',
  );
});

t.test('freeze and thaw stop and resume every process', async (t) => {
  if (!isRoot) return t.pass('root only here (v1 freezer)');
  const cg = Cgroup.create({ id: id() });
  t.teardown(() => cg.destroy());
  const c = waiting('while :; do :; done');
  cg.addProcess(c.pid!);
  c.stdin!.end('go\n');
  const ticks = () => Number(readFileSync(`/proc/${c.pid}/stat`, 'utf8').split(') ')[1].split(' ')[11]);
  await new Promise((r) => setTimeout(r, 100));
  await cg.freeze();
  const a = ticks();
  await new Promise((r) => setTimeout(r, 300));
  t.equal(ticks(), a, 'no CPU time while frozen');
  await cg.thaw();
  await new Promise((r) => setTimeout(r, 300));
  t.ok(ticks() > a, 'running again after thaw');
  await cg.killAll();
  await once(c, 'close');
});

t.test('hostile and odd cgroupsPath values', async (t) => {
  for (const p of ['../../escape', '/a/../../b', 'x/./y', 'a\0b'])
    t.throws(
      () => Cgroup.create({ id: id(), path: p }),
      { name: 'SpecError', pointer: '/linux/cgroupsPath' },
      JSON.stringify(p),
    );
  t.throws(() => Cgroup.create({ id: id(), path: '/' }), { name: 'SpecError' });
  t.notOk(existsSync('/sys/fs/cgroup/escape') || existsSync('/sys/fs/cgroup/pids/escape'), 'nothing made outside');
  if (!isRoot) return;
  const name = `${TAG}-abs`;
  const cg = Cgroup.create({ id: id(), path: `/${name}/inner` });
  t.same(
    cg.dirs.filter((d) => !d.endsWith(`/${name}/inner`)),
    [],
    'an absolute path is from each hierarchy root',
  );
  t.ok(existsSync(`/sys/fs/cgroup/pids/${name}/inner`));
  await cg.destroy();
  t.notOk(existsSync(`/sys/fs/cgroup/pids/${name}`), 'the parents we made are removed too');
  // An existing cgroup that holds a process (another container's, a
  // service's) is not joined: its limits, kill --all and destroy would reach it.
  const victimDir = `/sys/fs/cgroup/pids/${TAG}-victim`;
  mkdirSync(victimDir);
  writeFileSync(join(victimDir, 'pids.max'), '50');
  const victim = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => {
    victim.kill('SIGKILL');
    return once(victim, 'close').then(() => rmdirSync(victimDir));
  });
  writeFileSync(join(victimDir, 'cgroup.procs'), String(victim.pid));
  t.throws(
    () => Cgroup.create({ id: id(), path: `/${TAG}-victim`, resources: { pids: { limit: 5 } } }),
    { name: 'CgroupError', message: /already holds 1 process/ },
    'a populated cgroup is refused',
  );
  t.equal(readFileSync(join(victimDir, 'pids.max'), 'utf8').trim(), '50', 'its limit is untouched');
  t.ok(!gone(victim.pid!), 'its process lives');
  t.match(readFileSync(`/proc/${victim.pid}/cgroup`, 'utf8'), `:pids:/${TAG}-victim\n`, 'and stays there');
  t.same(
    readdirSync('/sys/fs/cgroup/unified').filter((d) => d.startsWith(`${TAG}-victim`)),
    [],
    'nothing made in the other hierarchies either',
  );
  // a limit the host has no file for names it
  t.throws(() => Cgroup.create({ id: id(), resources: { hugepageLimits: [{ pageSize: '3MB', limit: 1 }] } }), {
    name: 'CgroupError',
    message: /hugetlb.3MB.max/,
  });
  t.same(
    readdirSync('/sys/fs/cgroup/unified').filter((d) => d.startsWith(TAG)),
    [],
    'the failed create left nothing',
  );
});

t.test(
  'a v2 subtree delegated to an unprivileged user (systemd Delegate=yes): cgroup.kill, hugetlb, removal',
  async (t) => {
    if (!isRoot) return t.pass('the root pass delegates a subtree to nodularity-test and runs this as that user');
    const user = process.env.NODULARITY_TEST_USER || 'nodularity-test';
    const uidOf = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
    const gidOf = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }));
    const deleg = join(h.v2!.mount, `${TAG}-deleg`);
    // As systemd does it: the subtree is the user's, the launcher runs in a
    // leaf of it (cgroup v2 lets only leaves hold processes once controllers
    // are passed down), containers go beside it by an absolute cgroupsPath.
    const leaf = join(deleg, 'launcher');
    mkdirSync(deleg);
    mkdirSync(leaf);
    t.teardown(() => {
      rmdirSync(leaf);
      rmdirSync(deleg);
    });
    for (const d of [deleg, leaf])
      for (const f of ['', 'cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads'])
        chownSync(join(d, f), uidOf, gidOf);
    const dir = scratch(t);
    const script = join(dir, 'deleg.mts');
    writeFileSync(
      script,
      `import { Cgroup } from ${JSON.stringify(join(repoRoot, 'lib/cgroups/index.js'))};
import { spawn } from 'node:child_process';
import { once } from 'node:events';
const cg = Cgroup.create({ id: 'deleg', path: ${JSON.stringify(`/${TAG}-deleg/c1`)}, resources: { hugepageLimits: [{ pageSize: '2MB', limit: 0 }] } });
const c = spawn('sh', ['-c', 'read go; (sleep 300 &); exec sleep 300', ${JSON.stringify(TAG)}], { stdio: ['pipe', 'ignore', 'ignore'] });
cg.addProcess(c.pid);
c.stdin.end('go\\n');
await new Promise((r) => setTimeout(r, 200));
const pids = cg.pids();
await cg.killAll();
await once(c, 'close');
const dirs = [...cg.dirs];
await cg.destroy();
console.log(JSON.stringify({ dirs, pids, v1: [...cg.v1.keys()] }));
`,
    );
    execFileSync('chmod', ['-R', 'a+rX', dir]);
    // Into the delegated cgroup first (as root, as systemd would start the unit), then drop to the user.
    const out = execFileSync(
      'sh',
      [
        '-c',
        `echo $$ > ${leaf}/cgroup.procs && exec setpriv --reuid=${uidOf} --regid=${gidOf} --init-groups ${process.execPath} --import=tsx ${script}`,
      ],
      { cwd: repoRoot, encoding: 'utf8' },
    );
    const r = JSON.parse(out) as { dirs: string[]; pids: number[]; v1: string[] };
    t.same(r.v1, [], 'no v1 hierarchy is writable by the user');
    t.same(r.dirs, [join(deleg, 'c1')], 'the cgroup was made inside the delegated subtree');
    t.match(
      readFileSync(join(deleg, 'cgroup.subtree_control'), 'utf8'),
      /hugetlb/,
      'the user passed hugetlb down itself',
    );
    t.equal(r.pids.length, 2, 'the payload and its orphan were in it');
    t.ok(r.pids.every(gone), 'cgroup.kill ended both');
    t.notOk(existsSync(join(deleg, 'c1')), 'removed');
  },
);
