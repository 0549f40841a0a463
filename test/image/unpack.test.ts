// unpackLayers on layers built entry by entry: the paths the minbase image
// does not take (files large enough to stream in pieces, truncated and
// corrupt streams, many small files crossing content arenas).
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { unpackLayers, ImageError, type LayerInput } from '../../lib/image/index.js';
import { makeTar, type TarEntrySpec } from './fixtures/tarball.js';
import { removeAll, scratch } from './fixtures/tools.js';

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function layer(tarBytes: Buffer, opts: { gzip?: boolean; diffId?: boolean } = {}): LayerInput {
  const blob = opts.gzip === false ? tarBytes : gzipSync(tarBytes);
  const l: LayerInput = {
    digest: 'sha256:' + sha256(blob),
    size: blob.length,
    compression: opts.gzip === false ? 'none' : 'gzip',
    open: () => Readable.from([blob]),
  };
  if (opts.diffId !== false) l.diffId = 'sha256:' + sha256(tarBytes);
  return l;
}

const mtime = new Date('2021-06-07T08:09:10Z');

t.test('files larger than a content arena and than the whole-file limit keep content, mode and mtime', async (t) => {
  const dir = scratch('unpack-big');
  t.teardown(() => removeAll(dir));
  // 3 MiB: one buffer of its own; 9 MiB: streamed in pieces through the write thread.
  const mid = randomBytes(3 << 20);
  const big = randomBytes((9 << 20) + 123);
  const rootfs = path.join(dir, 'rootfs');
  await unpackLayers(
    rootfs,
    [
      layer(
        await makeTar([
          { name: 'd/', type: 'directory', mode: 0o750 },
          { name: 'd/mid.bin', content: mid, mode: 0o640, mtime },
          { name: 'd/big.bin', content: big, mode: 0o751, mtime },
          { name: 'd/after', content: 'after\n' },
          { name: 'd/big-link', type: 'link', linkname: 'd/big.bin' },
        ]),
      ),
    ],
    { preserveOwnership: false },
  );
  for (const [name, data, mode] of [
    ['mid.bin', mid, 0o640],
    ['big.bin', big, 0o751],
  ] as const) {
    const p = path.join(rootfs, 'd', name);
    const st = fs.statSync(p);
    t.equal(st.size, data.length, `${name} size`);
    t.equal(sha256(fs.readFileSync(p)), sha256(data), `${name} content`);
    t.equal(st.mode & 0o7777, mode, `${name} mode`);
    t.equal(st.mtimeMs, mtime.getTime(), `${name} mtime`);
  }
  t.equal(fs.readFileSync(path.join(rootfs, 'd/after'), 'utf8'), 'after\n', 'the entry after a large file');
  t.equal(
    fs.statSync(path.join(rootfs, 'd/big-link')).ino,
    fs.statSync(path.join(rootfs, 'd/big.bin')).ino,
    'hard link to the large file',
  );
  t.equal(fs.statSync(path.join(rootfs, 'd')).mode & 0o7777, 0o750, 'directory mode applied at the end');
});

t.test('thousands of small files across many arenas: every content intact', async (t) => {
  const dir = scratch('unpack-many');
  t.teardown(() => removeAll(dir));
  const entries: TarEntrySpec[] = [{ name: 'm/', type: 'directory' }];
  const contents: Buffer[] = [];
  for (let i = 0; i < 3000; i++) {
    const c = randomBytes(1 + ((i * 7919) % 20000));
    contents.push(c);
    entries.push({ name: `m/f${i}`, content: c });
  }
  const rootfs = path.join(dir, 'rootfs');
  const stats = await unpackLayers(rootfs, [layer(await makeTar(entries))]);
  t.equal(stats.files, 3000);
  let bad = 0;
  for (let i = 0; i < contents.length; i++)
    if (!fs.readFileSync(path.join(rootfs, `m/f${i}`)).equals(contents[i]!)) bad++;
  t.equal(bad, 0, "no file has another one's bytes");
});

t.test('a tar cut off inside a large file is a bad layer naming the digest', async (t) => {
  const dir = scratch('unpack-cut');
  t.teardown(() => removeAll(dir));
  const full = await makeTar([{ name: 'big.bin', content: randomBytes(6 << 20) }]);
  const cut = full.subarray(0, 5 << 20);
  const l = layer(Buffer.from(cut), { diffId: false });
  const err = await unpackLayers(path.join(dir, 'rootfs'), [l]).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof ImageError, String(err));
  t.equal((err as ImageError).reason, 'BAD_LAYER');
  t.equal((err as ImageError).digest, l.digest);
  t.match((err as Error).message, /not a valid tar stream: Unexpected end of data/);
  t.notMatch((err as Error).message, /thread failed/, 'the decode thread reported it; it did not die of it');
});

t.test('a gzip layer whose content does not match its diff_id is refused', async (t) => {
  const dir = scratch('unpack-diffid');
  t.teardown(() => removeAll(dir));
  const l = layer(await makeTar([{ name: 'f', content: 'x\n' }]));
  l.diffId = 'sha256:' + '0'.repeat(64);
  await t.rejects(unpackLayers(path.join(dir, 'rootfs'), [l]), {
    reason: 'DIGEST_MISMATCH',
    digest: l.digest,
    message: /uncompressed content does not match/,
  });
});

t.test('a blob that does not match its digest or size is refused', async (t) => {
  const dir = scratch('unpack-digest');
  t.teardown(() => removeAll(dir));
  const good = layer(await makeTar([{ name: 'f', content: 'x\n' }]));
  const wrongDigest = { ...good, digest: 'sha256:' + '1'.repeat(64) };
  await t.rejects(unpackLayers(path.join(dir, 'r1'), [wrongDigest]), {
    reason: 'DIGEST_MISMATCH',
    digest: wrongDigest.digest,
    message: /content hashes to sha256:/,
  });
  const wrongSize = { ...good, size: good.size! - 1 };
  await t.rejects(unpackLayers(path.join(dir, 'r2'), [wrongSize]), {
    reason: 'SIZE_MISMATCH',
    message: /more than the/,
  });
});
