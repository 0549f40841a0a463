// docker:// pulls from a real docker-registry, filled by skopeo: OCI and
// Docker schema 2 manifests, an index, basic auth, a corrupt blob.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pullImage, inspectImage, ImageCache, hostPlatform } from '../../lib/image/index.js';
import { addIndexTag, buildFixtureImage, tagDigest, type FixtureImage } from './fixtures/images.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { describeTree, diffTrees } from './fixtures/tree.js';
import { removeAll, run, scratch, skopeoEnv } from './fixtures/tools.js';

let fx: FixtureImage;
let open: TestRegistry;
let locked: TestRegistry;
let home: string;
const creds = { username: 'pilot', password: 'pa55:word with spaces' };
const otherPlatform =
  hostPlatform().architecture === 's390x'
    ? { os: 'linux', architecture: 'amd64' }
    : { os: 'linux', architecture: 's390x' };

function push(src: string, dest: string, extra: string[] = []): void {
  run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...extra, src, dest], { env: skopeoEnv(home) });
}

t.before(async () => {
  fx = await buildFixtureImage();
  home = scratch('skopeo-home');
  [open, locked] = await Promise.all([startRegistry(), startRegistry(creds)]);
  addIndexTag(fx.layout, 'multi', [
    { from: 'v1', platform: otherPlatform },
    { from: 'v3', platform: hostPlatform() },
  ]);
  push(`oci:${fx.layout}:v3`, `docker://${open.host}/test/img:oci`, ['--format', 'oci']);
  push(`oci:${fx.layout}:v3`, `docker://${open.host}/test/img:v2s2`, ['--format', 'v2s2']);
  push(`oci:${fx.layout}:v1`, `docker://${open.host}/test/small:v1`);
  push(`oci:${fx.layout}:v2`, `docker://${open.host}/test/corrupt:v2`);
  push(`oci:${fx.layout}:multi`, `docker://${open.host}/test/multi:latest`, ['--all']);
  push(`oci:${fx.layout}:v1`, `docker://${locked.host}/private/img:v1`, [
    '--dest-creds',
    `${creds.username}:${creds.password}`,
  ]);
});

t.teardown(async () => {
  await Promise.allSettled([open?.stop(), locked?.stop()]);
  if (fx) removeAll(fx.dir);
  if (home) removeAll(home);
});

t.test('OCI and Docker schema 2 manifests pull to the same tree as the layout', async (t) => {
  const cacheDir = scratch('cache');
  const localCache = scratch('cache');
  t.teardown(() => {
    removeAll(cacheDir);
    removeAll(localCache);
  });
  const local = await pullImage(`oci:${fx.layout}:v3`, { cacheDir: localCache });
  const reference = describeTree(local.rootfs);
  for (const tag of ['oci', 'v2s2']) {
    const info = await inspectImage(`docker://${open.host}/test/img:${tag}`, { insecure: true, cacheDir });
    t.equal(
      info.mediaType,
      tag === 'oci'
        ? 'application/vnd.oci.image.manifest.v1+json'
        : 'application/vnd.docker.distribution.manifest.v2+json',
      `${tag}: manifest type as pushed`,
    );
    const img = await pullImage(`docker://${open.host}/test/img:${tag}`, { insecure: true, cacheDir });
    t.equal(img.cached, false, `${tag}: unpacked`);
    t.equal(img.manifestDigest, info.manifestDigest);
    if (tag === 'oci') t.equal(img.manifestDigest, local.manifestDigest, 'skopeo pushed the layout manifest unchanged');
    else t.not(img.manifestDigest, local.manifestDigest, 'converted to schema 2: a new manifest');
    t.same(diffTrees(describeTree(img.rootfs), reference), [], `${tag}: same tree`);
    t.same(img.config.entrypoint, ['/bin/sh']);
    for (const l of img.manifest.layers)
      t.ok(
        fs.existsSync(path.join(cacheDir, 'blobs', ...l.digest.split(':'))),
        `${tag}: blob ${l.digest.slice(0, 19)} cached`,
      );
  }
  t.equal((await new ImageCache(cacheDir).list()).length, 2, 'one entry per manifest');
});

t.test('a cached digest is served without touching the network', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const img = await pullImage(`docker://${open.host}/test/small:v1`, { insecure: true, cacheDir });
  // Nothing listens on port 1: any request would fail.
  const again = await pullImage(`docker://127.0.0.1:1/test/small@${img.manifestDigest}`, {
    insecure: true,
    cacheDir,
    attempts: 1,
  });
  t.equal(again.cached, true);
  t.equal(again.rootfs, img.rootfs);
  const info = await inspectImage(`docker://127.0.0.1:1/test/small@${img.manifestDigest}`, {
    insecure: true,
    cacheDir,
    attempts: 1,
  });
  t.equal(info.cachedRootfs, img.rootfs);
  await t.rejects(
    pullImage(`docker://127.0.0.1:1/test/small:v1`, { insecure: true, cacheDir, attempts: 2, backoffMs: 10 }),
    { reason: 'REGISTRY', message: /127\.0\.0\.1:1\/test\/small.*gave up after 2 attempts/ },
    'a tag still needs the registry',
  );
});

t.test('an index resolves to the host platform, or to the one asked for', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const img = await pullImage(`docker://${open.host}/test/multi:latest`, { insecure: true, cacheDir });
  t.equal(img.manifestDigest, tagDigest(fx.layout, 'v3'), 'host platform -> v3');
  const other = await pullImage(`docker://${open.host}/test/multi:latest`, {
    insecure: true,
    cacheDir,
    platform: otherPlatform,
  });
  t.equal(other.manifestDigest, tagDigest(fx.layout, 'v1'), `${otherPlatform.architecture} -> v1`);
  await t.rejects(
    pullImage(`docker://${open.host}/test/multi:latest`, {
      insecure: true,
      cacheDir,
      platform: { os: 'linux', architecture: 'mips' },
    }),
    { reason: 'NO_PLATFORM', message: /no manifest for linux\/mips \(has: .*linux\/s390x|no manifest for linux\/mips/ },
  );
  const viaLayout = await pullImage(`oci:${fx.layout}:multi`, { cacheDir });
  t.equal(viaLayout.manifestDigest, tagDigest(fx.layout, 'v3'), 'layout index resolves the same way');
  // The index digest is remembered: pulling the index by digest needs no network.
  const indexDigest = (await inspectImage(`docker://${open.host}/test/multi:latest`, { insecure: true, cacheDir }))
    .indexDigest;
  t.match(indexDigest, /^sha256:/);
  const offline = await pullImage(`docker://127.0.0.1:1/test/multi@${indexDigest}`, { cacheDir, attempts: 1 });
  t.equal(offline.cached, true);
  t.equal(offline.manifestDigest, img.manifestDigest);
});

t.test('https is the default: a plain-http registry needs insecure', async (t) => {
  await t.rejects(pullImage(`docker://${open.host}/test/small:v1`, { cacheDir: scratch('cache'), attempts: 1 }), {
    reason: 'REGISTRY',
    message: new RegExp(`${open.host.replace(/\./g, '\\.')}/test/small`),
  });
});

t.test('missing image and missing tag are NOT_FOUND naming the repository', async (t) => {
  await t.rejects(pullImage(`docker://${open.host}/test/small:nope`, { insecure: true, cacheDir: scratch('cache') }), {
    reason: 'NOT_FOUND',
    message: /manifest nope on 127\.0\.0\.1:\d+\/test\/small: not found \(404: MANIFEST_UNKNOWN/,
  });
  await t.rejects(pullImage(`docker://${open.host}/no/such:v1`, { insecure: true, cacheDir: scratch('cache') }), {
    name: 'ImageError',
    reason: 'NOT_FOUND',
  });
});

t.test('basic auth: refused without or with wrong credentials, works with them (option or env)', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const src = `docker://${locked.host}/private/img:v1`;
  const saved = { u: process.env.NODULARITY_DOCKER_USERNAME, p: process.env.NODULARITY_DOCKER_PASSWORD };
  t.teardown(() => {
    if (saved.u === undefined) delete process.env.NODULARITY_DOCKER_USERNAME;
    else process.env.NODULARITY_DOCKER_USERNAME = saved.u;
    if (saved.p === undefined) delete process.env.NODULARITY_DOCKER_PASSWORD;
    else process.env.NODULARITY_DOCKER_PASSWORD = saved.p;
  });
  delete process.env.NODULARITY_DOCKER_USERNAME;
  delete process.env.NODULARITY_DOCKER_PASSWORD;
  await t.rejects(pullImage(src, { insecure: true, cacheDir }), {
    reason: 'AUTH',
    message: /requires a login; set NODULARITY_DOCKER_USERNAME/,
  });
  await t.rejects(pullImage(src, { insecure: true, cacheDir, credentials: { username: 'pilot', password: 'wrong' } }), {
    reason: 'AUTH',
    message: /credentials refused \(401\) for user `pilot`/,
  });
  const img = await pullImage(src, { insecure: true, cacheDir, credentials: creds });
  t.ok(fs.existsSync(path.join(img.rootfs, 'bin/busybox')));
  await new ImageCache(cacheDir).clean();
  process.env.NODULARITY_DOCKER_USERNAME = creds.username;
  process.env.NODULARITY_DOCKER_PASSWORD = creds.password;
  const viaEnv = await pullImage(src, { insecure: true, cacheDir });
  t.equal(viaEnv.cached, false);
  t.equal(viaEnv.manifestDigest, img.manifestDigest);
});

/** Every path under a directory with its size, to prove nothing changed. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(path.join(dir, r));
      out.push(`${r} ${st.isDirectory() ? 'd' : st.size}`);
      if (st.isDirectory() && !r.startsWith('roots/')) walk(r);
    }
  };
  walk('');
  return out;
}

t.test('a corrupt blob is rejected, naming the layer, and the cache is unchanged', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  // Fill the cache first so "unchanged" compares something real.
  await pullImage(`docker://${open.host}/test/small:v1`, { insecure: true, cacheDir });
  const info = await inspectImage(`docker://${open.host}/test/corrupt:v2`, { insecure: true, cacheDir });
  const victim = info.layers[1]!.digest; // the crafted layer: not in the cache yet
  const hex = victim.split(':')[1]!;
  const data = path.join(open.dir, 'data/docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  const bytes = fs.readFileSync(data);
  bytes[Math.floor(bytes.length / 2)] ^= 0xff; // same size, different content
  fs.writeFileSync(data, bytes);
  const before = snapshot(cacheDir);
  await t.rejects(pullImage(`docker://${open.host}/test/corrupt:v2`, { insecure: true, cacheDir }), {
    name: 'ImageError',
    reason: 'DIGEST_MISMATCH',
    digest: victim,
    message: new RegExp(`layer ${victim}: content hashes to sha256:`),
  });
  t.same(snapshot(cacheDir), before, 'no new blob, no entry, no temp file');
});
