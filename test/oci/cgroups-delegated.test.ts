// nodularity-oci for an unprivileged user in a cgroup v2 subtree delegated to
// it (systemd's Delegate=yes, a batch system's job cgroup): the container's
// cgroup is made in the subtree, and exec, ps, pause/resume, update, events
// --stats, kill --all and delete work there through v2's own files
// (cgroup.procs, cgroup.freeze, cgroup.kill, hugetlb.*). The root pass
// delegates a subtree to the test user (chown, as systemd does), puts a
// shell in a leaf of it and runs the verbs as that user; the host afterwards
// holds nothing of the container.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hierarchies } from '../../lib/cgroups/index.js';
import { isRoot, scratch } from '../helpers/env.js';
import { makeBundle, OCI_BIN } from './helpers.js';
import { requireFreshDist } from '../helpers/cli.js';

t.test('a delegated v2 subtree: every cgroup verb as the unprivileged user', async (t) => {
  if (!isRoot) return t.pass('the root pass delegates a subtree to nodularity-test and runs this as that user');
  requireFreshDist();
  const h = hierarchies();
  const user = process.env.NODULARITY_TEST_USER || 'nodularity-test';
  const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
  const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }));
  const name = `nodularity-ocideleg-${process.pid}`;
  const deleg = join(h.v2!.mount, name);
  const leaf = join(deleg, 'launcher');
  mkdirSync(deleg);
  mkdirSync(leaf);
  t.teardown(() => {
    for (const d of [join(deleg, 'c1'), leaf, deleg]) if (existsSync(d)) rmdirSync(d);
  });
  for (const d of [deleg, leaf])
    for (const f of ['', 'cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']) chownSync(join(d, f), uid, gid);
  const dir = scratch(t);
  const bundle = makeBundle(join(dir, 'bundle'), ['/bin/sh', '-c', 'exec sleep 300']);
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  cfg.linux.cgroupsPath = `/${name}/c1`;
  cfg.linux.resources = { hugepageLimits: [{ pageSize: '2MB', limit: 0 }] };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  writeFileSync(join(dir, 'res.json'), JSON.stringify({ hugepageLimits: [{ pageSize: '2MB', limit: 2 << 20 }] }));
  const root = join(dir, 'state');
  const o = `${OCI_BIN} --root ${root}`;
  // Each step prints one line "NAME<TAB>exit<TAB>output" (output on one line).
  const script = [
    'step() { n=$1; shift; out=$("$@" 2>&1); printf "%s\\t%s\\t%s\\n" "$n" "$?" "$(echo "$out" | tr "\\n" " ")"; }',
    // The container keeps create's stdout: a file, not the pipe of $(...).
    `${o} create --bundle ${bundle} c1 >${dir}/create.out 2>&1 </dev/null; printf "create\\t%s\\t%s\\n" "$?" "$(tr "\\n" " " <${dir}/create.out)"`,
    `step start ${o} start c1`,
    `step exec ${o} exec c1 cat /proc/self/cgroup`,
    `step ps ${o} ps --format json c1`,
    `step pause ${o} pause c1`,
    `step state ${o} state c1`,
    `step resume ${o} resume c1`,
    `step update ${o} update --resources ${join(dir, 'res.json')} c1`,
    `step hugetlb cat ${join(deleg, 'c1', 'hugetlb.2MB.max')}`,
    `step events ${o} events --stats c1`,
    `step kill ${o} kill --all c1 KILL`,
    'sleep 0.5',
    `step delete ${o} delete c1`,
  ].join('\n');
  writeFileSync(join(dir, 'steps.sh'), script);
  execFileSync('chown', ['-R', `${uid}:${gid}`, dir]);
  execFileSync('chmod', ['-R', 'a+rX', dir]);
  const out = execFileSync(
    'sh',
    [
      '-c',
      `echo $$ > ${leaf}/cgroup.procs && exec setpriv --reuid=${uid} --regid=${gid} --init-groups sh ${dir}/steps.sh`,
    ],
    { encoding: 'utf8', cwd: dir, timeout: 120_000 },
  );
  const steps = new Map(
    out
      .trim()
      .split('\n')
      .map((l) => [l.split('\t')[0], l.split('\t').slice(1)] as const),
  );
  const step = (n: string) => {
    const [code, text] = steps.get(n) ?? ['?', 'missing'];
    t.equal(code, '0', `${n}: ${text}`);
    return text ?? '';
  };
  step('create');
  step('start');
  t.match(step('exec'), new RegExp(`0::/${name}/c1 `), "exec joined the container's cgroup in the delegated subtree");
  const pids = JSON.parse(step('ps')) as number[];
  t.ok(pids.length >= 2, `ps lists the init and the payload: ${pids}`);
  step('pause');
  t.match(step('state'), /"status": "paused"/, 'paused through cgroup.freeze');
  step('resume');
  step('update');
  t.equal(step('hugetlb').trim(), String(2 << 20), 'update wrote hugetlb.2MB.max');
  const ev = JSON.parse(step('events'));
  t.equal(ev.type, 'stats');
  t.ok(ev.data.hugetlb['2MB'], 'hugetlb figures from the v2 tree');
  step('kill');
  step('delete');
  t.notOk(existsSync(join(deleg, 'c1')), 'the cgroup went with the container');
  for (const p of pids)
    t.notOk(
      existsSync(`/proc/${p}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${p}/status`, 'utf8')),
      `${p} is gone`,
    );
});
