// oci pause/resume through the container's cgroup freezer (issue 17): a
// running container with a cgroup is frozen (status "paused", its processes
// get no CPU) and thawed; one without a cgroup is refused with the reason;
// delete --force of a paused container leaves nothing.
import t from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, scratch } from '../helpers/env.js';
import { cleanEnv, makeBundle, OCI_BIN, oci, pidsTagged, until } from './helpers.js';

async function create(root: string, bundle: string, id: string): Promise<number | null> {
  const fd = openSync(join(bundle, `stdio-${id}`), 'a+');
  try {
    const p = spawn(OCI_BIN, ['--root', root, 'create', '--bundle', bundle, id], {
      env: cleanEnv,
      stdio: ['ignore', fd, fd],
    });
    return await new Promise((r) => p.once('exit', (c) => r(c)));
  } finally {
    closeSync(fd);
  }
}
const status = async (root: string, id: string) => JSON.parse((await oci(root, 'state', id)).out).status as string;
/** utime + stime of PID, clock ticks. */
const cpu = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};

t.test('pause freezes every process, resume thaws them; state says paused', async (t) => {
  const root = scratch(t);
  const tag = `oci-pause-${process.pid}`;
  const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `while :; do :; done # ${tag}`]);
  // A cgroup: a pids limit (root can write the hierarchies here).
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  cfg.linux.resources = { pids: { limit: 64 } };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  const code = await create(root, bundle, 'p1');
  if (!isRoot) {
    // Unprivileged without a delegated cgroup, limits are refused at create with what to do.
    t.equal(code, 1);
    t.match(readFileSync(join(bundle, 'stdio-p1'), 'utf8'), /Delegate=yes/);
    return;
  }
  t.equal(code, 0);
  t.teardown(async () => {
    await oci(root, 'resume', 'p1');
    await oci(root, 'delete', '--force', 'p1');
  });
  t.equal((await oci(root, 'start', 'p1')).code, 0);
  await until('the payload spins', 10_000, () => pidsTagged(tag).length > 0);
  // The payload's shell (the init's argv holds the tag too, and it only waits).
  const pid = pidsTagged(tag).find((p) => !readFileSync(`/proc/${p}/cmdline`, 'latin1').startsWith('nodularity-init'))!;
  const p = await oci(root, 'pause', 'p1');
  t.equal(p.code, 0, p.err);
  t.equal(await status(root, 'p1'), 'paused');
  const a = cpu(pid);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(cpu(pid), a, 'no CPU time while paused');
  const again = await oci(root, 'pause', 'p1');
  t.equal(again.code, 1);
  t.match(again.err, /cannot pause p1: container not running \(paused\)/);
  const r = await oci(root, 'resume', 'p1');
  t.equal(r.code, 0, r.err);
  t.equal(await status(root, 'p1'), 'running');
  await until('the payload runs again', 10_000, () => cpu(pid) > a);
  t.pass('running again (its CPU time grows)');
  t.equal((await oci(root, 'pause', 'p1')).code, 0);
  const d = await oci(root, 'delete', '--force', 'p1');
  t.equal(d.code, 0, d.err);
  t.same(pidsTagged(tag), [], 'a paused container is deleted whole');
  t.notOk(existsSync(join(root, 'p1')));
});

t.test('a container without a cgroup cannot be paused, and says why', async (t) => {
  const root = scratch(t);
  const tag = `oci-nocg-${process.pid}`;
  const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `sleep 300 # ${tag}`]);
  t.equal(await create(root, bundle, 'n1'), 0);
  t.teardown(() => oci(root, 'delete', '--force', 'n1'));
  t.equal((await oci(root, 'start', 'n1')).code, 0);
  const p = await oci(root, 'pause', 'n1');
  t.equal(p.code, 1);
  t.match(p.err, /cannot pause n1: it has no cgroup/);
  t.equal(await status(root, 'n1'), 'running');
  t.equal((await oci(root, 'delete', '--force', 'n1')).code, 0);
  t.same(pidsTagged(tag), []);
});
