// prepareExec(): the Apptainer front end's prepared launch. The image is
// resolved, its environment scripts evaluated and the launch planned once;
// each launch changes only its args, variables, cwd and binds.
import t from 'tap';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { prepareExec } from '../../lib/singularity/index.js';
import { SpecError } from '../../lib/errors.js';
import { openFds, scratch, zombieChildren } from '../helpers/env.js';
import { makeSandbox } from './fixtures.js';

const out: ['ignore', 'pipe', 'pipe'] = ['ignore', 'pipe', 'pipe'];
const text = (b: Buffer | undefined) => b?.toString() ?? '';

t.test('env scripts run once; each launch gets its own args, variables, cwd and binds', async (t) => {
  const count = scratch(t);
  // The env script counts its runs in a bound host directory.
  const image = makeSandbox(t, { env: { '90-count.sh': 'echo x >> /count/runs\nexport FROM_IMAGE=img\n' } });
  const input = scratch(t);
  writeFileSync(join(input, 'job.txt'), 'job input\n');
  const p = await prepareExec(image, ['/bin/sh', '-c', 'echo "$FROM_IMAGE $JOB $(pwd)"'], {
    binds: [`${count}:/count`],
    env: { FIXED: 'yes' },
  });
  t.teardown(() => p.close());
  t.ok(
    p.environment.includes('FROM_IMAGE=img') && p.environment.includes('FIXED=yes'),
    'the image env and --env are in the prepared environment',
  );
  const runs: string[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await p.run({ stdio: out, env: { JOB: `job-${i}` }, cwd: i === 2 ? '/tmp' : undefined });
    t.equal(r.exitCode, 0, text(r.stderr));
    runs.push(text(r.stdout).trim());
  }
  t.match(runs[0], /^img job-0 /);
  t.match(runs[1], /^img job-1 /);
  t.equal(runs[2], 'img job-2 /tmp', 'a launch cwd');
  const withBind = await p.run({
    stdio: out,
    args: ['/bin/cat', '/in/job.txt'],
    binds: [{ source: input, destination: '/in', readonly: true }],
  });
  t.equal(text(withBind.stdout), 'job input\n', 'a per-launch bind and args');
  const plain = await p.run({ stdio: out, args: ['/bin/sh', '-c', 'echo "${JOB:-none} $FIXED"'] });
  t.equal(text(plain.stdout), 'none yes\n', "a launch's variables do not stay for the next");
  t.equal(
    readFileSync(join(count, 'runs'), 'utf8'),
    'x\n',
    "the image's environment scripts ran once for five launches",
  );
});

t.test('bad per-launch input is one SpecError naming it; close() leaves nothing', async (t) => {
  const image = makeSandbox(t);
  const fds = openFds();
  const tmp = scratch(t);
  const before = readdirSync(tmp);
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp; // where the session files (passwd, group) go
  t.teardown(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  });
  const p = await prepareExec(image, ['/bin/true']);
  t.not(readdirSync(tmp).length, before.length, 'the session files exist while the image is prepared');
  t.throws(() => p.spawn({ env: { 'A=B': 'x' } }), SpecError, 'a bad variable name');
  t.throws(() => p.spawn({ env: { A: 'x\0y' } }), SpecError, 'a NUL in a value');
  t.throws(() => p.spawn({ args: ['/no/such'] }), { name: 'SpecError', message: /args\[0\]/ });
  const r = await p.run({ stdio: out });
  t.equal(r.exitCode, 0);
  p.close();
  p.close();
  t.throws(() => p.spawn(), /closed/, 'a closed image launches nothing');
  t.same(readdirSync(tmp), before, 'the session files are gone');
  t.same(openFds(), fds, 'no fd left open (the pinned rootfs is closed)');
  t.same(zombieChildren(), [], 'no zombie');
});

t.test('an instance is not prepared; a missing image fails before anything is made', async (t) => {
  await t.rejects(prepareExec('instance://x', ['/bin/true']), { name: 'SpecError', message: /image/ });
  const dir = scratch(t);
  mkdirSync(join(dir, 'empty'));
  await t.rejects(prepareExec(join(dir, 'nope'), ['/bin/true']), { name: 'SpecError', message: /does not exist/ });
});

t.test('close() with launches in flight: they run to the end; what they need goes after', async (t) => {
  const image = makeSandbox(t);
  const tmp = scratch(t);
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  t.teardown(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  });
  const p = await prepareExec(image, ['/bin/sh', '-c', 'sleep 0.3; id -un']);
  const running = [p.run({ stdio: out }), p.run({ stdio: out })];
  p.close();
  t.throws(() => p.spawn(), /closed/, 'no new launch after close()');
  for (const r of await Promise.all(running)) {
    t.equal(r.exitCode, 0, `a launch started before close() ran to the end: ${text(r.stderr)}`);
    t.not(text(r.stdout).trim(), '', 'with its /etc/passwd (a session file) bound');
  }
  t.same(readdirSync(tmp), [], 'the session files went once both had exited');
});
