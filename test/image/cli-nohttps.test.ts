// exec/run/shell/test take Apptainer's --no-https (and APPTAINER_NOHTTPS,
// SINGULARITY_NOHTTPS, --insecure) for a plain-http registry, through the
// built CLI against a real docker-registry (issue 12 item 3).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { removeAll, repoRoot, run, scratch, skopeoEnv } from './fixtures/tools.js';

const CLI = path.join(repoRoot, 'dist', 'cli', 'main.js');
let fx: FixtureImage;
let reg: TestRegistry;
let home: string;

t.before(async () => {
  fx = await buildFixtureImage();
  home = scratch('skopeo-home');
  reg = await startRegistry();
  run(
    'skopeo',
    ['copy', '--quiet', '--dest-tls-verify=false', `oci:${fx.layout}:v1`, `docker://${reg.host}/test/small:v1`],
    { env: skopeoEnv(home) },
  );
});
t.teardown(async () => {
  await reg?.stop();
  if (fx) removeAll(fx.dir);
  if (home) removeAll(home);
});

function cli(args: string[], env: Record<string, string> = {}) {
  const cache = scratch('cache');
  try {
    const r = spawnSync(process.execPath, [CLI, ...args], {
      encoding: 'utf8',
      env: { ...process.env, NODULARITY_CACHE: cache, ...env },
      cwd: '/',
      timeout: 120_000,
    });
    return { code: r.status, out: r.stdout, err: r.stderr };
  } finally {
    removeAll(cache);
  }
}

t.test('--no-https, --nohttps, --insecure and APPTAINER_NOHTTPS reach a plain-http registry', async (t) => {
  const ref = `docker://${reg.host}/test/small:v1`;
  for (const [args, env] of [
    [['--no-https'], {}],
    [['--nohttps'], {}],
    [['--insecure'], {}],
    [[], { APPTAINER_NOHTTPS: '1' }],
    [[], { SINGULARITY_NOHTTPS: 'true' }],
  ] as [string[], Record<string, string>][]) {
    const r = cli(['exec', ...args, ref, '/bin/sh', '-c', 'echo inside'], env);
    t.equal(r.code, 0, `${args.join(' ')} ${JSON.stringify(env)}: ${r.err}`);
    t.equal(r.out, 'inside\n');
  }
  const run2 = cli(['run', '--no-https', ref, '-c', 'echo ran']);
  t.equal(run2.code, 0, run2.err);
});

t.test('without it, a plain-http registry is one line that says how to allow it', async (t) => {
  const r = cli(['exec', `docker://${reg.host}/test/small:v1`, '/bin/true']);
  t.equal(r.code, 255);
  t.equal(r.err.trim().split('\n').length, 1, r.err);
  t.match(r.err, /--no-https/);
  t.notMatch(r.err, /^\s+at /m, 'no stack trace');
});
