// `pull SRC DEST` makes a complete sandbox: exec/run of DEST and of
// DEST/rootfs keep the image's Env and Entrypoint/Cmd (issue 12 item 9),
// through the built CLI.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { removeAll, repoRoot, scratch } from './fixtures/tools.js';

const CLI = path.join(repoRoot, 'dist', 'cli', 'main.js');
let fx: FixtureImage;
let base: string;
t.before(async () => {
  fx = await buildFixtureImage();
  base = scratch('sandbox');
});
t.teardown(() => {
  if (fx) removeAll(fx.dir);
  if (base) removeAll(base);
});

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NODULARITY_CACHE: path.join(base, 'cache'), HOME: base },
    cwd: '/',
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

t.test('pull SRC DEST: DEST and DEST/rootfs run with the image config', async (t) => {
  const dest = path.join(base, 'img');
  const p = cli(['pull', '-q', `oci:${fx.layout}:v1`, dest]);
  t.equal(p.code, 0, p.err);
  const sd = path.join(dest, 'rootfs', '.singularity.d');
  t.ok(fs.statSync(path.join(sd, 'runscript')).mode & 0o111, 'a runscript from Entrypoint + Cmd');
  t.match(
    fs.readFileSync(path.join(sd, 'env', '10-docker2singularity.sh'), 'utf8'),
    /^export GREETING='hello world'$/m,
  );
  t.same(JSON.parse(fs.readFileSync(path.join(sd, 'labels.json'), 'utf8')), { 'org.example.test': 'nodularity' });
  for (const img of [dest, path.join(dest, 'rootfs')]) {
    // The fixture's Entrypoint is /bin/sh, its Cmd `-c 'echo $GREETING'`.
    const run = cli(['run', img]);
    t.equal(run.code, 0, `run ${img}: ${run.err}`);
    t.equal(run.out, 'hello world\n', `run ${img}: Entrypoint + Cmd with the image's Env`);
    const args = cli(['run', img, '-c', 'echo args $GREETING']);
    t.equal(args.out, 'args hello world\n', `run ${img} ARGS replaces Cmd, keeps Entrypoint`);
    const ex = cli(['exec', img, '/bin/sh', '-c', 'echo $GREETING']);
    t.equal(ex.out, 'hello world\n', `exec ${img}: the image's Env`);
  }
});
