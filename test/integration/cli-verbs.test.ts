// The built CLI as users run it (issue 12 items 1, 5, 10, 12): each verb
// loads only its own module (exec never loads lib/bench), every failure is
// one line on stderr naming the file or option and what to do (no stack
// trace without -d), a command that cannot be executed exits 126 and one
// that does not exist 127, image references say which schemes exist, and a
// first pull through exec/run shows progress at a terminal only.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { haveCommand, isRoot, repoRoot, scratch, testRootfs, type Tap } from '../helpers/env.js';
import { bare, makeLayout, requireBuiltCli, testUser } from '../hostile/fixtures.js';
import { makeTar } from '../image/fixtures/tarball.js';

const CLI = join(repoRoot, 'dist', 'cli', 'main.js');
const node = process.execPath;
const sq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

t.before(() => requireBuiltCli());

interface R {
  code: number | null;
  out: string;
  err: string;
}

/** `node dist/cli/main.js ARGS` without tap's NODE_OPTIONS; env added to ours. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []): R {
  const r = spawnSync(...bare([node, ...nodeArgs, '--', CLI, ...args]), {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A shell command line (for ulimit, unshare, setpriv); its result. */
function shell(cmd: string, env: NodeJS.ProcessEnv = {}): R {
  const r = spawnSync(...bare(['/bin/sh', '-c', cmd]), {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Exactly one line on stderr, ours, matching `re`; no stack frame; the status. */
function oneLine(t: Tap, r: R, re: RegExp, status = 255, what = ''): void {
  t.equal(r.code, status, `${what} exit status (stderr: ${r.err})`);
  t.notMatch(r.err, /^\s+at /m, `${what} no stack trace`);
  // Apptainer's verbs say it as Apptainer does (FATAL:), nodularity's own as nodularity, the OCI verbs as runc (logrus).
  t.match(
    r.err,
    /^(FATAL: {3}|nodularity: |time="[^"]+" level=error msg=)[^\n]+\n$/,
    `${what} exactly one line on stderr: ${JSON.stringify(r.err)}`,
  );
  t.match(r.err, re, what);
}

/** An OCI layout (tag latest) with busybox (/bin/true, /bin/sh) and `mib` MiB of random data in one layer. */
async function bigLayout(dir: string, mib: number): Promise<string> {
  const tarBuf = await makeTar([
    { name: 'bin', type: 'directory' },
    { name: 'bin/busybox', content: readFileSync(join(testRootfs(), 'bin', 'busybox')), mode: 0o755 },
    { name: 'bin/true', type: 'symlink', linkname: 'busybox' },
    { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    { name: 'big.bin', content: randomBytes(mib << 20) },
  ]);
  return (await makeLayout(dir, {}, tarBuf)).layout;
}

// ---- item 1: only the verb's module --------------------------------------

/**
 * A module hook (module.register) that appends every module URL Node loads
 * to FILE: the record of what a CLI run loaded, bench included or not. The
 * hook sees what `import` loads; what is loaded with require() (createRequire
 * in an ES module, or inside a CommonJS package) is in require's cache, which
 * the preload appends at exit.
 */
function loadRecorder(dir: string): { args: string[]; loaded: () => string[] } {
  const file = join(dir, 'loaded.txt');
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) { appendFileSync(${JSON.stringify(file)}, url + '\\n'); return next(url, context); }
`,
  );
  const reg = join(dir, 'register.mjs');
  writeFileSync(
    reg,
    `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
register(${JSON.stringify(`file://${hooks}`)});
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => appendFileSync(${JSON.stringify(file)}, Object.keys(cache).map((p) => 'require:' + p + '\\n').join('')));
`,
  );
  return {
    args: ['--import', reg],
    loaded: () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []),
  };
}

t.test('exec of a directory loads neither lib/bench, the bundle verbs, nor the image code; bench does', async (t) => {
  const img = testRootfs();
  const dir = scratch(t);
  const rec = loadRecorder(dir);
  const r = cli(['exec', img, '/bin/true'], {}, rec.args);
  t.equal(r.code, 0, r.err);
  const loaded = rec.loaded();
  t.ok(
    loaded.some((u) => u.endsWith('/dist/singularity/index.js')),
    'the recorder saw the modules exec needs',
  );
  t.same(
    loaded.filter((u) => u.includes('/dist/bench/') || u.includes('/dist/cli/bench-command')),
    [],
    'no lib/bench module was loaded for exec',
  );
  t.same(
    loaded.filter((u) => u.includes('/dist/cli/bundle-command')),
    [],
    'nor the bundle verbs',
  );
  // Issue 19: a directory needs no registry client, layer decoder, cache
  // lock or progress bar (each of these was loaded for every exec before).
  t.same(
    loaded.filter((u) =>
      /\/dist\/(image|oci\/runtime)|\/node_modules\/(tar-stream|cli-progress|proper-lockfile|fzstd|smol-toml|simple-statistics)\//.test(
        u,
      ),
    ),
    [],
    'nor the image, registry and progress code, nor the OCI runtime',
  );
  t.ok(
    loaded.some((u) => u.startsWith('require:') && u.includes('/node_modules/commander/lib/')),
    "the require cache is in the record (commander's own files are required)",
  );

  // An image through the cache does load the image code, and the progress
  // bar at a terminal (test 'exec of an uncached image shows pull progress').
  const rec3 = loadRecorder(scratch(t));
  const layout = await bigLayout(scratch(t), 1);
  const pulled = cli(
    ['exec', `oci:${layout}`, '/bin/true'],
    { NODULARITY_CACHE: join(scratch(t), 'cache') },
    rec3.args,
  );
  t.equal(pulled.code, 0, pulled.err);
  t.ok(
    rec3.loaded().some((u) => u.includes('/node_modules/tar-stream/')),
    'an oci: image loads the layer code (the recorder would see it)',
  );

  const rec2 = loadRecorder(scratch(t));
  const h = cli(['bench', '--help'], {}, rec2.args);
  t.equal(h.code, 0, h.err);
  t.ok(
    rec2.loaded().some((u) => u.includes('/dist/bench/')),
    'bench loads lib/bench (the recorder would see it)',
  );

  const all = cli(['--help']);
  t.equal(all.code, 0);
  for (const verb of [
    'exec',
    'run',
    'shell',
    'test',
    'version',
    'pull',
    'inspect',
    'cache',
    'run-bundle',
    'oci',
    'bench',
  ])
    t.match(all.out, new RegExp(`^  ${verb}\\b`, 'm'), `--help lists ${verb}`);
  const unknown = cli(['exce', img, '/bin/true']);
  t.equal(unknown.code, 255);
  t.match(unknown.err, /unknown command 'exce'.*\n.*Did you mean exec\?/s, 'an unknown verb still gets the suggestion');
  const version = cli(['--version']);
  t.match(version.out, /^apptainer version \d+\.\d+\.\d+\+nodularity\.\S+\n$/);
});

// ---- item 12: schemes, 126 and 127 ---------------------------------------

t.test('unsupported schemes and bare names say which references exist (item 12)', async (t) => {
  for (const verb of ['exec', 'run', 'shell', 'test'] as const) {
    const extra = verb === 'exec' ? ['/bin/true'] : [];
    for (const ref of ['library://alpine:3.19', 'shub://x/y', 'foo:bar'])
      oneLine(
        t,
        cli([verb, ref, ...extra]),
        /oci:DIR\[:TAG\], docker-archive:FILE\[:NAME:TAG\] or docker:\/\/HOST/,
        255,
        `${verb} ${ref}`,
      );
    oneLine(
      t,
      cli([verb, 'ubuntu:22.04', ...extra]),
      /a reference needs a scheme.*docker:\/\/ubuntu:22\.04\)$/m,
      255,
      `${verb} ubuntu:22.04`,
    );
  }
  oneLine(t, cli(['exec', 'library://alpine', '/bin/true']), /the `library:` scheme is not supported/);
  for (const verb of ['pull', 'inspect']) {
    oneLine(
      t,
      cli([verb, 'library://alpine']),
      /the `library:\/\/` scheme is not supported; use oci:DIR/,
      255,
      `${verb} library://`,
    );
    oneLine(
      t,
      cli([verb, 'ubuntu:22.04']),
      /\(for a registry image: docker:\/\/ubuntu:22\.04\)$/m,
      255,
      `${verb} ubuntu:22.04`,
    );
  }
});

t.test('a command that is not executable exits 126, one that does not exist 127, as Apptainer (item 12)', async (t) => {
  const img = testRootfs();
  // /etc/passwd exists in the test rootfs and has no x bit.
  t.equal(statSync(join(img, 'etc', 'passwd')).mode & 0o111, 0);
  oneLine(
    t,
    cli(['exec', img, '/etc/passwd']),
    /\/etc\/passwd in the image .* is not an executable file \(permission denied\)/,
    126,
    'not executable',
  );
  oneLine(t, cli(['exec', img, '/etc']), /\/etc in the image .* is not an executable file/, 126, 'a directory');
  oneLine(t, cli(['exec', img, '/no/such/cmd']), /executable "\/no\/such\/cmd" not found/, 127, 'absent path');
  oneLine(
    t,
    cli(['exec', img, 'no-such-cmd']),
    /executable "no-such-cmd" not found .*searched PATH=/,
    127,
    'absent from PATH',
  );
  oneLine(
    t,
    cli(['exec', '--env', 'PATH=/etc', img, 'passwd']),
    /\/etc\/passwd .* is not an executable file/,
    126,
    'found on PATH, not executable',
  );
  t.equal(cli(['exec', img, '/bin/sh', '-c', 'exit 126']).code, 126, "the payload's own 126 passes through");
});

// ---- item 5: one line per failure, every verb ----------------------------

t.test('every verb fails with one line and no stack trace; -d adds the stack (item 5)', async (t) => {
  const dir = scratch(t);
  const missing = join(dir, 'missing');
  const cache = join(dir, 'cache');
  const { layout } = await makeLayout(dir);
  for (const verb of ['exec', 'run', 'shell', 'test']) {
    const extra = verb === 'exec' ? ['/bin/true'] : [];
    oneLine(t, cli([verb, missing, ...extra]), /image .*missing does not exist \(ENOENT\)/, 255, `${verb} missing dir`);
    oneLine(
      t,
      cli([verb, `oci:${missing}`, ...extra], { NODULARITY_CACHE: cache }),
      /is not an OCI image layout/,
      255,
      `${verb} oci:missing`,
    );
  }
  oneLine(
    t,
    cli(['pull', '--platform', 'x', `oci:${layout}`]),
    /^nodularity: --platform `x`: expected OS\/ARCH/,
    255,
    'pull --platform x',
  );
  oneLine(
    t,
    cli(['inspect', '--platform', 'linux', `oci:${layout}`]),
    /--platform `linux`/,
    255,
    'inspect --platform linux',
  );
  oneLine(
    t,
    cli(['pull', '-q', '--username', 'u', `oci:${layout}`], { NODULARITY_DOCKER_PASSWORD: undefined }),
    /--username needs --password-stdin or NODULARITY_DOCKER_PASSWORD/,
    255,
    'pull --username',
  );
  // The destination's parent does not exist: mkdir ENOENT.
  const dest = join(dir, 'a', 'b', 'dest');
  oneLine(
    t,
    cli(['pull', '-q', '--cache', cache, `oci:${layout}`, dest]),
    /^nodularity: (destination \S+\/a\/b\/dest: its parent directory does not exist|cannot create \S+\/a\/b\/dest: the directory \S+\/a\/b does not exist \(ENOENT, mkdir\); create it first)$/m,
    255,
    'pull SRC a/b/dest',
  );
  t.notOk(existsSync(join(dir, 'a')), 'nothing made on the way');
  oneLine(t, cli(['inspect', `oci:${missing}`]), /is not an OCI image layout/, 255, 'inspect');
  const file = join(dir, 'file');
  writeFileSync(file, '');
  for (const sub of ['list', 'clean']) {
    const r = cli(['cache', sub, '--cache', join(file, 'sub')]);
    if (r.code !== 0) oneLine(t, r, /file/, 255, `cache ${sub} under a file`);
    else t.equal(r.err, '', `cache ${sub} under a file: no error is fine, no stack either`);
  }
  oneLine(t, cli(['run-bundle', missing]), /missing\/config\.json: ENOENT/, 255, 'run-bundle');
  // The OCI verbs speak runc's form (status 1, its phrases: test/oci/cli.test.ts).
  oneLine(t, cli(['oci', '--root', dir, 'state', 'nope']), /container does not exist: nope/, 1, 'oci state');
  oneLine(t, cli(['oci', '--root', dir, 'kill', 'nope', 'TERM']), /container does not exist: nope/, 1, 'oci kill');
  oneLine(t, cli(['oci', '--root', dir, 'delete', 'bad/id']), /invalid container id `bad\/id`/, 1, 'oci delete');
  // bench: its own usage errors are one line (status 2, as before); a bad value gets commander's line and the usage.
  const b = cli(['bench', '--image', missing, '--compare', 'none', '--runs', '1', '--out', join(dir, 'out')]);
  t.equal(b.code, 2, b.err);
  t.equal(b.err, `nodularity bench: --image ${missing}: no such directory\n`);
  const bo = cli(['bench', '--runs', '0']);
  t.equal(bo.code, 255);
  t.match(
    bo.err,
    /^error: option '--runs <n>' argument '0' is invalid\. must be an integer >= 1\.\n\nUsage: nodularity bench/,
    'usage only for a wrong command line',
  );
  t.notMatch(bo.err, /^\s+at /m);
  // -d: the same line, then the stack.
  const d = cli(['-d', 'pull', '--platform', 'x', `oci:${layout}`]);
  t.equal(d.code, 255);
  t.match(
    d.err,
    /^nodularity: --platform `x`: expected OS\/ARCH[^\n]*\n[^\n]*Error[^\n]*\n\s+at /,
    'with -d, a stack trace follows the line',
  );
});

t.test('an unwritable default cache dir says to set NODULARITY_CACHE (item 5)', async (t) => {
  const dir = scratch(t);
  const { layout } = await makeLayout(dir);
  // As root, HOME=/nonexistent would be created: a HOME that is a file cannot hold .cache for anyone.
  // (Not a HOME under /proc: Node's recursive mkdir loops forever there, EEXIST/ENOENT.)
  const home = isRoot ? join(dir, 'home-is-a-file') : '/nonexistent';
  if (isRoot) writeFileSync(home, '');
  const env = { NODULARITY_CACHE: '', XDG_CACHE_HOME: '', HOME: home };
  for (const args of [
    ['pull', '-q', `oci:${layout}`],
    ['exec', `oci:${layout}`, '/bin/true'],
  ]) {
    const r = cli(args, env);
    oneLine(
      t,
      r,
      /^(FATAL: {3}|nodularity: )the default cache directory \S+\/\.cache\/nodularity.*\((EACCES|ENOTDIR), (mkdir|stat)\): set NODULARITY_CACHE \(or pass --cache\) to a directory you can write$/m,
      255,
      args[0],
    );
  }
  t.notOk(existsSync('/nonexistent'), 'nothing created');
});

t.test(
  'an OCI layout the user cannot read (umoci makes 0600 files) is one line naming the file (item 5)',
  async (t) => {
    const dir = scratch(t);
    chmodSync(dir, 0o755);
    const { layout } = await makeLayout(dir);
    const cache = join(dir, 'cache');
    let r: R;
    if (isRoot) {
      // Root made the layout with umoci's 0600 files; the test user pulls it.
      for (const f of ['index.json', 'oci-layout']) chmodSync(join(layout, f), 0o600);
      for (const f of readdirSync(join(layout, 'blobs', 'sha256')))
        chmodSync(join(layout, 'blobs', 'sha256', f), 0o600);
      mkdirSync(cache);
      const u = testUser();
      chownSync(cache, u.uid, u.gid);
      r = shell(
        `setpriv --reuid=${u.uid} --regid=${u.gid} --clear-groups ${sq(node)} -- ${sq(CLI)} pull -q --cache ${sq(cache)} ${sq(`oci:${layout}`)}`,
      );
    } else {
      // This pass cannot make a file another user owns: one of its own with no read permission fails the same way.
      chmodSync(join(layout, 'index.json'), 0o000);
      r = cli(['pull', '-q', '--cache', cache, `oci:${layout}`]);
    }
    oneLine(t, r, /(oci-layout|index\.json): permission denied \(EACCES, open\)/, 255, 'unreadable layout');
    t.match(r.err, /make it readable|run as its owner|EACCES/, 'says what to do');
  },
);

t.test(
  'ENOSPC (a small tmpfs, as root) or EFBIG (ulimit -f, any user) during unpack is one line (item 5)',
  async (t) => {
    const dir = scratch(t);
    chmodSync(dir, 0o755);
    const layout = await bigLayout(dir, 6);
    if (isRoot) {
      // A 2 MiB tmpfs as the cache, in a mount namespace of its own: the host's mount table is untouched.
      const cache = join(dir, 'cache');
      mkdirSync(cache);
      const r = shell(
        `unshare -m --propagation private sh -c ${sq(`mount -t tmpfs -o size=2m,mode=0700 nodularity-enospc ${sq(cache)} && exec ${sq(node)} -- ${sq(CLI)} pull -q --cache ${sq(cache)} ${sq(`oci:${layout}`)}`)}`,
      );
      oneLine(t, r, /no space left on the device while writing .*cache.*pass another --cache/, 255, 'ENOSPC');
    }
    // ulimit -f: the shell counts 1024-byte blocks; Node ignores SIGXFSZ, so the write fails with EFBIG.
    const cache = join(dir, 'cache-efbig');
    const r = shell(
      `ulimit -f 2048 && exec ${sq(node)} -- ${sq(CLI)} pull -q --cache ${sq(cache)} ${sq(`oci:${layout}`)}`,
    );
    oneLine(
      t,
      r,
      /file too large \(EFBIG, write; the file size limit, `ulimit -f`, was reached\): raise the limit, or pass another --cache$/m,
      255,
      'EFBIG',
    );
  },
);

t.test("SIGTERM during a pull ends the CLI (signal-exit's late listeners no longer swallow it)", async (t) => {
  const dir = scratch(t);
  const layout = await bigLayout(dir, 300);
  const cache = join(dir, 'cache');
  const p = spawn(...bare([node, '--', CLI, 'pull', '-q', '--cache', cache, `oci:${layout}`]), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const exited = new Promise<[number | null, string | null]>((r) => p.once('exit', (c, s) => r([c, s])));
  // Once the unpack runs (its temp dir exists) the cache holds a lock, and signal-exit listens.
  for (let i = 0; i < 400 && !(existsSync(join(cache, 'tmp')) && readdirSync(join(cache, 'tmp')).length); i++)
    await new Promise((r) => setTimeout(r, 10));
  t.ok(existsSync(join(cache, 'tmp')) && readdirSync(join(cache, 'tmp')).length > 0, 'caught the pull mid-unpack');
  p.kill('SIGTERM');
  const [code, signal] = await exited;
  t.equal(signal, 'SIGTERM', `died of the signal (code ${code})`);
  t.equal(out, '', 'did not go on to finish the pull');
});

// ---- item 10: progress on first use, at a terminal only ------------------

t.test(
  'exec of an uncached image shows pull progress at a terminal, not on a pipe nor with -q (item 10)',
  async (t) => {
    t.ok(haveCommand('script'), 'util-linux script is installed');
    const dir = scratch(t);
    const layout = await bigLayout(dir, 8);
    const run = (cache: string, flags: string, redirect = '') => {
      const cmd = `${sq(node)} -- ${sq(CLI)} ${flags} exec ${sq(`oci:${layout}`)} /bin/sh -c 'echo payload-ran' ${redirect}`;
      return shell(`script -qefc ${sq(cmd)} /dev/null`, { NODULARITY_CACHE: cache });
    };
    const tty = run(join(dir, 'c1'), '');
    t.equal(tty.code, 0, tty.err);
    t.match(tty.out, /unpack|fetch|done/, 'progress bars on the terminal');
    t.match(tty.out, /\d+(\.\d)? MiB/, 'with sizes');
    t.match(tty.out, /payload-ran/, 'then the payload ran');
    t.ok(tty.out.indexOf('payload-ran') > tty.out.lastIndexOf('MiB'), 'the bars end before the payload writes');
    const again = run(join(dir, 'c1'), '');
    t.equal(again.code, 0);
    t.notMatch(again.out, /MiB/, 'cached: no bars');

    const pipe = run(join(dir, 'c2'), '', '2>&1 | cat');
    t.equal(pipe.code, 0, pipe.err);
    t.notMatch(pipe.out, /MiB|unpack|fetch|manifest/, 'stderr a pipe: nothing but the payload');
    t.match(pipe.out, /payload-ran/);
    for (const q of ['-q', '-s']) {
      const quiet = run(join(dir, `c-${q}`), q);
      t.equal(quiet.code, 0, quiet.err);
      t.notMatch(quiet.out, /MiB|unpack|fetch/, `${q}: no progress`);
      t.match(quiet.out, /payload-ran/);
    }
  },
);
