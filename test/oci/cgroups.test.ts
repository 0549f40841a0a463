// nodularity-oci and the container's cgroup (issue 17): an exec'd process
// joins the container's cgroup in every hierarchy before its payload runs
// (listed in cgroup.procs, frozen by pause, ended by kill --all); ps reads
// cgroup.procs; kill --all goes through the cgroup; update changes the live
// limits; events --stats prints runc's stats object; --cgroup-manager.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, scratch, type Tap } from '../helpers/env.js';
import { makeBundle, oci, ociDetached, pidsTagged, until } from './helpers.js';

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
