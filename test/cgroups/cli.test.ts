// Apptainer's resource-limit flags through the CLI installed as `apptainer`:
// --memory, --pids-limit, --cpuset-cpus, their APPTAINER_ variables,
// --apply-cgroups TOML, and bad input as one FATAL line. Limits are checked
// from inside (a fork refused, an OOM kill's exit status, the CPUs allowed)
// and the host is checked afterwards (no cgroup left).
import t from 'tap';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hierarchies } from '../../lib/cgroups/index.js';
import { isRoot, scratch } from '../helpers/env.js';
import { installAs, run } from '../singularity/apptainer-cli.js';
import { makeSandbox } from '../singularity/fixtures.js';

let image: string;
let cli: string;
t.before(() => {
  image = makeSandbox(t);
  cli = installAs(t, 'apptainer');
});

const h = hierarchies();
/** Our cgroups under the caller's own cgroup in every hierarchy (the CLI names them nodularity-PID-N). */
const ours = () =>
  [...new Set([...[...h.v1.values()].map((x) => x.own), h.v2!.own])].flatMap((d) =>
    readdirSync(d).filter((e) => /^nodularity-\d+-\d+$/.test(e) && !existsSync(`/proc/${e.split('-')[1]}`)),
  );

const sh = (flags: string[], script: string, env: NodeJS.ProcessEnv = {}) =>
  run(cli, ['exec', ...flags, image, '/bin/sh', '-c', script], env);

t.test('limits from flags and from APPTAINER_ variables are felt inside', async (t) => {
  if (!isRoot) return t.pass('unprivileged: see the refusal test');
  const forks = 'for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo end';
  const p = sh(['--pids-limit', '5'], forks);
  t.match(p.err, /can't fork/, `--pids-limit 5:\n${p.err}`);
  const e = sh([], forks, { APPTAINER_PIDS_LIMIT: '5' });
  t.match(e.err, /can't fork/, 'APPTAINER_PIDS_LIMIT=5');
  const none = sh([], forks);
  t.notMatch(none.err, /can't fork/, 'no limit, no refusal');

  const oom = sh(['--memory', '32m'], 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}');
  t.equal(oom.code, 137, `the OOM killer ended it (128+SIGKILL):\n${oom.err}`);
  const cpus = sh(
    ['--cpuset-cpus', '0', '--cpus', '0.5', '--memory-reservation', '16m'],
    'grep Cpus_allowed_list /proc/self/status',
  );
  t.match(cpus.out, /Cpus_allowed_list:\s+0$/m);
  t.same(ours(), [], 'no cgroup left behind');
});

t.test('--apply-cgroups TOML as Apptainer reads it', async (t) => {
  const dir = scratch(t);
  const toml = join(dir, 'cgroups.toml');
  writeFileSync(toml, '[pids]\n  limit = 5\n[memory]\n  limit = 536870912\n');
  if (isRoot) {
    const r = sh(['--apply-cgroups', toml], 'for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait');
    t.match(r.err, /can't fork/, 'the TOML pids limit holds');
  }
  const both = sh(['--apply-cgroups', toml, '--memory', '1g'], 'true');
  t.equal(both.code, 255);
  t.match(both.err, /^FATAL: {3}--apply-cgroups: cannot be used with --memory/);
  writeFileSync(join(dir, 'bad.toml'), '[pids\nlimit = 5\n');
  const bad = sh(['--apply-cgroups', join(dir, 'bad.toml')], 'true');
  t.match(bad.err, new RegExp(`^FATAL: {3}--apply-cgroups: ${join(dir, 'bad.toml')} is not TOML`));
  t.equal(bad.err.trim().split('\n').length, 1, 'one line');
  writeFileSync(join(dir, 'net.toml'), '[network]\n  classID = 1\n');
  const net = sh(['--apply-cgroups', join(dir, 'net.toml')], 'true');
  t.match(net.err, /network.*not supported/, 'a section nodularity cannot apply is refused, not ignored');
});

t.test('bad values are one FATAL line naming the flag', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--memory', 'lots'], /^FATAL: {3}--memory: must be a size such as 512m/],
    [['--cpus', '-1'], /^FATAL: {3}--cpus: must be a number of CPUs/],
    [['--cpu-shares', '1'], /^FATAL: {3}--cpu-shares: must be a whole number from 2 to 262144/],
    [['--memory-swap', '1g'], /^FATAL: {3}--memory-swap: needs --memory/],
    [['--cpuset-cpus', '0;reboot'], /^FATAL: {3}--cpuset-cpus: must be a list/],
    [['--blkio-weight', '5'], /^FATAL: {3}--blkio-weight: must be a whole number from 10 to 1000/],
  ];
  for (const [flags, msg] of cases) {
    const r = sh(flags, 'echo ran');
    t.equal(r.code, 255, flags.join(' '));
    t.match(r.err, msg, flags.join(' '));
    t.notMatch(r.err, /\n\s+at /, 'no stack trace');
    t.equal(r.out, '', 'nothing ran');
  }
});

t.test('unprivileged without a delegated cgroup: limits are refused with what to do', async (t) => {
  if (isRoot) return t.pass('root may write the hierarchies here');
  const r = sh(['--memory', '64m'], 'echo ran');
  t.equal(r.code, 255);
  t.match(r.err, /^FATAL: {3}.*no cgroup hierarchy is writable.*Delegate=yes/);
  t.equal(r.err.trim().split('\n').length, 1, 'one line');
  t.equal(r.out, '');
});
