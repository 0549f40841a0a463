// The image verbs of the CLI: pull, inspect, cache list|clean.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { removeAll, scratch } from './fixtures/tools.js';
import { requireFreshDist } from '../helpers/cli.js';

// The installed command, as users run it (bin/nodularity: node -- dist/cli/main.js).
const cli = fileURLToPath(new URL('../../bin/nodularity', import.meta.url));
let fx: FixtureImage;
t.before(async () => {
  requireFreshDist(); // a stale dist/ would test old code
  fx = await buildFixtureImage();
});
t.teardown(() => {
  if (fx) removeAll(fx.dir);
});

function nodularity(args: string[], env: NodeJS.ProcessEnv = {}) {
  const e: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete e.NODE_OPTIONS; // tap's loader hooks are not the CLI's
  const r = spawnSync(cli, args, { encoding: 'utf8', env: e });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('pull prints the rootfs, plain progress lines when not a TTY; cache list and clean', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const r = nodularity(['pull', `oci:${fx.layout}:v3`], { NODULARITY_CACHE: cacheDir });
  t.equal(r.code, 0, r.stderr);
  const rootfs = r.stdout.trim();
  t.ok(rootfs.startsWith(path.join(cacheDir, 'roots/sha256/')), 'rootfs in $NODULARITY_CACHE');
  t.ok(fs.existsSync(path.join(rootfs, 'bin/busybox')));
  t.match(r.stderr, /^manifest sha256:[0-9a-f]{64}: 3 layers, /m);
  t.match(r.stderr, /^layer 3 sha256:[0-9a-f]{64} unpacked$/m);
  t.notMatch(r.stderr, /\x1b\[/, 'no terminal escapes when stderr is not a TTY');
  const list = nodularity(['cache', 'list', '--json'], { NODULARITY_CACHE: cacheDir });
  t.equal(list.code, 0, list.stderr);
  const entries = JSON.parse(list.stdout) as { rootfs: string }[];
  t.same(
    entries.map((e) => e.rootfs),
    [rootfs],
  );
  const clean = nodularity(['cache', 'clean'], { NODULARITY_CACHE: cacheDir });
  t.match(clean.stdout, /removed 1 image\(s\), freed [\d.]+ MiB/);
  t.notOk(fs.existsSync(rootfs));
});

t.test('pull SOURCE DEST, quiet', async (t) => {
  const base = scratch('dest');
  t.teardown(() => removeAll(base));
  const r = nodularity(['pull', '-q', `oci:${fx.layout}:v1`, path.join(base, 'b')], {
    NODULARITY_CACHE: path.join(base, 'cache'),
  });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), path.join(base, 'b/rootfs'));
  t.equal(r.stderr, '');
});

t.test('inspect as text and --json', async (t) => {
  const text = nodularity(['inspect', `oci:${fx.layout}:v3`], { NODULARITY_CACHE: scratch('cache') });
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^Entrypoint: +\["\/bin\/sh"\]$/m);
  t.match(text.stdout, /^User: +app$/m);
  t.match(text.stdout, /^ +org\.example\.test=nodularity$/m);
  t.match(text.stdout, /^Layers: +3, /m);
  const json = nodularity(['inspect', '--json', `oci:${fx.layout}:v3`], { NODULARITY_CACHE: scratch('cache') });
  const info = JSON.parse(json.stdout) as { layers: unknown[]; config: { workingDir: string } };
  t.equal(info.layers.length, 3);
  t.equal(info.config.workingDir, '/data');
});

t.test('errors go to stderr with the source named, one line, exit 255', async (t) => {
  const r = nodularity(['pull', `oci:${fx.layout}:missing`], { NODULARITY_CACHE: scratch('cache') });
  t.equal(r.code, 255);
  t.match(r.stderr, /^nodularity: oci:.*:missing: no image tagged `missing`[^\n]*\n$/);
  const p = nodularity(['pull', '--platform', 'linux', `oci:${fx.layout}:v1`]);
  t.equal(p.code, 255);
  t.match(p.stderr, /--platform `linux`: expected OS\/ARCH/);
});
