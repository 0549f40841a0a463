// Apptainer's behaviour where pilots depend on it (issue 13, items 3, 5-8),
// through the CLI installed as `apptainer`: shell and run defaults, the
// flags nodularity lacked (--cwd, --no-mount, relative -B, --no-eval, the
// capability flags, --nv/--rocm against a fake library list and ldconfig),
// FATAL/WARNING/INFO and the exit codes, the version line and the name the
// CLI is installed under, and --help on the namespaces it always creates.
import t from 'tap';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, scratch } from '../helpers/env.js';
import { installAs, run } from './apptainer-cli.js';
import { makeSandbox } from './fixtures.js';

let image: string;
let cli: string;
let work: string;
t.before(() => {
  image = makeSandbox(t, { files: { 'not-exec': 'plain file\n', myshell: '#!/bin/sh\necho "myshell $*"\n' } });
  chmodSync(join(image, 'not-exec'), 0o644);
  cli = installAs(t, 'apptainer');
  work = scratch(t, 'nodularity-flags-');
  chmodSync(work, 0o755);
  mkdirSync(join(work, 'data'));
  writeFileSync(join(work, 'data', 'f'), 'DATA\n');
});

const sh = (args: string[], script: string, env: NodeJS.ProcessEnv = {}, cwd = '/') =>
  run(cli, ['exec', ...args, image, '/bin/sh', '-c', script], env, { cwd });
const mounted = (p: string) => `grep -q " ${p} " /proc/self/mountinfo && echo 1 || echo 0`;

t.test('shell: $APPTAINER_SHELL or --shell, else /bin/bash --norc when the image has it, else /bin/sh', async (t) => {
  const cmdline = 'tr "\\0" " " < /proc/$$/cmdline; echo "SHELL=$SHELL"\n';
  t.equal(run(cli, ['shell', image], {}, { input: cmdline }).out, '/bin/sh SHELL=/bin/sh\n', 'no bash: /bin/sh');
  const withBash = makeSandbox(t, { files: { 'bin/bash': '#!/bin/sh\necho "bash $*"; echo "SHELL=$SHELL"\n' } });
  t.equal(
    run(cli, ['shell', withBash], {}, { input: '' }).out,
    'bash --norc\nSHELL=/bin/bash\n',
    'bash: /bin/bash --norc',
  );
  t.equal(run(cli, ['shell', image], { APPTAINER_SHELL: '/myshell' }).out, 'myshell \n', 'APPTAINER_SHELL');
  t.equal(run(cli, ['shell', image], { SINGULARITY_SHELL: '/myshell' }).out, 'myshell \n', 'SINGULARITY_SHELL');
  t.equal(
    run(cli, ['shell', '--shell', '/myshell', image], { APPTAINER_SHELL: '/bin/false' }).out,
    'myshell \n',
    '--shell wins',
  );
  const notExec = run(cli, ['shell', '--shell', '/not-exec', image], {}, { input: 'echo fell back\n' });
  t.equal(notExec.out, 'fell back\n');
  t.match(
    notExec.err,
    /^WARNING: shell \/not-exec is not an executable file in the container: using the default shell$/m,
  );
});

t.test("run: no runscript and no Entrypoint/Cmd runs /bin/sh with the arguments, with Apptainer's INFO", async (t) => {
  const r = run(cli, ['run', image, '-c', 'echo "ran sh: $APPTAINER_COMMAND"']);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, 'ran sh: run\n');
  t.match(r.err, /^INFO: {4}No runscript found in container, executing \/bin\/sh$/m);
  // Said before the payload runs, as Apptainer does (one stream, in order).
  const both = run('/bin/sh', ['-c', `"$0" run "$1" -c "echo payload >&2" 2>&1`, cli, image]);
  t.equal(both.out, 'INFO:    No runscript found in container, executing /bin/sh\npayload\n');
});

t.test('--no-mount: home, tmp, cwd, bind-paths, a single /etc file, sys; proc and unknown names refused', async (t) => {
  const home = join(work, 'home');
  mkdirSync(home, { recursive: true });
  const cwd = join(work, 'data');
  t.equal(sh([], mounted('/tmp')).out, '1\n', 'by default /tmp is bound');
  // (The scratch dirs here lie under /tmp: without /tmp, the cwd is bound on its own.)
  t.equal(
    sh(
      ['--no-mount', 'tmp'],
      `${mounted(home)}; ${mounted('/tmp')}; ${mounted(cwd)}; ${mounted('/etc/hosts')}; ${mounted('/etc/resolv.conf')}`,
      { HOME: home },
      cwd,
    ).out,
    '1\n0\n1\n1\n1\n',
    'without tmp: home, the cwd and /etc files are bound, /tmp is not',
  );
  const r = sh(
    ['--no-mount', 'home,tmp', '--no-mount', 'cwd,bind-paths,/etc/resolv.conf,sys'],
    `${mounted(home)}; ${mounted('/tmp')}; ${mounted(cwd)}; ${mounted('/etc/hosts')}; ${mounted('/etc/resolv.conf')}; ls /sys | wc -l; pwd`,
    { HOME: home },
    cwd,
  );
  t.equal(r.code, 0, r.err);
  t.equal(r.out, '0\n0\n0\n0\n0\n0\n/\n', 'none of them, /sys empty, the payload starts in / (no cwd, no home)');
  t.equal(sh(['--no-mount', 'hostfs'], 'echo ok').out, 'ok\n', 'hostfs: never mounted here, accepted');
  for (const [v, why] of [
    ['proc', /proc: not supported: every container gets its own \/proc/],
    ['bogus', /"bogus": expected one of home, tmp/],
  ] as const) {
    const bad = sh(['--no-mount', v], 'true');
    t.equal(bad.code, 255);
    t.match(bad.err, new RegExp(`^FATAL: {3}--no-mount: ${why.source}`));
  }
});

t.test("relative -B sources are the working directory's", async (t) => {
  const r = sh(['-B', 'data:/d', '-B', 'data'], `cat /d/f ${join(work, 'data', 'f')}`, {}, work);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, 'DATA\nDATA\n');
});

t.test('--no-eval sets APPTAINER_NO_EVAL; prefixed values are never shell-evaluated', async (t) => {
  const env = { APPTAINERENV_X: '$(echo injected) `id -u`' };
  t.equal(
    sh(['--no-eval'], 'echo "$APPTAINER_NO_EVAL $SINGULARITY_NO_EVAL"; echo "$X"', env).out,
    '1 1\n$(echo injected) `id -u`\n',
  );
  t.equal(sh([], 'echo "${APPTAINER_NO_EVAL:-unset}"; echo "$X"', env).out, 'unset\n$(echo injected) `id -u`\n');
});

t.test('capabilities: none by default; --keep-privs, --add-caps, --drop-caps for root and fakeroot', async (t) => {
  const eff = 'awk \'$1 == "CapEff:" { print $2 }\' /proc/self/status';
  const full = sh(['--fakeroot'], eff).out.trim();
  t.match(full, /^0*1f+$/, 'fakeroot: the full set');
  t.equal(
    sh(['--fakeroot', '--drop-caps', 'CAP_SYS_ADMIN,net_raw'], eff).out.trim(),
    (BigInt(`0x${full}`) & ~((1n << 21n) | (1n << 13n))).toString(16).padStart(16, '0'),
    'fakeroot --drop-caps',
  );
  t.equal(sh([], eff).out.trim(), '0000000000000000', 'by default, none');
  if (isRoot) {
    t.equal(sh(['--keep-privs'], eff).out.trim(), full, 'root --keep-privs: the full set');
    t.equal(
      sh(['--add-caps', 'CAP_NET_RAW,chown'], eff).out.trim(),
      ((1n << 13n) | 1n).toString(16).padStart(16, '0'),
      'root --add-caps',
    );
  } else {
    // Without root or fakeroot there is nothing to authorize it: refused, naming the flag.
    for (const [flag, why] of [
      [['--add-caps', 'CAP_NET_RAW'], /--add-caps: only root or --fakeroot/],
      [['--keep-privs'], /--keep-privs: --keep-privs requires root/],
    ] as const) {
      const r = sh([...flag], 'true');
      t.equal(r.code, 255);
      t.match(r.err, new RegExp(`^FATAL: {3}${why.source}`));
    }
  }
  const bad = sh(['--fakeroot', '--add-caps', 'CAP_FLY'], 'true');
  t.equal(bad.code, 255);
  t.match(bad.err, /^FATAL: {3}--add-caps: unknown capability "CAP_FLY"/);
});

t.test(
  '--nv and --rocm: listed libraries found through ldconfig -p, programs on PATH; warnings when none',
  async (t) => {
    const host = join(work, 'gpu');
    mkdirSync(join(host, 'lib'), { recursive: true });
    mkdirSync(join(host, 'bin'));
    writeFileSync(join(host, 'lib', 'libfakegpu.so.1'), 'fake driver library\n');
    writeFileSync(join(host, 'lib', 'libfakegpu32.so.1'), '32-bit\n');
    writeFileSync(join(host, 'bin', 'fake-smi'), '#!/bin/sh\necho "fake-smi ran"\n');
    chmodSync(join(host, 'bin', 'fake-smi'), 0o755);
    const arch = process.arch === 'x64' ? 'x86-64' : 'AArch64';
    writeFileSync(
      join(host, 'ldconfig'),
      `#!/bin/sh\n[ "$1" = -p ] || exit 2\nprintf '2 libs found in cache\\n\\tlibfakegpu.so.1 (libc6,${arch}) => ${host}/lib/libfakegpu.so.1\\n\\tlibfakegpu.so.1 (libc6) => ${host}/lib/libfakegpu32.so.1\\n'\n`,
    );
    chmodSync(join(host, 'ldconfig'), 0o755);
    writeFileSync(join(host, 'list.conf'), "# a list as Apptainer's\nfake-smi\nlibfakegpu.so\nlibabsent.so\n");
    const env = {
      NODULARITY_NVLIBLIST: join(host, 'list.conf'),
      NODULARITY_LDCONFIG: join(host, 'ldconfig'),
      PATH: `${join(host, 'bin')}:${process.env.PATH}`,
    };
    const r = sh(
      ['--nv'],
      'cat /.singularity.d/libs/libfakegpu.so.1; ls /.singularity.d/libs; echo "$LD_LIBRARY_PATH"; /usr/bin/fake-smi',
      env,
    );
    t.equal(r.code, 0, r.err);
    t.equal(
      r.out,
      'fake driver library\nlibfakegpu.so.1\n/.singularity.d/libs\nfake-smi ran\n',
      'the 64-bit library and the program, nothing else',
    );
    t.notMatch(r.err, /WARNING/);
    writeFileSync(join(host, 'empty.conf'), 'no-such-program\nlibnothing.so\n');
    const none = sh(['--rocm'], 'echo ran', { ...env, NODULARITY_ROCMLIBLIST: join(host, 'empty.conf') });
    t.equal(none.code, 0, none.err);
    t.equal(none.out, 'ran\n', 'nothing found: the job still runs');
    t.match(
      none.err,
      /^WARNING: Could not find any rocm files on this host!\nWARNING: Could not find any rocm libraries on this host!$/m,
    );
  },
);

t.test("messages and exit codes in Apptainer's form", async (t) => {
  const cases: [string[], number, RegExp][] = [
    [['exec', image, '/no/such/cmd'], 127, /^FATAL: {3}.*"\/no\/such\/cmd" not found/],
    [['exec', image, '/not-exec'], 126, /^FATAL: {3}.*\/not-exec .*is not an executable file/],
    [['exec', join(work, 'no-image'), '/bin/true'], 255, /^FATAL: {3}image: image .*no-image does not exist/],
    [['exec', '--bogus', image, '/bin/true'], 255, /^FATAL: {3}unknown option '--bogus'/],
    [
      ['exec', '--overlay', join(work, 'no-ov'), image, '/bin/true'],
      255,
      /^FATAL: {3}--overlay: .*no-ov: the overlay directory is not usable \(ENOENT\)/,
    ],
    [['exec', image, '/bin/sh', '-c', 'exit 37'], 37, /^$/],
  ];
  for (const [args, code, err] of cases) {
    const r = run(cli, args);
    t.equal(r.code, code, `${args.join(' ')}: status`);
    t.match(r.err, err, `${args.join(' ')}: ${r.err}`);
    t.notMatch(r.err, /^\s+at /m, 'no stack trace');
  }
});

t.test(
  'version: `apptainer version X.Y.Z` naming nodularity; installed as apptainer or singularity it is that command',
  async (t) => {
    const singularity = installAs(t, 'singularity');
    const v = run(cli, ['--version']);
    t.equal(v.code, 0);
    t.match(v.out, /^apptainer version \d+\.\d+\.\d+\+nodularity\.\d+\.\d+\.\d+\n$/);
    t.equal(run(cli, ['version']).out, v.out);
    t.equal(run(singularity, ['--version']).out, v.out, "the same line as singularity, as Apptainer's symlink gives");
    // Snakemake takes the last word as the version, cwltool and HTCondor match `apptainer version N.N`.
    const last = v.out.trim().split(' ').pop()!;
    t.match(last, /^\d+\.\d+\.\d+\+[0-9A-Za-z.]+$/, 'the last word is a SemVer (and PEP 440) version');
    t.match(v.out, /nodularity/);
    t.match(
      run(cli, ['exec', '--bogus', image, '/bin/true']).err,
      /Usage: apptainer exec \[options\]/,
      'it calls itself apptainer',
    );
    t.match(run(singularity, ['exec', '--bogus', image, '/bin/true']).err, /Usage: singularity exec \[options\]/);
    t.equal(
      run(cli, ['exec', image, '/bin/sh', '-c', 'env | grep -c NODULARITY_INVOKED_AS || true']).out,
      '0\n',
      'the name does not reach the payload',
    );
    // As apptainer, every verb speaks Apptainer's format; as nodularity, its own verbs keep theirs.
    t.match(run(cli, ['inspect', join(work, 'nope')]).err, /^FATAL: {3}\S+nope`: unknown image source/);
    t.match(
      run(installAs(t, 'nodularity'), ['inspect', join(work, 'nope')]).err,
      /^nodularity: \S+nope`: unknown image source/,
    );
  },
);

t.test('--help says the PID, IPC and UTS namespaces are always new; --no-pid keeps them with a warning', async (t) => {
  const help = run(cli, ['exec', '--help']).out.replace(/\s+/g, ' ');
  t.match(help, /-p, --pid a new PID namespace: always/);
  t.match(help, /-i, --ipc a new IPC namespace: always/);
  t.match(help, /--uts a new UTS namespace: always/);
  t.match(help, /--no-pid accepted and ignored, with a warning: the PID namespace is always new/);
  const r = sh(['--no-pid', '--no-init'], 'echo $$');
  t.equal(r.out, '1\n', 'still a new PID namespace');
  t.match(r.err, /^WARNING: --no-pid ignored: nodularity always runs the container in a new PID namespace$/m);
});
