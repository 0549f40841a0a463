// docker:// pulls through the built CLI (issue 12, item 2): a multi-megabyte
// layer of many files from a real docker-registry, in OCI and Docker schema 2
// form, must unpack to the tree `umoci unpack` makes of the same image.
// In-process pulls without a progress callback never saw the bug: the CLI's
// download progress tap started the body flowing before the blob cache piped
// it, and the layer came out "expected N bytes, got 0".
import t from 'tap';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { describeTree, diffTrees, withoutSandboxFiles } from './fixtures/tree.js';
import { isRoot, removeAll, repoRoot, run, scratch, skopeoEnv } from './fixtures/tools.js';
import { requireFreshBuild, runBuiltCli } from './fixtures/built-cli.js';

let registry: TestRegistry;
let work: string;
let layout: string;
let reference: ReturnType<typeof describeTree>;
let layerSize = 0;

t.before(async () => {
  requireFreshBuild();
  work = scratch('cli-registry');
  layout = path.join(work, 'layout');
  const rootless = isRoot ? [] : ['--rootless'];
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:base`]);
  const bundle = path.join(work, 'bundle');
  run('umoci', ['unpack', ...rootless, '--image', `${layout}:base`, bundle]);
  const r = path.join(bundle, 'rootfs');
  const mod = (await import(new URL(`file://${repoRoot}/scripts/busybox-rootfs.mjs`).href)) as {
    makeBusyboxRootfs: (d: string) => string;
  };
  mod.makeBusyboxRootfs(r);
  // Incompressible content in many files of many sizes (a few bytes to 1.5 MiB),
  // about 6 MiB in all, so that the compressed layer is well over 4 MiB.
  for (let d = 0; d < 12; d++) {
    fs.mkdirSync(path.join(r, `opt/data/d${d}`), { recursive: true });
    for (let i = 0; i < 40; i++)
      fs.writeFileSync(path.join(r, `opt/data/d${d}/f${i}`), randomBytes((i * 7919 + d * 104729) % 20000), {
        mode: i % 3 === 0 ? 0o755 : 0o644,
      });
  }
  for (let i = 0; i < 3; i++)
    fs.writeFileSync(path.join(r, `opt/data/big${i}`), randomBytes((1 << 20) + i * 262144 + 17));
  fs.symlinkSync('d1/f3', path.join(r, 'opt/data/link'));
  fs.linkSync(path.join(r, 'opt/data/big0'), path.join(r, 'opt/data/big0.hard'));
  run('umoci', ['repack', '--image', `${layout}:v1`, bundle]);
  removeAll(bundle);
  const expected = path.join(work, 'expected');
  run('umoci', ['unpack', ...rootless, '--image', `${layout}:v1`, expected]);
  reference = describeTree(path.join(expected, 'rootfs'));
  const blobs = fs
    .readdirSync(path.join(layout, 'blobs/sha256'))
    .map((n) => fs.statSync(path.join(layout, 'blobs/sha256', n)).size);
  layerSize = Math.max(...blobs);
  registry = await startRegistry();
  const home = path.join(work, 'home');
  for (const [tag, format] of [
    ['oci', 'oci'],
    ['v2s2', 'v2s2'],
  ]) {
    run(
      'skopeo',
      [
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        '--format',
        format!,
        `oci:${layout}:v1`,
        `docker://${registry.host}/test/big:${tag}`,
      ],
      { env: skopeoEnv(home) },
    );
  }
});

t.teardown(async () => {
  await registry?.stop();
  if (work) removeAll(work);
});

// Fields the CLI's tree must share with umoci's: owners differ between the
// two passes only in who ran them, and both run as the same user here.
const FIELDS = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlinkGroup'] as const;

t.test(
  "the built CLI pulls a 4+ MiB layer from a registry to umoci's tree (OCI and schema 2, cache and DEST)",
  async (t) => {
    t.ok(layerSize > 4 << 20, `the layer is over 4 MiB (${layerSize} bytes)`);
    for (const tag of ['oci', 'v2s2']) {
      const cache = scratch('cli-cache');
      const dest = path.join(scratch('cli-dest'), 'out');
      t.teardown(() => {
        removeAll(cache);
        removeAll(path.dirname(dest));
      });
      const r = await runBuiltCli([
        'pull',
        '--insecure',
        '--cache',
        cache,
        `docker://${registry.host}/test/big:${tag}`,
        dest,
      ]);
      t.equal(r.code, 0, `${tag}: pull to DEST exits 0 (${r.err.trim()})`);
      t.equal(r.out.trim(), path.join(dest, 'rootfs'), `${tag}: prints the rootfs`);
      t.same(
        diffTrees(withoutSandboxFiles(describeTree(path.join(dest, 'rootfs'))), reference, { fields: [...FIELDS] }),
        [],
        `${tag}: DEST tree equals umoci's`,
      );
      // The cache path too, with the blob already downloaded by the first pull.
      const again = await runBuiltCli([
        'pull',
        '--insecure',
        '--cache',
        cache,
        `docker://${registry.host}/test/big:${tag}`,
      ]);
      t.equal(again.code, 0, `${tag}: pull into the cache exits 0 (${again.err.trim()})`);
      t.same(
        diffTrees(describeTree(again.out.trim()), reference, { fields: [...FIELDS] }),
        [],
        `${tag}: cached tree equals umoci's`,
      );
      const tmp = path.join(cache, 'tmp');
      t.same(fs.existsSync(tmp) ? fs.readdirSync(tmp) : [], [], `${tag}: nothing left in the cache's tmp/`);
    }
  },
);
