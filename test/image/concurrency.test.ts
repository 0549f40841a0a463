// Several processes filling one cache: four simultaneous pulls of the same
// image end with one valid entry; a pull killed mid-unpack leaves no entry
// and the next pull succeeds.
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pullImage, ImageCache } from '../../lib/image/index.js';
import { addBigLayer, buildFixtureImage, type FixtureImage } from './fixtures/images.js';
import { describeTree, diffTrees, withoutSandboxFiles } from './fixtures/tree.js';
import { removeAll, scratch } from './fixtures/tools.js';

const child = fileURLToPath(new URL('./fixtures/pull-child.ts', import.meta.url));
let fx: FixtureImage;

t.before(async () => {
  fx = await buildFixtureImage();
  await addBigLayer(fx.layout, 'v3', 'big', fx.dir);
});
t.teardown(() => {
  if (fx) removeAll(fx.dir);
});

interface ChildRun {
  lines: Record<string, unknown>[];
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Start a pull in a new node process (with this test's TypeScript loader).
 * `onLine` may kill it.
 */
function startPull(
  source: string,
  cacheDir: string,
  onLine?: (l: Record<string, unknown>, kill: () => void) => void,
): Promise<ChildRun> {
  const p = spawn(process.execPath, [...process.execArgv, child, source, cacheDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Record<string, unknown>[] = [];
  readline.createInterface({ input: p.stdout! }).on('line', (line) => {
    const l = JSON.parse(line) as Record<string, unknown>;
    lines.push(l);
    onLine?.(l, () => p.kill('SIGKILL'));
  });
  return new Promise((resolve) => p.on('close', (code, signal) => resolve({ lines, code, signal })));
}

t.test('4 processes pulling the same image at once: one valid entry', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  const runs = await Promise.all([0, 1, 2, 3].map(() => startPull(`oci:${fx.layout}:big`, cacheDir)));
  const results = runs.map(
    (r) =>
      r.lines.find((l) => l.result)?.result as { rootfs: string; cached: boolean; manifestDigest: string } | undefined,
  );
  runs.forEach((r, i) =>
    t.equal(r.code, 0, `puller ${i} succeeded${r.code ? ': ' + JSON.stringify(r.lines.at(-1)) : ''}`),
  );
  t.equal(new Set(results.map((r) => r?.rootfs)).size, 1, 'all four got the same rootfs');
  t.equal(
    results.filter((r) => r && !r.cached).length,
    1,
    'exactly one of them unpacked, the others waited and reused it',
  );
  const cache = new ImageCache(cacheDir);
  const entries = await cache.list();
  t.equal(entries.length, 1, 'one cache entry');
  t.same(fs.readdirSync(path.join(cacheDir, 'tmp')), [], 'no temp dirs left');
  t.same(fs.readdirSync(path.join(cacheDir, 'locks')), [], 'no lock left');
  // Root keeps setuid/setgid bits in its (private) cache, not at a DEST unless asked.
  const fresh = await pullImage(`oci:${fx.layout}:big`, {
    dest: path.join(scratch('dest'), 'b'),
    keepSetid: process.getuid?.() === 0,
  });
  t.teardown(() => removeAll(path.dirname(fresh.dir)));
  t.same(
    diffTrees(describeTree(entries[0]!.rootfs), withoutSandboxFiles(describeTree(fresh.rootfs))),
    [],
    'the entry is complete',
  );
});

t.test('a pull killed mid-unpack leaves no entry; pulling again succeeds', async (t) => {
  const cacheDir = scratch('cache');
  t.teardown(() => removeAll(cacheDir));
  let killed = false;
  const r = await startPull(`oci:${fx.layout}:big`, cacheDir, (l, kill) => {
    // The big layer is the last one (index 3): kill once it is being unpacked.
    if (!killed && l.progress === 'unpack' && l.index === 3) {
      killed = true;
      kill();
    }
  });
  t.equal(r.signal, 'SIGKILL', 'the puller was killed');
  t.notOk(
    r.lines.some((l) => l.result),
    'it had not finished',
  );
  t.same(await new ImageCache(cacheDir).list(), [], 'no cache entry from the killed pull');
  const leftovers = fs.readdirSync(path.join(cacheDir, 'tmp'));
  t.equal(leftovers.length, 1, `the half unpack is in tmp/ (${leftovers.join(', ')})`);
  const started = Date.now();
  const img = await pullImage(`oci:${fx.layout}:big`, { cacheDir });
  t.equal(img.cached, false);
  t.ok(Date.now() - started < 30_000, "the dead puller's lock was taken over");
  t.ok(fs.existsSync(path.join(img.rootfs, 'big/blob23')));
  t.equal(fs.statSync(path.join(img.rootfs, 'big/blob23')).size, 1 << 20);
  t.same(fs.readdirSync(path.join(cacheDir, 'tmp')), [], 'leftover removed by the next puller');
  t.equal((await new ImageCache(cacheDir).list()).length, 1);
});
