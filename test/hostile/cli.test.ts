// Hostile input to the command line itself: a job's --env-file must reach
// the container and never Node (Node 20 reads --env-file anywhere in its argv
// and runs NODE_OPTIONS from it), and what `inspect` prints from an image
// must not drive the terminal. Through the built CLI (dist/) and the
// installed-bin layout (`npm link`: PREFIX/bin/nodularity -> the package's
// bin/nodularity), as a pilot runs it.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, scratch } from '../helpers/env.js';
import { makeSandbox } from '../singularity/fixtures.js';
import { bare, binPath, makeLayout } from './fixtures.js';
import { requireFreshDist } from '../helpers/cli.js';

const mainJs = join(repoRoot, 'dist', 'cli', 'main.js');
let image: string;
let bin: string;

t.before(() => {
  // The built CLI must be this checkout's, not a stale one.
  requireFreshDist();
  image = makeSandbox(t);
  // What `npm link` / `npm install -g` make: a symlinked package and a symlinked bin.
  const prefix = scratch(t, 'nodularity-prefix-');
  mkdirSync(join(prefix, 'lib', 'node_modules'), { recursive: true });
  mkdirSync(join(prefix, 'bin'));
  symlinkSync(repoRoot, join(prefix, 'lib', 'node_modules', 'nodularity'));
  symlinkSync(
    join('..', 'lib', 'node_modules', 'nodularity', binPath.slice(repoRoot.length + 1)),
    join(prefix, 'bin', 'nodularity'),
  );
  bin = join(prefix, 'bin', 'nodularity');
});

function runCli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const clean = { ...process.env, ...env };
  delete clean.NODE_OPTIONS; // tap's loader hooks are not the CLI's
  const r = spawnSync(...bare(argv), { encoding: 'utf8', env: clean, timeout: 60_000 });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

/** A job env file whose NODE_OPTIONS would make Node run a canary-writing module. */
function hostileEnvFile(t: Parameters<typeof scratch>[0]) {
  const d = scratch(t, 'nodularity-envfile-');
  const canary = join(d, 'canary');
  const hook = join(d, 'hook.cjs');
  writeFileSync(
    hook,
    `require('node:fs').writeFileSync(${JSON.stringify(canary)}, 'ran in ' + process.pid + ' ' + process.argv.join(' '));\n`,
  );
  const file = join(d, 'job.env');
  writeFileSync(file, `NODE_OPTIONS="--require ${hook}"\nJOB_VAR=from-job\n`);
  return { file, canary, hook, dir: d };
}

const PRINT = ['/bin/sh', '-c', 'echo "NODE_OPTIONS=$NODE_OPTIONS JOB_VAR=$JOB_VAR"'];

for (const form of ['separate', 'equals'] as const) {
  t.test(
    `installed bin: --env-file ${form === 'equals' ? '=FILE' : 'FILE'} with NODE_OPTIONS reaches the payload, not Node`,
    async (t) => {
      const e = hostileEnvFile(t);
      const opt = form === 'equals' ? [`--env-file=${e.file}`] : ['--env-file', e.file];
      const r = runCli([bin, 'exec', ...opt, image, ...PRINT]);
      t.notOk(existsSync(e.canary), "the env file's NODE_OPTIONS ran no code in the runtime");
      t.equal(r.code, 0, r.err);
      t.equal(
        r.out,
        `NODE_OPTIONS=--require ${e.hook} JOB_VAR=from-job\n`,
        'the payload got the variables as Apptainer passes them',
      );
    },
  );
}

t.test('`node -- dist/cli/main.js` is immune as well', async (t) => {
  const e = hostileEnvFile(t);
  const r = runCli([process.execPath, '--', mainJs, 'exec', '--env-file', e.file, image, ...PRINT]);
  t.notOk(existsSync(e.canary));
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `NODE_OPTIONS=--require ${e.hook} JOB_VAR=from-job\n`);
});

t.test("a missing --env-file: nodularity's own one-line error naming the option, status 255", async (t) => {
  const missing = join(scratch(t), 'missing.env');
  for (const argv of [[bin], [process.execPath, '--', mainJs]]) {
    const r = runCli([...argv, 'exec', '--env-file', missing, image, '/bin/true']);
    t.equal(r.code, 255, `${argv.join(' ')}: ${r.err}`);
    t.match(
      r.err,
      /^FATAL: {3}--env-file: cannot read .*missing\.env: ENOENT\n$/,
      'one line, ours, not Node\'s "not found"',
    );
  }
});

t.test(
  "started as `node dist/cli/main.js` (Node already read the job's file): refused, the job does not run",
  async (t) => {
    // Node has applied the file before any script runs; this path cannot be made
    // immune from inside the script, so the CLI refuses it and names the fix.
    const d = scratch(t);
    const file = join(d, 'benign.env');
    writeFileSync(file, 'JOB_VAR=x\n');
    const marker = join(d, 'ran');
    const r = runCli([
      process.execPath,
      mainJs,
      'exec',
      '-B',
      d,
      '--env-file',
      file,
      image,
      '/bin/sh',
      '-c',
      `touch ${marker}`,
    ]);
    t.equal(r.code, 255, r.err);
    t.match(r.err, /`--env-file .*benign\.env` was read by Node\.js itself.*bin\/nodularity/);
    t.equal(r.err.split('\n').length, 2, 'one line');
    t.notOk(existsSync(marker), 'the payload did not run');
  },
);

t.test(
  'inspect: terminal escapes in labels, env and entrypoint are printed escaped; --json stays the same JSON',
  async (t) => {
    const d = scratch(t);
    const labels = {
      title: '\x1b]0;pwned\x07',
      clear: 'before\x1b[2Jafter',
      '\x1b[31mred-key': 'line\nCached at:    /forged',
      c1: 'csi\u009b31m and rtl \u202e',
    };
    const config = {
      Labels: labels,
      Env: ['PATH=/bin', 'BELL=\x07\x07'],
      Entrypoint: ['/bin/sh', '\u009b2J'],
      WorkingDir: '/w\x1b[8m',
    };
    const { layout } = await makeLayout(d, config);
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const text = spawnSync(...bare([bin, 'inspect', `oci:${layout}:latest`]), { encoding: 'utf8', env });
    t.equal(text.status, 0, text.stderr);
    const controls = text.stdout.replace(/\n/g, '').match(/[\x00-\x1f\x7f-\x9f\u202e]/g);
    t.same(controls, null, 'no control character reaches the terminal');
    t.match(text.stdout, '  title=\\x1b]0;pwned\\x07\n');
    t.match(text.stdout, '  clear=before\\x1b[2Jafter\n');
    t.match(text.stdout, '  \\x1b[31mred-key=line\\nCached at:    /forged\n', 'no forged line');
    t.notMatch(text.stdout, /^Cached at:/m);
    t.match(text.stdout, 'csi\\x9b31m and rtl \\u202e');
    t.match(text.stdout, '  BELL=\\x07\\x07\n');
    t.match(text.stdout, 'WorkingDir:   /w\\x1b[8m\n');

    const json = spawnSync(...bare([bin, 'inspect', '--json', `oci:${layout}:latest`]), { encoding: 'utf8', env });
    t.equal(json.status, 0, json.stderr);
    t.same(json.stdout.match(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/g), null, 'the JSON text is terminal-safe too');
    const parsed = JSON.parse(json.stdout) as {
      rawConfig: { config: { Labels: Record<string, string> } };
      config: { env: string[] };
    };
    t.same(parsed.rawConfig.config.Labels, labels, "and parses to the image's exact labels");
    t.ok(parsed.config.env.includes('BELL=\x07\x07'));
  },
);
