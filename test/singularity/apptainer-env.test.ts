// Apptainer's configuration through the environment (issue 13, items 1 and
// 2), through the CLI installed as `apptainer`: every flag's APPTAINER_ and
// SINGULARITY_ twins with Apptainer's precedence (flag > APPTAINER_ >
// SINGULARITY_; binds added, not replaced), and the environment the payload
// gets (APPTAINER_CONTAINER, _NAME, _COMMAND, _BIND, _ENVIRONMENT and their
// SINGULARITY_ twins; none of the host's own; LANG=C when clean; protected
// names refused with Apptainer's warning).
import t from 'tap';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { scratch } from '../helpers/env.js';
import { installAs, run } from './apptainer-cli.js';
import { makeSandbox } from './fixtures.js';
import { makeLayout } from '../hostile/fixtures.js';

let image: string;
let cli: string;
let dirs: Record<'a' | 'b' | 'c' | 'h' | 'h2', string>;
let envFile: string;
t.before(() => {
  image = makeSandbox(t, {
    runscript: '#!/bin/sh\necho "command=$APPTAINER_COMMAND"\n',
    test: '#!/bin/sh\necho "command=$APPTAINER_COMMAND"\n',
  });
  cli = installAs(t, 'apptainer');
  const d = scratch(t, 'nodularity-knobs-');
  dirs = { a: join(d, 'a'), b: join(d, 'b'), c: join(d, 'c'), h: join(d, 'h'), h2: join(d, 'h2') };
  for (const [k, p] of Object.entries(dirs)) {
    mkdirSync(p);
    writeFileSync(join(p, 'f'), `${k.toUpperCase()}\n`);
  }
  envFile = join(d, 'job.env');
  writeFileSync(envFile, 'FROM_FILE=yes\n');
});

interface Row {
  name: string;
  args?: string[];
  env: (d: typeof dirs) => NodeJS.ProcessEnv;
  script: string;
  out: string | RegExp;
  err?: RegExp;
  code?: number;
}

// One row per knob behaviour; each fails if the knob (or its precedence) is not read.
const rows: Row[] = [
  {
    name: 'APPTAINER_PWD sets the working directory',
    env: () => ({ APPTAINER_PWD: '/etc' }),
    script: 'pwd',
    out: '/etc\n',
  },
  {
    name: 'APPTAINER_TARGET_PWD, the second key of --pwd',
    env: () => ({ APPTAINER_TARGET_PWD: '/usr' }),
    script: 'pwd',
    out: '/usr\n',
  },
  {
    name: "SINGULARITY_PWD alone is used, with Apptainer's INFO",
    env: () => ({ SINGULARITY_PWD: '/bin' }),
    script: 'pwd',
    out: '/bin\n',
    err: /^INFO: {4}Environment variable SINGULARITY_PWD is set, but APPTAINER_PWD is preferred$/m,
  },
  {
    name: 'APPTAINER_ wins over SINGULARITY_, with a warning when they differ',
    env: () => ({ APPTAINER_PWD: '/etc', SINGULARITY_PWD: '/bin' }),
    script: 'pwd',
    out: '/etc\n',
    err: /^WARNING: SINGULARITY_PWD and APPTAINER_PWD have different values, using the latter$/m,
  },
  {
    name: 'the flag wins over both',
    args: ['--pwd', '/sbin'],
    env: () => ({ APPTAINER_PWD: '/etc', SINGULARITY_PWD: '/bin' }),
    script: 'pwd',
    out: '/sbin\n',
  },
  {
    name: '--cwd is --pwd, and wins over APPTAINER_CWD',
    args: ['--cwd', '/usr'],
    env: () => ({ APPTAINER_CWD: '/etc' }),
    script: 'pwd',
    out: '/usr\n',
  },
  {
    name: 'APPTAINER_CLEANENV=1: the host environment stays out, LANG=C',
    env: () => ({ APPTAINER_CLEANENV: '1', HOST_MARK: 'x', LANG: 'en_US.UTF-8' }),
    script: 'echo ${HOST_MARK:-clean} $LANG',
    out: 'clean C\n',
  },
  {
    name: 'APPTAINER_CLEANENV=false wins over SINGULARITY_CLEANENV=1',
    env: () => ({ APPTAINER_CLEANENV: 'false', SINGULARITY_CLEANENV: '1', HOST_MARK: 'x' }),
    script: 'echo ${HOST_MARK:-clean}',
    out: 'x\n',
  },
  {
    name: 'SINGULARITY_CONTAINALL=t: clean and a fresh /tmp',
    env: () => ({ SINGULARITY_CONTAINALL: 't', HOST_MARK: 'x', HOME: '/home/job-knob' }),
    script: 'echo ${HOST_MARK:-clean}; ls -A /tmp | wc -l',
    out: 'clean\n0\n',
  },
  {
    name: 'APPTAINER_BIND and APPTAINER_BINDPATH add to -B (site binds stay)',
    args: ['-B', 'A:/a'],
    env: (d) => ({ APPTAINER_BIND: `${d.b}:/b`, APPTAINER_BINDPATH: `${d.c}:/c` }),
    script: 'cat /a/f /b/f /c/f; echo "$APPTAINER_BIND"',
    out: 'A\nB\nC\n/a,/b,/c\n',
  },
  {
    name: 'SINGULARITY_BINDPATH when there is no APPTAINER_BINDPATH',
    env: (d) => ({ SINGULARITY_BINDPATH: `${d.b}:/b` }),
    script: 'cat /b/f',
    out: 'B\n',
  },
  {
    name: 'APPTAINER_HOME; the flag wins over it',
    env: (d) => ({ APPTAINER_HOME: `${d.h}:/home/job` }),
    script: 'echo $HOME; cat ~/f',
    out: '/home/job\nH\n',
  },
  {
    name: '--home wins over APPTAINER_HOME',
    args: ['--home', 'H2:/home/flag'],
    env: (d) => ({ APPTAINER_HOME: `${d.h}:/home/job` }),
    script: 'echo $HOME; cat ~/f',
    out: '/home/flag\nH2\n',
  },
  // (The home here lies under /tmp, bound anyway: the mount table tells whether home itself was bound.)
  {
    name: 'home is bound by default',
    env: (d) => ({ HOME: d.h }),
    script: 'grep -c " $HOME " /proc/self/mountinfo || true',
    out: '1\n',
  },
  {
    name: 'APPTAINER_NO_HOME=1: the home directory is not bound',
    env: (d) => ({ APPTAINER_NO_HOME: '1', HOME: d.h }),
    script: 'grep -c " $HOME " /proc/self/mountinfo || true',
    out: '0\n',
  },
  {
    name: 'APPTAINER_HOSTNAME',
    env: () => ({ APPTAINER_HOSTNAME: 'knob-host' }),
    script: 'hostname',
    out: 'knob-host\n',
  },
  {
    name: 'APPTAINER_NOSHIMINIT=1: the payload is PID 1',
    env: () => ({ APPTAINER_NOSHIMINIT: '1' }),
    script: 'echo $$',
    out: '1\n',
  },
  { name: 'without it, an init is PID 1', env: () => ({}), script: 'echo $$', out: /^(?!1\n)\d+\n$/ },
  {
    name: 'APPTAINER_SCRATCH: comma list of fresh directories',
    env: () => ({ APPTAINER_SCRATCH: '/scr1, /scr2' }),
    script: 'touch /scr1/x /scr2/y && ls -A /scr1 /scr2 | tr "\\n" " "',
    out: '/scr1: x  /scr2: y ',
  },
  { name: 'APPTAINER_ENV_FILE', env: () => ({ APPTAINER_ENV_FILE: envFile }), script: 'echo $FROM_FILE', out: 'yes\n' },
  {
    name: 'APPTAINER_WRITABLE_TMPFS=true',
    env: () => ({ APPTAINER_WRITABLE_TMPFS: 'true' }),
    script: 'touch /new && echo written',
    out: 'written\n',
  },
  {
    name: 'the default seccomp filter is on',
    env: () => ({}),
    script: 'grep ^Seccomp: /proc/self/status',
    out: 'Seccomp:\t2\n',
  },
  {
    name: 'APPTAINER_SECURITY=seccomp:unconfined turns it off',
    env: () => ({ APPTAINER_SECURITY: 'seccomp:unconfined' }),
    script: 'grep ^Seccomp: /proc/self/status',
    out: 'Seccomp:\t0\n',
  },
  { name: 'APPTAINER_FAKEROOT=1', env: () => ({ APPTAINER_FAKEROOT: '1' }), script: 'id -u', out: '0\n' },
  {
    name: 'a value that is not a boolean: FATAL naming the variable, 255',
    env: () => ({ APPTAINER_FAKEROOT: 'maybe' }),
    script: 'true',
    out: '',
    code: 255,
    err: /^FATAL: {3}APPTAINER_FAKEROOT: "maybe" is not a boolean/,
  },
  {
    name: 'APPTAINER_NETWORK is checked as --network is',
    env: () => ({ APPTAINER_NET: '1', APPTAINER_NETWORK: 'bridge' }),
    script: 'true',
    out: '',
    code: 255,
    err: /^FATAL: {3}--network: must be host or none, not "bridge"\n$/,
  },
];

t.test('environment knobs: flag > APPTAINER_ > SINGULARITY_, binds added (table)', async (t) => {
  for (const row of rows) {
    const args = (row.args ?? []).map((a) => a.replace(/^(A|H2)(?=:)/, (k) => (k === 'A' ? dirs.a : dirs.h2)));
    const r = run(cli, ['exec', ...args, image, '/bin/sh', '-c', row.script], row.env(dirs));
    t.equal(r.code, row.code ?? 0, `${row.name}: status (stderr: ${r.err})`);
    if (typeof row.out === 'string') t.equal(r.out, row.out, row.name);
    else t.match(r.out, row.out, row.name);
    if (row.err) t.match(r.err, row.err, `${row.name}: stderr`);
  }
});

t.test("the container's APPTAINER_* variables, as Apptainer sets them", async (t) => {
  const show =
    'for v in CONTAINER NAME COMMAND BIND ENVIRONMENT; do eval "echo $v=\\$APPTAINER_$v \\$SINGULARITY_$v"; done';
  // A relative image path: APPTAINER_CONTAINER is absolute, as Apptainer gives it.
  const r = run(
    cli,
    ['exec', '-B', `${dirs.a}:/a,${dirs.b}`, basename(image), '/bin/sh', '-c', show],
    {},
    { cwd: dirname(image) },
  );
  t.equal(r.code, 0, r.err);
  t.equal(
    r.out,
    [
      `CONTAINER=${image} ${image}`,
      `NAME=${basename(image)} ${basename(image)}`,
      'COMMAND=exec exec',
      `BIND=/a,${dirs.b} /a,${dirs.b}`,
      'ENVIRONMENT=/.singularity.d/env/91-environment.sh /.singularity.d/env/91-environment.sh',
      '',
    ].join('\n'),
  );
  t.equal(run(cli, ['run', image]).out, 'command=run\n');
  t.equal(run(cli, ['test', image]).out, 'command=test\n');
  t.equal(run(cli, ['shell', image], {}, { input: 'echo "command=$APPTAINER_COMMAND"\n' }).out, 'command=shell\n');
});

t.test("the host's own APPTAINER_*/SINGULARITY_* settings do not reach the payload", async (t) => {
  const r = run(cli, ['exec', image, '/bin/sh', '-c', 'env | grep -c "SITE_SETTING" || true'], {
    APPTAINER_SITE_SETTING: 'x',
    SINGULARITY_SITE_SETTING: 'y',
    APPTAINER_CACHEDIR: '/nowhere-used',
  });
  t.equal(r.out, '0\n', r.err);
});

t.test(
  'APPTAINER_CACHEDIR holds the image cache (in a directory of ours); NODULARITY_CACHE overrides it',
  async (t) => {
    const d = scratch(t, 'nodularity-cachedir-');
    const { layout } = await makeLayout(d);
    // The layout has no programs: the pull into the cache happens, the exec is refused (127).
    const app = join(d, 'app-cache'),
      sing = join(d, 'sing-cache'),
      ours = join(d, 'ours');
    t.equal(
      run(cli, ['exec', `oci:${layout}`, '/bin/true'], { APPTAINER_CACHEDIR: app, SINGULARITY_CACHEDIR: sing }).code,
      127,
    );
    t.ok(existsSync(join(app, 'nodularity')), 'the cache is in $APPTAINER_CACHEDIR/nodularity');
    t.notOk(existsSync(sing), 'SINGULARITY_CACHEDIR loses to APPTAINER_CACHEDIR');
    t.equal(
      run(cli, ['exec', `oci:${layout}`, '/bin/true'], { SINGULARITY_CACHEDIR: sing, NODULARITY_CACHE: ours }).code,
      127,
    );
    t.ok(existsSync(ours), 'NODULARITY_CACHE wins');
    t.notOk(existsSync(sing));
    t.equal(run(cli, ['exec', `oci:${layout}`, '/bin/true'], { SINGULARITY_CACHEDIR: sing }).code, 127);
    t.ok(existsSync(join(sing, 'nodularity')), 'SINGULARITY_CACHEDIR alone');
  },
);

t.test("protected names: APPTAINERENV_HOME and friends refused with Apptainer's warning", async (t) => {
  const r = run(cli, ['exec', image, '/bin/sh', '-c', 'echo "$HOME ${APPTAINER_SHELL:-unset} $JOB"'], {
    HOME: dirs.h,
    APPTAINERENV_HOME: '/evil',
    SINGULARITYENV_APPTAINER_SHELL: '/evil/sh',
    APPTAINERENV_JOB: 'ok',
  });
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `${dirs.h} unset ok\n`, 'HOME and APPTAINER_SHELL unchanged, the rest applied');
  t.match(r.err, /^WARNING: Overriding HOME environment variable with APPTAINERENV_HOME is not permitted$/m);
  t.match(
    r.err,
    /^WARNING: Overriding APPTAINER_SHELL environment variable with SINGULARITYENV_APPTAINER_SHELL is not permitted$/m,
  );
});

t.test('--cleanenv: LANG=C, which APPTAINERENV_LANG may change; APPTAINERENV_ wins over SINGULARITYENV_', async (t) => {
  t.equal(run(cli, ['exec', '-e', image, '/bin/sh', '-c', 'echo $LANG'], { LANG: 'de_DE.UTF-8' }).out, 'C\n');
  t.equal(
    run(cli, ['exec', '-e', image, '/bin/sh', '-c', 'echo $LANG'], { APPTAINERENV_LANG: 'en_GB.UTF-8' }).out,
    'en_GB.UTF-8\n',
  );
  const r = run(cli, ['exec', image, '/bin/sh', '-c', 'echo $X'], { APPTAINERENV_X: 'a', SINGULARITYENV_X: 's' });
  t.equal(r.out, 'a\n');
  t.match(
    r.err,
    /^WARNING: Skipping environment variable \[SINGULARITYENV_X=s\], X is already overridden with different value \[a\]$/m,
  );
});
