// Hostile layers: every way out of the rootfs is refused with an error
// naming the layer digest and the entry, and nothing outside is touched.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { unpackLayers, pullImage, ImageError, type LayerInput } from '../../lib/image/index.js';
import { makeTar, type TarEntrySpec } from './fixtures/tarball.js';
import { removeAll, run, scratch } from './fixtures/tools.js';

interface Arena {
  base: string;
  rootfs: string;
  outside: string;
  victim: string;
}

/** rootfs/ next to outside/ (with a sentinel file) and a victim file. */
function arena(t: { teardown: (fn: () => void) => void }): Arena {
  const base = scratch('evil');
  t.teardown(() => removeAll(base));
  const a = {
    base,
    rootfs: path.join(base, 'rootfs'),
    outside: path.join(base, 'outside'),
    victim: path.join(base, 'victim'),
  };
  fs.mkdirSync(a.outside);
  fs.writeFileSync(path.join(a.outside, 'sentinel'), 'keep me\n');
  fs.writeFileSync(a.victim, 'original\n');
  return a;
}

/** Everything under base except rootfs/, with contents: must not change. */
function outsideState(a: Arena): string {
  const lines: string[] = [];
  const walk = (dir: string): void => {
    for (const n of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, n);
      if (p === a.rootfs) continue;
      const st = fs.lstatSync(p);
      lines.push(
        `${path.relative(a.base, p)} ${st.mode.toString(8)} ${st.isFile() ? fs.readFileSync(p, 'utf8') : st.isSymbolicLink() ? fs.readlinkSync(p) : ''}`,
      );
      if (st.isDirectory()) walk(p);
    }
  };
  walk(a.base);
  return lines.join('\n');
}

function layer(tarBytes: Buffer, gzip = true): LayerInput {
  const blob = gzip ? gzipSync(tarBytes) : tarBytes;
  return {
    digest: 'sha256:' + createHash('sha256').update(blob).digest('hex'),
    size: blob.length,
    compression: gzip ? 'gzip' : 'none',
    open: () => Readable.from([blob]),
  };
}

/** Layers that must be refused, and the entry the error must name. */
const attacks: { name: string; layers: (a: Arena) => TarEntrySpec[][]; entry: string; why: RegExp }[] = [
  {
    name: 'dot-dot component',
    layers: () => [[{ name: '../escape.txt', content: 'x' }]],
    entry: '../escape.txt',
    why: /`\.\.` component/,
  },
  {
    name: 'dot-dot in the middle',
    layers: () => [[{ name: 'a/../../outside/sentinel', content: 'x' }]],
    entry: 'a/../../outside/sentinel',
    why: /`\.\.` component/,
  },
  {
    name: 'absolute path',
    layers: (a) => [[{ name: path.join(a.outside, 'abs.txt'), content: 'x' }]],
    entry: '',
    why: /absolute path/,
  },
  {
    name: 'file through a symlinked parent (relative link)',
    layers: () => [
      [
        { name: 'link', type: 'symlink', linkname: '../outside' },
        { name: 'link/pwned', content: 'x' },
      ],
    ],
    entry: 'link/pwned',
    why: /goes through `link`, which is a symlink/,
  },
  {
    name: 'file through a symlinked parent (absolute link)',
    layers: (a) => [
      [
        { name: 'link', type: 'symlink', linkname: a.outside },
        { name: 'link/sentinel', content: 'x' },
      ],
    ],
    entry: 'link/sentinel',
    why: /symlink/,
  },
  {
    name: 'symlinked parent planted by a lower layer',
    layers: (a) => [[{ name: 'up', type: 'symlink', linkname: a.base }], [{ name: 'up/victim', content: 'x' }]],
    entry: 'up/victim',
    why: /symlink/,
  },
  {
    name: 'directory through a symlinked parent',
    layers: (a) => [
      [
        { name: 'link', type: 'symlink', linkname: a.outside },
        { name: 'link/newdir/', type: 'directory' },
      ],
    ],
    entry: 'link/newdir/',
    why: /symlink/,
  },
  {
    name: 'symlink through a symlinked parent',
    layers: (a) => [
      [
        { name: 'link', type: 'symlink', linkname: a.outside },
        { name: 'link/l2', type: 'symlink', linkname: '/x' },
      ],
    ],
    entry: 'link/l2',
    why: /symlink/,
  },
  {
    name: 'whiteout through a symlinked parent',
    layers: (a) => [[{ name: 'link', type: 'symlink', linkname: a.outside }], [{ name: 'link/.wh.sentinel' }]],
    entry: 'link/.wh.sentinel',
    why: /symlink/,
  },
  {
    name: 'opaque whiteout through a symlinked parent',
    layers: (a) => [[{ name: 'link', type: 'symlink', linkname: a.outside }], [{ name: 'link/.wh..wh..opq' }]],
    entry: 'link/.wh..wh..opq',
    why: /symlink/,
  },
  {
    name: 'hard link to ../',
    layers: () => [[{ name: 'hl', type: 'link', linkname: '../victim' }]],
    entry: 'hl',
    why: /`\.\.` component in its hard link target/,
  },
  {
    name: 'hard link to an absolute path',
    layers: (a) => [[{ name: 'hl', type: 'link', linkname: a.victim }]],
    entry: 'hl',
    why: /absolute hard link target/,
  },
  {
    name: 'hard link through a symlinked parent',
    layers: (a) => [
      [
        { name: 'link', type: 'symlink', linkname: a.base },
        { name: 'hl', type: 'link', linkname: 'link/victim' },
      ],
    ],
    entry: 'hl',
    why: /symlink/,
  },
  {
    name: 'hard link to a file that does not exist',
    layers: () => [
      [
        { name: 'd/', type: 'directory' },
        { name: 'hl', type: 'link', linkname: 'd/nothere' },
      ],
    ],
    entry: 'hl',
    why: /hard link to `d\/nothere`, which does not exist/,
  },
  {
    name: 'hard link to a directory',
    layers: () => [
      [
        { name: 'd/', type: 'directory' },
        { name: 'hl', type: 'link', linkname: 'd' },
      ],
    ],
    entry: 'hl',
    why: /hard link to the directory `d`/,
  },
  {
    name: 'whiteout of ..',
    layers: () => [[{ name: 'd/', type: 'directory' }, { name: 'd/.wh...' }]],
    entry: 'd/.wh...',
    why: /whiteout for an invalid name/,
  },
];

for (const attack of attacks) {
  t.test(`refused: ${attack.name}`, async (t) => {
    const a = arena(t);
    const before = outsideState(a);
    const layers = await Promise.all(attack.layers(a).map(async (entries) => layer(await makeTar(entries))));
    const last = layers[layers.length - 1]!;
    const err = await unpackLayers(a.rootfs, layers).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof ImageError, `rejected with an ImageError (${String(err)})`);
    const e = err as ImageError;
    t.equal(e.reason, 'UNSAFE_ENTRY');
    t.equal(e.digest, last.digest, 'names the layer digest');
    t.ok(e.message.includes(last.digest), 'message has the digest');
    if (attack.entry) t.equal(e.entry, attack.entry, 'names the entry');
    t.match(e.message, attack.why);
    t.equal(outsideState(a), before, 'nothing outside the rootfs changed');
  });
}

t.test('a write that fails stops the layer there: later entries are not written', async (t) => {
  const a = arena(t);
  const entries: TarEntrySpec[] = [
    { name: 'd/', type: 'directory' },
    { name: 'd/first', content: 'first\n' },
    { name: 'hl', type: 'link', linkname: 'd/nothere' },
  ];
  for (let i = 0; i < 200; i++) entries.push({ name: `d/later${i}`, content: `${i}\n` });
  await t.rejects(unpackLayers(a.rootfs, [layer(await makeTar(entries))]), {
    name: 'ImageError',
    reason: 'UNSAFE_ENTRY',
    entry: 'hl',
  });
  t.same(fs.readdirSync(path.join(a.rootfs, 'd')), ['first'], 'only what came before the failed entry');
});

t.test('a symlink pointing out is replaced, never written through', async (t) => {
  const a = arena(t);
  const before = outsideState(a);
  await unpackLayers(a.rootfs, [
    layer(
      await makeTar([
        { name: 'evil', type: 'symlink', linkname: a.victim },
        { name: 'hl', type: 'link', linkname: 'evil' },
      ]),
    ),
    layer(
      await makeTar([
        { name: 'evil', content: 'replaced\n' },
        { name: 'hl', content: 'also replaced\n' },
      ]),
      false,
    ),
  ]);
  t.equal(outsideState(a), before, 'victim untouched');
  t.ok(fs.lstatSync(path.join(a.rootfs, 'evil')).isFile());
  t.equal(fs.readFileSync(path.join(a.rootfs, 'evil'), 'utf8'), 'replaced\n');
  t.equal(fs.readFileSync(path.join(a.rootfs, 'hl'), 'utf8'), 'also replaced\n');
});

t.test('a symlink replaced by a directory is a directory, not a way out', async (t) => {
  const a = arena(t);
  const before = outsideState(a);
  await unpackLayers(a.rootfs, [
    layer(await makeTar([{ name: 'd', type: 'symlink', linkname: a.outside }])),
    layer(
      await makeTar([
        { name: 'd/', type: 'directory' },
        { name: 'd/sentinel', content: 'inside\n' },
      ]),
    ),
  ]);
  t.equal(outsideState(a), before);
  t.equal(fs.readFileSync(path.join(a.rootfs, 'd/sentinel'), 'utf8'), 'inside\n');
});

t.test('the root written as `/` (umoci insert DIR /) is accepted; `/..` is not', async (t) => {
  const a = arena(t);
  await unpackLayers(a.rootfs, [
    layer(
      await makeTar([
        { name: '/', type: 'directory', mode: 0o755 },
        { name: 'f', content: 'ok\n' },
      ]),
    ),
  ]);
  t.equal(fs.readFileSync(path.join(a.rootfs, 'f'), 'utf8'), 'ok\n');
  await t.rejects(unpackLayers(path.join(a.base, 'r2'), [layer(await makeTar([{ name: '/..', type: 'directory' }]))]), {
    reason: 'UNSAFE_ENTRY',
    message: /absolute path `\/\.\.`/,
  });
});

t.test('a whiteout only hides lower layers, never its own layer', async (t) => {
  const a = arena(t);
  await unpackLayers(a.rootfs, [
    layer(
      await makeTar([
        { name: 'keep/', type: 'directory' },
        { name: 'keep/lower', content: 'lower\n' },
        { name: 'gone', content: 'x' },
      ]),
    ),
    layer(
      await makeTar([
        { name: 'keep/mine', content: 'mine\n' },
        { name: 'keep/.wh..wh..opq' },
        { name: 'again', content: 'a' },
        { name: '.wh.again' },
        { name: '.wh.gone' },
      ]),
    ),
  ]);
  t.same(fs.readdirSync(path.join(a.rootfs, 'keep')), ['mine'], 'opaque after own entry keeps it, hides the lower one');
  t.ok(fs.existsSync(path.join(a.rootfs, 'again')), 'whiteout after own entry does not delete it');
  t.notOk(fs.existsSync(path.join(a.rootfs, 'gone')));
});

t.test('through pullImage: a hostile layer leaves no cache entry and no temp dir', async (t) => {
  const work = scratch('evil-pull');
  t.teardown(() => removeAll(work));
  const layout = path.join(work, 'layout');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:evil`]);
  const tarFile = path.join(work, 'evil.tar');
  fs.writeFileSync(
    tarFile,
    await makeTar([
      { name: 'ok.txt', content: 'fine\n' },
      { name: 'link', type: 'symlink', linkname: work },
      { name: 'link/pwned', content: 'x' },
    ]),
  );
  run('umoci', ['raw', 'add-layer', '--image', `${layout}:evil`, tarFile]);
  const cacheDir = path.join(work, 'cache');
  await t.rejects(pullImage(`oci:${layout}:evil`, { cacheDir }), {
    reason: 'UNSAFE_ENTRY',
    entry: 'link/pwned',
    message: /layer sha256:[0-9a-f]{64}: entry `link\/pwned` goes through `link`/,
  });
  t.notOk(fs.existsSync(path.join(work, 'pwned')));
  t.notOk(fs.existsSync(path.join(cacheDir, 'roots')), 'no entry');
  t.same(fs.readdirSync(path.join(cacheDir, 'tmp')), [], 'no half-unpacked temp dir');
  const dest = path.join(work, 'dest');
  await t.rejects(pullImage(`oci:${layout}:evil`, { cacheDir, dest }), { name: 'ImageError', reason: 'UNSAFE_ENTRY' });
  t.same(fs.readdirSync(work).sort(), ['cache', 'evil.tar', 'layout'], 'no DEST and no temp sibling');
});

t.test('corrupt and truncated layers are refused with the digest named', async (t) => {
  const a = arena(t);
  const good = layer(await makeTar([{ name: 'f', content: 'data\n'.repeat(1000) }]));
  const blob = gzipSync(await makeTar([{ name: 'f', content: 'data\n'.repeat(1000) }]));
  const wrongDigest: LayerInput = {
    ...good,
    open: () => Readable.from([Buffer.concat([blob.subarray(0, 10), Buffer.from([blob[10]! ^ 1]), blob.subarray(11)])]),
  };
  await t.rejects(unpackLayers(path.join(a.base, 'r1'), [wrongDigest]), {
    name: 'ImageError',
    reason: /DIGEST_MISMATCH|BAD_LAYER/,
    digest: good.digest,
  });
  const truncated: LayerInput = { ...good, open: () => Readable.from([blob.subarray(0, blob.length - 20)]) };
  await t.rejects(unpackLayers(path.join(a.base, 'r2'), [truncated]), { name: 'ImageError', digest: good.digest });
  const badDiffId: LayerInput = { ...good, diffId: 'sha256:' + '0'.repeat(64) };
  await t.rejects(unpackLayers(path.join(a.base, 'r3'), [badDiffId]), {
    reason: 'DIGEST_MISMATCH',
    digest: good.digest,
    message: /uncompressed content does not match its diff_id sha256:0{64}/,
  });
  await t.rejects(unpackLayers(path.join(a.base, 'r4'), [{ ...good, digest: 'sha256:../../etc' }]), {
    name: 'ImageError',
    reason: 'BAD_DIGEST',
  });
});
