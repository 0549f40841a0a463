// nodularity-oci and the container's cgroup (issue 17): an exec'd process
// joins the container's cgroup in every hierarchy before its payload runs
// (listed in cgroup.procs, frozen by pause, ended by kill --all); ps reads
// cgroup.procs; kill --all goes through the cgroup; update changes the live
// limits; events --stats prints runc's stats object; --cgroup-manager.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, scratch, type Tap } from '../helpers/env.js';
import { cleanEnv, makeBundle, OCI_BIN, oci, ociDetached, pidsTagged, until } from './helpers.js';

/** utime + stime of PID, clock ticks. */
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};
const cgroupOf = (pid: number) => readFileSync(`/proc/${pid}/cgroup`, 'utf8');
/** The v1 pids and freezer directories and the v2 directory of PID, from /proc/PID/cgroup. */
const dirsOf = (pid: number) => {
  const text = cgroupOf(pid);
  return {
    pids: join('/sys/fs/cgroup/pids', /^\d+:pids:(.*)$/m.exec(text)![1]),
    freezer: join('/sys/fs/cgroup/freezer', /^\d+:freezer:(.*)$/m.exec(text)![1]),
    v2: join('/sys/fs/cgroup/unified', /^0::(.*)$/m.exec(text)![1]),
  };
};
const procs = (dir: string) => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
const gone = (pid: number) => {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
};

/** A created and started container running ARGS, with RESOURCES (a cgroup) unless null. */
async function running(
  t: Tap,
  root: string,
  id: string,
  resources: object | null,
  args = ['/bin/sh', '-c', 'exec sleep 300'],
): Promise<number> {
  const bundle = makeBundle(scratch(t), args);
  if (resources) {
    const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    cfg.linux.resources = resources;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  }
  const c = await ociDetached(root, 'create', '--bundle', bundle, id);
  t.equal(c.code, 0, c.err);
  t.teardown(async () => {
    await oci(root, 'resume', id);
    await oci(root, 'delete', '--force', id);
  });
  t.equal((await oci(root, 'start', id)).code, 0);
  return JSON.parse((await oci(root, 'state', id)).out).pid as number;
}

t.test("exec joins the container's cgroup: listed in cgroup.procs, frozen by pause, ended by kill --all", async (t) => {
  const root = scratch(t);
  const tag = `oci-cgexec-${process.pid}`;
  if (!isRoot) {
    // No cgroup here for an unprivileged caller: the exec shares the
    // container's cgroups (ours) and must not try to move itself.
    const init = await running(t, root, 'e0', null);
    const r = await oci(root, 'exec', 'e0', '/bin/sh', '-c', 'cat /proc/self/cgroup');
    t.equal(r.code, 0, r.err);
    t.equal(r.out, cgroupOf(init), "the container's cgroups");
    return;
  }
  const init = await running(t, root, 'e1', { pids: { limit: 64 } });
  const dirs = dirsOf(init);
  t.match(dirs.pids, /\/nodularity-/, 'the container has a cgroup of its own');
  const d = await ociDetached(root, 'exec', '--detach', 'e1', '/bin/sh', '-c', `while :; do :; done # ${tag}`);
  t.equal(d.code, 0, d.err);
  await until('the exec spins', 10_000, () => pidsTagged(tag).length > 0);
  const spinners = pidsTagged(tag);
  for (const dir of [dirs.pids, dirs.freezer, dirs.v2])
    for (const p of spinners) t.ok(procs(dir).includes(p), `exec'd ${p} in ${dir}/cgroup.procs`);
  t.equal((await oci(root, 'pause', 'e1')).code, 0);
  const payload = spinners.find((p) => !readFileSync(`/proc/${p}/cmdline`, 'latin1').startsWith('nodularity-init'))!;
  const a = cpu(payload);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(cpu(payload), a, 'the exec does not run while the container is paused');
  t.equal((await oci(root, 'resume', 'e1')).code, 0);
  await until('the exec runs again', 10_000, () => cpu(payload) > a);
  const k = await oci(root, 'kill', '--all', 'e1', 'KILL');
  t.equal(k.code, 0, k.err);
  await until('kill --all ends the exec', 10_000, () => spinners.every(gone));
  t.pass('ended');
});

t.test('without a cgroup: ps still lists, update and events say why they cannot', async (t) => {
  const root = scratch(t);
  const init = await running(t, root, 'n1', null);
  const ps = await oci(root, 'ps', '--format', 'json', 'n1');
  t.equal(ps.code, 0, ps.err);
  t.ok((JSON.parse(ps.out) as number[]).includes(init), 'the init is listed');
  const u = await oci(root, 'update', '--pids-limit', '10', 'n1');
  t.equal(u.code, 1);
  t.match(u.err, /cannot update n1: it has no cgroup/);
  t.notMatch(u.err, /\n\s+at /, 'no stack trace');
  const e = await oci(root, 'events', '--stats', 'n1');
  t.equal(e.code, 1);
  t.match(e.err, /cannot get events of n1: it has no cgroup/);
  const bad = await oci(root, 'update', '--pids-limit', 'many', 'n1');
  t.equal(bad.code, 1);
  t.match(bad.err, /--pids-limit many: must be a whole number/);
  const none = await oci(root, 'update', 'n1');
  t.match(none.err, /update needs --resources/);
  const iv = await oci(root, 'events', '--interval', 'soon', 'n1');
  t.match(iv.err, /--interval soon: must be a duration/);
});

t.test(
  'ps and kill --all go through the cgroup: a double fork without a pid namespace is listed and ended',
  async (t) => {
    if (!isRoot) return t.pass("the v1 hierarchies are root's here; the unprivileged pass checks the refusals above");
    const root = scratch(t);
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', '(sleep 300 &) ; exec sleep 301']);
    const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    cfg.linux.resources = { pids: { limit: 64 } };
    // No pid namespace (and so no proc of its own): the orphan leaves the init's tree.
    cfg.linux.namespaces = cfg.linux.namespaces.filter((n: { type: string }) => n.type !== 'pid');
    cfg.mounts = cfg.mounts.filter((m: { type: string }) => m.type !== 'proc');
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
    t.equal((await ociDetached(root, 'create', '--bundle', bundle, 'o1')).code, 0);
    t.teardown(() => oci(root, 'delete', '--force', 'o1'));
    t.equal((await oci(root, 'start', 'o1')).code, 0);
    const init = JSON.parse((await oci(root, 'state', 'o1')).out).pid as number;
    const dir = dirsOf(init).pids;
    const cmd = (p: number) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'latin1');
      } catch {
        return '';
      }
    };
    let orphan = 0;
    await until(
      'the orphan runs',
      10_000,
      () => !!(orphan = procs(dir).find((p) => cmd(p) === 'sleep\x00300\x00') ?? 0),
    );
    const all = procs(dir);
    t.notOk(
      readFileSync(`/proc/${orphan}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(init),
      "the orphan is not the init's child",
    );
    const ps = await oci(root, 'ps', '--format', 'json', 'o1');
    t.equal(ps.code, 0, ps.err);
    const listed = JSON.parse(ps.out) as number[];
    t.ok(listed.includes(orphan), `the orphan ${orphan} is listed: ${ps.out}`);
    t.same(
      listed,
      procs(dirsOf(orphan).pids).sort((a, b) => a - b),
      'ps is cgroup.procs',
    );
    const k = await oci(root, 'kill', '--all', 'o1', 'KILL');
    t.equal(k.code, 0, k.err);
    await until('kill --all ends the orphan too', 10_000, () => all.every(gone));
    t.pass('nothing of the container is left');
  },
);

t.test('kill --all with another signal reaches every process; a paused container stays paused', async (t) => {
  if (!isRoot) return t.pass("the v1 hierarchies are root's here; the unprivileged pass checks the refusals above");
  const root = scratch(t);
  const init = await running(t, root, 't1', { pids: { limit: 64 } }, [
    '/bin/sh',
    '-c',
    '(sleep 300 &) ; exec sleep 301',
  ]);
  const dir = dirsOf(init).pids;
  const sleeps = () => procs(dir).filter((p) => /^sleep\0/.test(readFileSync(`/proc/${p}/cmdline`, 'latin1')));
  await until('both sleeps run', 10_000, () => sleeps().length === 2);
  const before = sleeps();
  t.equal((await oci(root, 'pause', 't1')).code, 0);
  const c = await oci(root, 'kill', '--all', 't1', 'CONT');
  t.equal(c.code, 0, c.err);
  t.equal(JSON.parse((await oci(root, 'state', 't1')).out).status, 'paused', 'a paused container stays paused');
  t.equal((await oci(root, 'resume', 't1')).code, 0);
  const k = await oci(root, 'kill', '--all', 't1', 'TERM');
  t.equal(k.code, 0, k.err);
  await until('TERM ends both sleeps, the orphan too', 10_000, () => before.every(gone));
  t.pass('ended');
});

t.test('update changes the live limits (felt inside, recorded); events --stats reports them', async (t) => {
  if (!isRoot) return t.pass("the v1 hierarchies are root's here; the unprivileged pass checks the refusals above");
  const root = scratch(t);
  await running(t, root, 'u1', { pids: { limit: 64 }, memory: { limit: 256 << 20 } });
  const fork = ['/bin/sh', '-c', 'for i in 1 2 3 4 5 6; do sleep 1 & done; wait; echo forked'];
  const before = await oci(root, 'exec', 'u1', ...fork);
  t.equal(before.out, 'forked\n', 'six children fit under 64');
  const resources = join(scratch(t), 'res.json');
  writeFileSync(resources, JSON.stringify({ pids: { limit: 5 } }));
  const u = await oci(root, 'update', '--resources', resources, '--memory', '128m', 'u1');
  t.equal(u.code, 0, u.err);
  const after = await oci(root, 'exec', 'u1', ...fork);
  t.match(after.err, /can't fork/, `pids.max 5 is felt inside:\n${after.err}`);
  const rec = JSON.parse(readFileSync(join(root, 'u1', 'state.json'), 'utf8'));
  t.same(rec.cgroup.resources, { pids: { limit: 5 }, memory: { limit: 128 << 20 } }, 'the state records them');
  const e = await oci(root, 'events', '--stats', 'u1');
  t.equal(e.code, 0, e.err);
  const ev = JSON.parse(e.out);
  t.equal(ev.type, 'stats');
  t.equal(ev.id, 'u1');
  t.equal(ev.data.pids.limit, 5);
  t.ok(ev.data.pids.current >= 2, `pids.current ${ev.data.pids.current}`);
  t.equal(ev.data.memory.usage.limit, 128 << 20);
  t.ok(ev.data.memory.usage.usage > 0 && ev.data.memory.usage.max > 0);
  t.ok(ev.data.cpu.usage.total > 0, 'cpu time in ns');
  t.match(e.out, /"swap":\{"limit":18446744073709551615,/, "no swap limit is Go's uint64 max, digit for digit");
  const bad = await oci(root, 'update', '--cpuset-cpus', '0-9999', 'u1');
  t.equal(bad.code, 1);
  t.match(bad.err, /cpuset\.cpus/, bad.err);
});

t.test('unified cgroup.* files that would pull a host process in are refused, at create and by update', async (t) => {
  if (!isRoot) return t.pass("the v1 hierarchies are root's here; the unified tree's files need root too");
  // A host process the container must never reach (tagged, killed by pid).
  const victim = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => victim.kill('SIGKILL'));
  const where = cgroupOf(victim.pid!);
  const root = scratch(t);
  await running(t, root, 'h1', { pids: { limit: 64 } });
  const resources = join(scratch(t), 'res.json');
  for (const key of ['cgroup.procs', 'cgroup.threads', 'cgroup.kill', 'cgroup.freeze', 'cgroup.subtree_control']) {
    writeFileSync(resources, JSON.stringify({ unified: { [key]: String(victim.pid) } }));
    const u = await oci(root, 'update', '--resources', resources, 'h1');
    t.equal(u.code, 1, `update ${key} refused`);
    t.match(u.err, /only cgroup\.max\.depth and cgroup\.max\.descendants/, u.err);
  }
  const bundle = makeBundle(scratch(t), ['/bin/true']);
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  cfg.linux.resources = { unified: { 'cgroup.procs': String(victim.pid) } };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  const c = await oci(root, 'run', '--bundle', bundle, 'h2');
  t.not(c.code, 0, 'run with cgroup.procs in unified refused');
  t.match(c.err, /unified\/cgroup\.procs/, c.err);
  t.equal(cgroupOf(victim.pid!), where, 'the host process never left its cgroup');
  t.ok(!gone(victim.pid!), 'and lives');
});

t.test('events streams stats and reports an OOM kill, then ends with the container', async (t) => {
  if (!isRoot) return t.pass("the v1 memory controller is root's here");
  const root = scratch(t);
  // The payload waits for /tmp/go, written once events is running.
  const init = await running(t, root, 'm1', { memory: { limit: 32 << 20, swap: 32 << 20 } }, [
    '/bin/sh',
    '-c',
    'while [ ! -e /tmp/go ]; do sleep 0.1; done; x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}',
  ]);
  const p = spawn(OCI_BIN, ['--root', root, 'events', '--interval', '200ms', 'm1'], {
    env: cleanEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const closed = once(p, 'close');
  await until('the first stats event', 10_000, () => out.includes('"type":"stats"'));
  writeFileSync(`/proc/${init}/root/tmp/go`, '');
  const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
  const [code] = (await closed) as [number | null];
  clearTimeout(timer);
  t.equal(code, 0, `events ends when the container stops: ${err}`);
  const evs = out
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  t.ok(
    evs.some((x) => x.type === 'stats' && x.id === 'm1' && x.data.memory.usage.limit === 32 << 20),
    'stats',
  );
  t.ok(
    evs.some((x) => x.type === 'oom' && x.id === 'm1'),
    `an oom event: ${out.slice(-300)}`,
  );
  t.equal(JSON.parse((await oci(root, 'state', 'm1')).out).status, 'stopped', 'it ended with the container');
});

t.test(
  '--cgroup-manager: disabled runs without a cgroup (one warning), systemd is refused, cgroupfs as before',
  async (t) => {
    const root = scratch(t);
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', 'exec sleep 300']);
    const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    cfg.linux.resources = { pids: { limit: 64 } };
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
    for (const flags of [['--cgroup-manager', 'systemd'], ['--systemd-cgroup']]) {
      const s = await ociDetached(root, ...flags, 'create', '--bundle', bundle, 's1');
      t.equal(s.code, 1, flags.join(' '));
      t.match(s.err, /--cgroup-manager systemd \(--systemd-cgroup\) is not supported.*Delegate=yes/);
      t.equal(s.err.trim().split('\n').length, 1, 'one line');
      t.equal((await oci(root, 'list', '-q')).out, '', 'nothing left');
    }
    const d = await ociDetached(root, '--cgroup-manager', 'disabled', 'create', '--bundle', bundle, 'd1');
    t.equal(d.code, 0, d.err);
    t.teardown(() => oci(root, 'delete', '--force', 'd1'));
    t.equal(d.err.match(/level=warning/g)?.length, 1, `one warning: ${d.err}`);
    t.match(d.err, /--cgroup-manager disabled: linux.resources and linux.cgroupsPath are not applied/);
    t.equal((await oci(root, 'start', 'd1')).code, 0);
    const init = JSON.parse((await oci(root, 'state', 'd1')).out).pid as number;
    t.equal(cgroupOf(init), cgroupOf(process.pid), 'the container is in our cgroups: none of its own');
    t.match((await oci(root, 'pause', 'd1')).err, /it has no cgroup/);
    t.equal((await oci(root, 'delete', '--force', 'd1')).code, 0);
    const bad = await oci(root, '--cgroup-manager', 'kernel', 'list');
    t.not(bad.code, 0);
    t.match(
      bad.err,
      /^error: option '--cgroup-manager <manager>' argument 'kernel' is invalid.*cgroupfs, systemd, disabled/,
    );
    if (!isRoot) return;
    const c = await ociDetached(root, '--cgroup-manager', 'cgroupfs', 'create', '--bundle', bundle, 'c1');
    t.equal(c.code, 0, c.err);
    t.teardown(() => oci(root, 'delete', '--force', 'c1'));
    const cinit = JSON.parse((await oci(root, 'state', 'c1')).out).pid as number;
    t.match(dirsOf(cinit).pids, /nodularity-c1-/, 'cgroupfs: a cgroup of its own');
  },
);

t.test("a createContainer hook runs in the container's cgroup, not the runtime's", async (t) => {
  const root = scratch(t);
  const out = scratch(t);
  chmodSync(out, 0o777);
  const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', 'exec sleep 300']);
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  // A cgroup as root (a limit); unprivileged none can be made here, and the container and its hooks share ours.
  if (isRoot) cfg.linux.resources = { pids: { limit: 64 } };
  // A host program: before pivot_root the hook's paths are the host's.
  cfg.hooks = {
    createContainer: [{ path: '/bin/sh', args: ['sh', '-c', `cat /proc/self/cgroup > ${out}/cc.cgroup`] }],
  };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  const c = await ociDetached(root, 'create', '--bundle', bundle, 'h1');
  t.equal(c.code, 0, c.err);
  t.teardown(() => oci(root, 'delete', '--force', 'h1'));
  const init = JSON.parse((await oci(root, 'state', 'h1')).out).pid as number;
  const hook = readFileSync(join(out, 'cc.cgroup'), 'utf8');
  t.equal(hook, cgroupOf(init), "the hook's cgroups are the container's, in every hierarchy");
  if (!isRoot) {
    t.equal(hook, cgroupOf(process.pid), 'no cgroup of its own unprivileged: ours');
    return;
  }
  t.match(dirsOf(init).pids, /\/nodularity-/, 'the container has a cgroup of its own');
  t.not(hook, cgroupOf(process.pid), "not the runtime's");
  t.ok(procs(dirsOf(init).pids).includes(init), 'the init is listed in it');
});
