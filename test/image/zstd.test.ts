// zstd-compressed layers (application/vnd.oci.image.layer.v1.tar+zstd), made
// by the `zstd` CLI: unpacked like the gzip original, and corrupt ones
// refused cleanly, naming the layer.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pullImage, inspectImage, ImageCache } from '../../lib/image/index.js';
import { buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { describeTree, diffTrees } from './fixtures/tree.js';
import { removeAll, scratch } from './fixtures/tools.js';
import { addZstdTag } from './fixtures/zstd.js';

let fx: FixtureImage;
let zstdLayers: string[];
const corrupt: Record<string, string[]> = {};

t.before(async () => {
  fx = await buildFixtureImage();
  zstdLayers = addZstdTag(fx.layout, 'v3', 'v3-zstd');
  // Bytes flipped inside the compressed data of the last layer (the digest
  // in the manifest is that of the flipped blob, so only decompression or
  // the diff_id can catch it).
  corrupt.flipped = addZstdTag(fx.layout, 'v3', 'v3-zstd-flipped', (i, blob) => {
    if (i !== 2) return blob;
    const bad = Buffer.from(blob);
    for (let k = Math.floor(bad.length / 2); k < Math.floor(bad.length / 2) + 16; k++) bad[k]! ^= 0x5a;
    return bad;
  });
  // The frame cut short.
  corrupt.truncated = addZstdTag(fx.layout, 'v3', 'v3-zstd-truncated', (i, blob) =>
    i === 0 ? blob.subarray(0, Math.floor(blob.length * 0.6)) : blob,
  );
  // Not zstd at all, under the zstd media type.
  corrupt.garbage = addZstdTag(fx.layout, 'v3', 'v3-zstd-garbage', (i, blob) =>
    i === 1 ? Buffer.from('this is not a zstd frame '.repeat(40)) : blob,
  );
});
t.teardown(() => {
  if (fx) removeAll(fx.dir);
});

t.test('a zstd layout unpacks to the same tree as its gzip original', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const info = await inspectImage(`oci:${fx.layout}:v3-zstd`, { cacheDir });
  t.same(
    info.layers.map((l) => l.mediaType),
    Array(3).fill('application/vnd.oci.image.layer.v1.tar+zstd'),
  );
  t.same(
    info.layers.map((l) => l.digest),
    zstdLayers,
  );
  const gz = await pullImage(`oci:${fx.layout}:v3`, { cacheDir });
  const zs = await pullImage(`oci:${fx.layout}:v3-zstd`, { cacheDir });
  t.not(zs.manifestDigest, gz.manifestDigest, 'a different manifest, so a separate cache entry');
  t.equal(zs.stats.entries, gz.stats.entries, 'same number of tar entries');
  t.equal(zs.stats.bytes, gz.stats.bytes, 'same content bytes');
  t.equal(zs.stats.whiteouts, gz.stats.whiteouts);
  t.equal(zs.stats.opaqueDirs, gz.stats.opaqueDirs);
  const ref = describeTree(gz.rootfs);
  t.ok(ref.size > 280, `reference tree has ${ref.size} entries`);
  t.same(
    diffTrees(describeTree(zs.rootfs), ref, {
      fields: ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlinkGroup', 'rdev', 'mtime'],
    }),
    [],
  );
  t.equal(fs.readFileSync(path.join(zs.rootfs, 'data/hello.txt'), 'utf8'), 'hello from layer 3\n', 'upper layer wins');
  t.notOk(fs.existsSync(path.join(zs.rootfs, 'deleteme.txt')), 'whiteout from the zstd layer applied');
});

const cases: [string, string, number, RegExp][] = [
  // [tag, what, index of the bad layer, message]
  [
    'v3-zstd-flipped',
    'flipped bytes',
    2,
    /layer sha256:[0-9a-f]{64}: (not a valid|uncompressed content does not match)/,
  ],
  [
    'v3-zstd-truncated',
    'a truncated frame',
    0,
    /layer sha256:[0-9a-f]{64}: not a valid zstd stream: zstd: unexpected EOF/,
  ],
  ['v3-zstd-garbage', 'a blob that is not zstd', 1, /layer sha256:[0-9a-f]{64}: not a valid zstd stream/],
];
for (const [tag, what, index, message] of cases) {
  t.test(`a zstd layer with ${what} is refused, naming it, leaving nothing`, async (t) => {
    const base = scratch('zbad');
    t.teardown(() => removeAll(base));
    const cacheDir = path.join(base, 'cache');
    const layers = corrupt[tag.slice('v3-zstd-'.length)]!;
    const err = (await pullImage(`oci:${fx.layout}:${tag}`, { cacheDir }).then(
      () => undefined,
      (e: unknown) => e,
    )) as { reason?: string; digest?: string; message?: string } | undefined;
    t.ok(err, 'pull rejected');
    t.match(err?.reason, /^(BAD_LAYER|DIGEST_MISMATCH)$/, `reason ${err?.reason}`);
    t.match(err?.message, message);
    t.equal(err?.digest, layers[index], 'the bad layer is the one named');
    t.ok(err?.message?.includes(layers[index]!), 'and its digest is in the message');
    t.same(await new ImageCache(cacheDir).list(), [], 'no cache entry');
    t.same(fs.readdirSync(path.join(cacheDir, 'tmp')), [], 'staging removed');
    const dest = path.join(base, 'dest');
    await t.rejects(pullImage(`oci:${fx.layout}:${tag}`, { dest, cacheDir }), {
      name: 'ImageError',
      digest: layers[index],
    });
    t.same(fs.readdirSync(base).sort(), ['cache'], 'no DEST and no temp sibling left');
  });
}
