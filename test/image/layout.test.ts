// OCI layouts and docker-archives built by umoci and skopeo, unpacked by
// nodularity and compared with `umoci unpack` of the same image.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pullImage, inspectImage, ImageCache, imageProcessDefaults, ImageError } from '../../lib/image/index.js';
import { buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { describeTree, diffTrees, type TreeEntry } from './fixtures/tree.js';
import { isRoot, removeAll, run, scratch, skopeoEnv } from './fixtures/tools.js';

let fx: FixtureImage;
const me = { uid: process.getuid!(), gid: process.getgid!() };

t.before(async () => {
  fx = await buildFixtureImage();
});
t.teardown(() => {
  if (fx) removeAll(fx.dir);
});

/** `umoci unpack` of a tag, as the reference tree. */
function umociTree(tag: string): Map<string, TreeEntry> {
  const bundle = path.join(scratch('ref'), 'bundle');
  run('umoci', ['unpack', ...(isRoot ? [] : ['--rootless']), '--image', `${fx.layout}:${tag}`, bundle]);
  try {
    return describeTree(path.join(bundle, 'rootfs'));
  } finally {
    removeAll(path.dirname(bundle));
  }
}

/**
 * What nodularity must produce, given umoci's tree. As root both keep
 * setuid/setgid bits in the cache, and device nodes only with keepDevices
 * (umoci always makes them). Unprivileged, umoci --rootless keeps
 * setuid/setgid bits on the caller's files, where nodularity drops them by
 * design; both skip devices.
 */
function expectedFromUmoci(
  ref: Map<string, TreeEntry>,
  options: { keepDevices?: boolean } = {},
): Map<string, TreeEntry> {
  if (isRoot && options.keepDevices) return ref;
  const out = new Map<string, TreeEntry>();
  for (const [k, e] of ref) {
    // umoci --rootless writes an empty regular file in place of a device
    // node; nodularity creates nothing and counts it (stats.devicesSkipped).
    if (k === 'dev/null2') {
      if (isRoot ? e.type !== 'char' : e.type !== 'file' || e.size !== 0)
        throw new Error(
          `umoci made dev/null2 a ${e.type} of ${e.size} bytes; the test assumed ${isRoot ? 'a char device' : 'an empty file'}`,
        );
      continue;
    }
    out.set(k, isRoot ? e : { ...e, mode: e.mode & ~0o6000 });
  }
  return out;
}

t.test('oci layout: v3 unpacks exactly as umoci unpacks it', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const img = await pullImage(`oci:${fx.layout}:v3`, { cacheDir });
  t.equal(img.cached, false);
  t.ok(img.rootfs.startsWith(cacheDir + '/roots/sha256/'), 'rootfs lives in the cache, keyed by digest');
  t.match(img.manifestDigest, /^sha256:[0-9a-f]{64}$/);
  const ours = describeTree(img.rootfs);
  const ref = umociTree('v3');
  t.ok(ref.size > 280, `reference tree has ${ref.size} entries`);
  // Directory mtimes are compared too: both apply them after the children.
  t.same(
    diffTrees(ours, expectedFromUmoci(ref), {
      fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlinkGroup', 'rdev', 'mtime'],
    }),
    [],
    'no differences',
  );

  // The layer semantics, spelled out, so a shared bug with umoci cannot hide.
  t.notOk(ours.has('deleteme.txt'), 'whiteout removed deleteme.txt');
  t.notOk(ours.has('replaced/old1.txt'), 'opaque dir hid old1.txt');
  t.notOk(ours.has('replaced/sub'), 'opaque dir hid sub/');
  t.notOk(ours.has('replaced/new.txt'), 'layer 3 deleted new.txt (umoci whiteout)');
  t.equal(ours.get('replaced/link-in-3')?.target, '../data/hello.txt');
  t.equal(ours.get('replaced')?.mode, 0o750);
  t.notOk(ours.has('data/exec.sh'), 'layer 3 deleted exec.sh');
  t.equal(fs.readFileSync(path.join(img.rootfs, 'data/hello.txt'), 'utf8'), 'hello from layer 3\n');
  t.equal(ours.get('data/abs-link')?.target, '/etc/passwd', 'absolute symlink kept verbatim');
  t.equal(ours.get('data/dangling')?.target, '/does/not/exist');
  t.equal(ours.get('data/ro-dir')?.mode, 0o555, 'read-only dir mode applied at the end');
  t.equal(ours.get('data/private')?.mode, 0o600);
  t.equal(ours.get('data/fifo')?.type, 'fifo');
  t.equal(ours.get('data/nested/deeper/file')?.size, 300_000);
  t.equal(ours.get('bin/busybox')?.mode, 0o755);
  if (isRoot) {
    t.equal(ours.get('data/setuid-bin')?.mode, 0o4755, 'root keeps setuid');
    t.equal(ours.get('data/setgid-bin')?.mode, 0o2750, 'root keeps setgid');
    t.notOk(ours.has('dev/null2'), 'root creates no device node by default');
    t.equal(img.stats.devicesSkipped, 1, 'device node counted as skipped');
    t.equal(img.stats.setidDropped, 0, 'setuid/setgid kept in the (private) cache');
    // Asked for, devices are made, in a cache entry of their own, and the tree is umoci's exactly.
    const kept = await pullImage(`oci:${fx.layout}:v3`, { cacheDir, keepDevices: true });
    t.not(kept.rootfs, img.rootfs, 'keepDevices: another cache entry');
    const withDevices = describeTree(kept.rootfs);
    t.same(
      diffTrees(withDevices, expectedFromUmoci(ref, { keepDevices: true }), {
        fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlinkGroup', 'rdev', 'mtime'],
      }),
      [],
      'keepDevices: no differences from umoci',
    );
    t.equal(withDevices.get('dev/null2')?.type, 'char', 'root creates device nodes when asked');
    t.equal(withDevices.get('dev/null2')?.rdev, fs.statSync('/dev/null').rdev);
    t.equal(kept.stats.devicesSkipped, 0);
  } else {
    t.equal(ours.get('data/setuid-bin')?.mode, 0o755, 'setuid dropped');
    t.equal(ours.get('data/setgid-bin')?.mode, 0o750, 'setgid dropped');
    t.notOk(ours.has('dev/null2'), 'device node not created');
    t.equal(img.stats.devicesSkipped, 1, 'device node counted as skipped');
    t.ok(img.stats.setidDropped >= 2, `setuid/setgid drops counted (${img.stats.setidDropped})`);
    for (const [k, e] of ours)
      if (e.uid !== me.uid || e.gid !== me.gid) t.fail(`${k} owned by ${e.uid}:${e.gid}, not the caller`);
  }
  t.equal(img.stats.opaqueDirs, 1);
  t.ok(img.stats.whiteouts >= 3, `whiteouts counted (${img.stats.whiteouts})`);
});

t.test('oci layout: v2 keeps the crafted layer 2 view (opaque dir then new file)', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const img = await pullImage(`oci:${fx.layout}:v2`, { cacheDir });
  const ours = describeTree(img.rootfs);
  t.same(diffTrees(ours, expectedFromUmoci(umociTree('v2'))), []);
  t.same(
    [...ours.keys()].filter((k) => k.startsWith('replaced/')),
    ['replaced/new.txt'],
    'only the layer-2 content is under the opaque dir',
  );
  t.equal(ours.get('data/hardlink.txt')?.hardlinkGroup, 'data/hardlink.txt', 'hardlink pair shares an inode');
  t.equal(ours.get('data/hello.txt')?.hardlinkGroup, 'data/hardlink.txt');
  t.equal(ours.get('data/hello.txt')?.mtime, Date.parse('2001-02-03T04:05:06Z') / 1000, 'mtime from the layer');
});

t.test('image config: env, entrypoint, cmd, workdir, user by name, labels', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const img = await pullImage(`oci:${fx.layout}:v3`, { cacheDir });
  t.same(img.config.env, ['GREETING=hello world', 'PATH=/bin:/usr/bin']);
  t.same(img.config.entrypoint, ['/bin/sh']);
  t.same(img.config.cmd, ['-c', 'echo $GREETING']);
  t.equal(img.config.workingDir, '/data');
  t.equal(img.config.user, 'app');
  t.same(img.config.labels, { 'org.example.test': 'nodularity' });
  const proc = await imageProcessDefaults(img.config, img.rootfs);
  t.same(proc.args, ['/bin/sh', '-c', 'echo $GREETING']);
  t.same(
    proc.user,
    { uid: 1234, gid: 2345, additionalGids: [3456], home: '/home/app' },
    'user resolved through the image /etc/passwd and /etc/group',
  );
  t.equal(proc.cwd, '/data');
  const over = await imageProcessDefaults({ ...img.config, user: '42:appgrp' }, img.rootfs, ['id']);
  t.same(over.args, ['/bin/sh', 'id'], 'args replace Cmd, not Entrypoint');
  t.same(over.user, { uid: 42, gid: 2345, additionalGids: [] });
  await t.rejects(
    imageProcessDefaults({ ...img.config, user: 'nosuchuser' }, img.rootfs),
    /no user `nosuchuser` in the image's \/etc\/passwd/,
  );
});

t.test('cache: a second pull is a hit, list shows one entry, clean empties it', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const first = await pullImage(`oci:${fx.layout}:v3`, { cacheDir });
  const mtime = fs.statSync(first.dir).mtimeMs;
  const second = await pullImage(`oci:${fx.layout}:v3`, { cacheDir });
  t.equal(second.cached, true);
  t.equal(second.rootfs, first.rootfs);
  t.equal(fs.statSync(second.dir).mtimeMs, mtime, 'entry not rewritten');
  const cache = new ImageCache(cacheDir);
  const listed = await cache.list();
  t.same(
    listed.map((e) => e.manifestDigest),
    [first.manifestDigest],
  );
  t.same(fs.readdirSync(path.join(cacheDir, 'tmp')), [], 'no temp leftovers');
  const cleaned = await cache.clean();
  t.same(cleaned.removed, [first.manifestDigest]);
  t.ok(cleaned.bytesFreed > 1_000_000, `freed ${cleaned.bytesFreed} bytes`);
  t.same(await cache.list(), []);
  t.notOk(fs.existsSync(first.rootfs));
});

t.test('inspect describes without unpacking', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const info = await inspectImage(`oci:${fx.layout}:v3`, { cacheDir });
  t.equal(info.layers.length, 3, 'umoci repack v1, the crafted layer, umoci repack v3');
  t.equal(
    info.size,
    info.layers.reduce((a, l) => a + l.size, 0),
  );
  t.equal(info.config.workingDir, '/data');
  t.notOk(fs.existsSync(path.join(cacheDir, 'roots')), 'nothing unpacked');
});

t.test('pull into DEST writes DEST/rootfs and DEST/image.json, refuses a non-empty DEST', async (t) => {
  const base = scratch('dest');
  t.teardown(() => removeAll(base));
  const dest = path.join(base, 'bundle');
  const img = await pullImage(`oci:${fx.layout}:v1`, { dest, cacheDir: path.join(base, 'cache') });
  t.equal(img.rootfs, path.join(dest, 'rootfs'));
  t.ok(fs.existsSync(path.join(dest, 'rootfs/bin/busybox')));
  t.equal(JSON.parse(fs.readFileSync(path.join(dest, 'image.json'), 'utf8')).manifestDigest, img.manifestDigest);
  await t.rejects(pullImage(`oci:${fx.layout}:v1`, { dest, cacheDir: path.join(base, 'cache') }), {
    name: 'ImageError',
    message: /is not empty/,
  });
  t.same(fs.readdirSync(base).sort(), ['bundle'], 'no temp sibling left behind (and no cache needed for a layout)');
});

t.test('source errors name the source', async (t) => {
  await t.rejects(pullImage(`oci:${fx.layout}:nope`, { cacheDir: scratch('c') }), {
    reason: 'NOT_FOUND',
    message: /no image tagged `nope`.*tags: .*v1/,
  });
  await t.rejects(pullImage(`oci:${fx.layout}`, { cacheDir: scratch('c') }), {
    reason: 'BAD_SOURCE',
    message: /holds \d+ images; name one/,
  });
  await t.rejects(pullImage('oci:/nonexistent/layout', { cacheDir: scratch('c') }), {
    reason: 'BAD_SOURCE',
    message: /not an OCI image layout/,
  });
  await t.rejects(pullImage('bogus:thing'), ImageError);
});

t.test('docker-archive from skopeo unpacks to the same tree', async (t) => {
  const work = scratch('archive');
  t.teardown(() => removeAll(work));
  const archive = path.join(work, 'img.tar');
  run('skopeo', ['copy', '--quiet', `oci:${fx.layout}:v3`, `docker-archive:${archive}:test/img:v3`], {
    env: skopeoEnv(path.join(work, 'home')),
  });
  const fromArchive = await pullImage(`docker-archive:${archive}`, { cacheDir: path.join(work, 'cache') });
  const fromLayout = await pullImage(`oci:${fx.layout}:v3`, { cacheDir: path.join(work, 'cache') });
  t.not(
    fromArchive.manifestDigest,
    fromLayout.manifestDigest,
    'a different manifest (docker-archive layers are uncompressed)',
  );
  t.same(
    diffTrees(describeTree(fromArchive.rootfs), describeTree(fromLayout.rootfs), {
      fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlinkGroup', 'rdev', 'mtime'],
    }),
    [],
  );
  t.same(fromArchive.config.cmd, ['-c', 'echo $GREETING']);
  const byTag = await pullImage(`docker-archive:${archive}:test/img:v3`, { cacheDir: path.join(work, 'cache') });
  t.equal(byTag.cached, true, 'same archive, same digest: cache hit');
  await t.rejects(pullImage(`docker-archive:${archive}:test/img:nope`, { cacheDir: path.join(work, 'cache') }), {
    name: 'ImageError',
    reason: 'NOT_FOUND',
  });
  t.same(fs.readdirSync(path.join(work, 'cache', 'tmp')), [], 'staging removed');
});
