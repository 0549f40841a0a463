// A cache someone else can write into: planted entries (root then runs them)
// and planted symlinks (root's `cache clean` then deletes outside the cache).
// Through the built CLI, checking the host afterwards: canary dirs intact,
// the planted tree never run. As root the cache is also shared with, or
// owned by, the unprivileged test user; as that user the same rules are
// checked through modes and links it can make itself.
import t from 'tap';
import {
  chmodSync,
  cpSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { isRoot, scratch, testRootfs, type Tap } from '../helpers/env.js';
import { cli, makeLayout, requireBuiltCli, testUser } from './fixtures.js';

type T = Tap;

t.before(() => requireBuiltCli());

/** A directory of files that must survive: returns a snapshot function. */
function canaryDir(t: T, name = 'canary'): { dir: string; snapshot: () => string } {
  const dir = join(scratch(t, 'nodularity-canary-'), name);
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'precious'), 'do not delete\n');
  writeFileSync(join(dir, 'sub', 'deep'), 'nor this\n');
  const snapshot = () =>
    readdirSync(dir, { recursive: true }).map(String).sort().join(',') +
    '|' +
    readFileSync(join(dir, 'precious'), 'utf8');
  return { dir, snapshot };
}

/** Plant a complete-looking entry for `digest` in `cache` whose payload would touch `marker`. */
function plantEntry(cache: string, digest: string): string {
  const entry = join(cache, 'roots', 'sha256', digest.slice(7));
  mkdirSync(entry, { recursive: true });
  cpSync(testRootfs(), join(entry, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(entry, 'rootfs', 'PLANTED'), 'the planted tree\n');
  writeFileSync(
    join(entry, 'image.json'),
    JSON.stringify({
      manifestDigest: digest,
      source: 'planted',
      unpacked: new Date().toISOString(),
      manifest: { layers: [] },
      config: { architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'] } },
      stats: { files: 0, directories: 0, symlinks: 0, hardlinks: 0, bytes: 0 },
      unpackedBy: 0,
    }),
  );
  return entry;
}

function chownTree(p: string, uid: number, gid: number): void {
  lchownSync(p, uid, gid);
  for (const n of readdirSync(p, { recursive: true })) lchownSync(join(p, String(n)), uid, gid);
}

/** exec and pull of the layout through the CLI; neither may use the planted entry. */
function assertRefused(t: T, cache: string, layout: string, at: RegExp): void {
  const host = scratch(t, 'nodularity-hostdir-');
  chmodSync(host, 0o777);
  const ran = join(host, 'ran');
  const ex = cli(
    ['exec', '-B', host, `oci:${layout}:latest`, '/bin/sh', '-c', `test -e /PLANTED && touch ${ran}; cat /hello.txt`],
    { NODULARITY_CACHE: cache },
  );
  t.equal(ex.code, 255, `exec refused: ${ex.err}`);
  t.match(ex.err, at, 'the message names the path at fault');
  t.match(ex.err, /refusing to use it/);
  t.equal(ex.err.split('\n').length, 2, 'one line');
  t.notOk(existsSync(ran), 'the planted tree was not run');
  const pull = cli(['pull', '-q', '--cache', cache, `oci:${layout}:latest`]);
  t.equal(pull.code, 255, `pull refused: ${pull.err}`);
  t.match(pull.err, at);
  t.notMatch(pull.out, /roots/, 'pull did not hand out the planted entry');
}

t.test('a planted entry in a world-writable (1777) cache is not run', async (t) => {
  const d = scratch(t);
  const { layout, manifestDigest } = await makeLayout(d);
  const cache = join(d, 'shared-cache');
  mkdirSync(cache);
  chmodSync(cache, 0o1777);
  const entry = plantEntry(cache, manifestDigest);
  // As root: the attacker is the test user, who owns what was planted.
  if (isRoot) {
    const u = testUser();
    chownTree(join(cache, 'roots'), u.uid, u.gid);
  }
  assertRefused(t, cache, layout, new RegExp(`cache ${cache}: is writable by group and others \\(mode 1777\\)`));
  t.ok(existsSync(join(entry, 'rootfs', 'PLANTED')), 'nothing was repaired or deleted');
});

t.test(
  'a planted entry in a private cache: an entry the caller does not own, or others can write, is not run',
  async (t) => {
    const d = scratch(t);
    const { layout, manifestDigest } = await makeLayout(d);
    const cache = join(d, 'cache');
    mkdirSync(cache, { mode: 0o700 });
    const entry = plantEntry(cache, manifestDigest);
    if (isRoot) {
      // roots/ and roots/sha256/ are root's; the entry in them is someone else's.
      const u = testUser();
      chownTree(entry, u.uid, u.gid);
      assertRefused(
        t,
        cache,
        layout,
        new RegExp(`cache ${entry}: is owned by uid ${u.uid}, not by you \\(uid 0\\) or root`),
      );
    } else {
      chmodSync(entry, 0o777);
      assertRefused(t, cache, layout, new RegExp(`cache ${entry}: is writable by group and others \\(mode 0777\\)`));
    }
  },
);

t.test('a symlinked roots/sha256 is not followed: not run, not listed', async (t) => {
  const d = scratch(t);
  const { layout, manifestDigest } = await makeLayout(d);
  const cache = join(d, 'cache');
  const elsewhere = join(d, 'elsewhere');
  plantEntry(elsewhere, manifestDigest);
  mkdirSync(join(cache, 'roots'), { recursive: true, mode: 0o700 });
  symlinkSync(join(elsewhere, 'roots', 'sha256'), join(cache, 'roots', 'sha256'));
  assertRefused(t, cache, layout, new RegExp(`cache ${join(cache, 'roots', 'sha256')}: is a symbolic link`));
  const list = cli(['cache', 'list', '--cache', cache]);
  t.equal(list.code, 255, list.err);
});

t.test('cache clean never follows a planted tmp or roots/sha256 symlink out of the cache', async (t) => {
  for (const link of [['tmp'], ['roots', 'sha256'], ['blobs']]) {
    const d = scratch(t);
    const canary = canaryDir(t);
    const before = canary.snapshot();
    const cache = join(d, 'cache');
    mkdirSync(join(cache, ...link.slice(0, -1)), { recursive: true, mode: 0o700 });
    symlinkSync(canary.dir, join(cache, ...link));
    const r = cli(['cache', 'clean', '--cache', cache]);
    t.equal(r.code, 255, `${link.join('/')} -> canary: ${r.err}`);
    t.match(
      r.err,
      new RegExp(
        `^nodularity: cache ${join(cache, ...link)}: is a symbolic link; refusing .*cache clean --cache ${cache}\`\\)\n$`,
      ),
    );
    t.equal(canary.snapshot(), before, `${link.join('/')} -> canary: the canary dir is intact`);
  }
});

t.test('links inside a trusted cache are removed, not followed; a good cache cleans', async (t) => {
  const d = scratch(t);
  const { manifestDigest } = await makeLayout(d);
  const canary = canaryDir(t);
  const before = canary.snapshot();
  const cache = join(d, 'cache');
  const entry = plantEntry(cache, manifestDigest); // our own entry this time
  symlinkSync(canary.dir, join(entry, 'rootfs', 'link-out'));
  mkdirSync(join(cache, 'tmp'), { mode: 0o700 });
  symlinkSync(canary.dir, join(cache, 'tmp', 'unpack-0123456789abcdef-999999999-x'));
  const r = cli(['cache', 'clean', '--cache', cache]);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /removed 1 image/);
  t.notOk(existsSync(entry));
  t.same(readdirSync(join(cache, 'tmp')), [], 'the stale tmp link is gone');
  t.equal(canary.snapshot(), before, 'what the links pointed at is intact');
});

t.test(
  'a cache owned by someone else (root pass), or that the group can write (user pass), is not cleaned',
  async (t) => {
    const d = scratch(t);
    const cache = join(d, 'users-cache');
    mkdirSync(join(cache, 'tmp', 'stale-1-x'), { recursive: true });
    writeFileSync(join(cache, 'tmp', 'stale-1-x', 'file'), "the user's\n");
    let at: RegExp;
    if (isRoot) {
      const u = testUser();
      chownTree(cache, u.uid, u.gid);
      at = new RegExp(
        `cache ${cache}: is owned by uid ${u.uid}, not by you \\(uid 0\\) or root.*runuser -u USER -- nodularity cache clean`,
      );
    } else {
      chmodSync(cache, 0o770);
      at = new RegExp(`cache ${cache}: is writable by group \\(mode 0770\\)`);
    }
    const r = cli(['cache', 'clean', '--cache', cache]);
    t.equal(r.code, 255, r.err);
    t.match(r.err, at);
    t.ok(existsSync(join(cache, 'tmp', 'stale-1-x', 'file')), 'nothing removed');
  },
);

/**
 * Make `p` (a tree) belong to another user for the length of `fn`: the test
 * user as root; as that user, a uid of its own subordinate range (unshare
 * --map-auto, /etc/subuid), which it can give back afterwards.
 */
async function ownedByOther(p: string, fn: (uid: number) => Promise<void>): Promise<void> {
  if (isRoot) {
    const u = testUser();
    chownTree(p, u.uid, u.gid);
    try {
      await fn(u.uid);
    } finally {
      chownTree(p, 0, 0);
    }
    return;
  }
  const inNs = (cmd: string) =>
    execFileSync('unshare', ['--map-auto', '--map-root-user', 'sh', '-c', cmd], { encoding: 'utf8' });
  inNs(`chown -R 5:5 '${p}'`);
  try {
    const uid = Number(execFileSync('stat', ['-c', '%u', p], { encoding: 'utf8' }).trim());
    await fn(uid);
  } finally {
    inNs(`chown -R 0:0 '${p}'`);
  }
}

t.test('a cache owned by another user is neither run from nor cleaned', async (t) => {
  const d = scratch(t);
  const { layout, manifestDigest } = await makeLayout(d);
  const cache = join(d, 'others-cache');
  plantEntry(cache, manifestDigest);
  mkdirSync(join(cache, 'tmp', 'stale-1-x'), { recursive: true });
  writeFileSync(join(cache, 'tmp', 'stale-1-x', 'file'), 'theirs\n');
  chmodSync(d, 0o755);
  await ownedByOther(cache, async (uid) => {
    t.not(uid, process.geteuid!(), `the cache belongs to uid ${uid}`);
    assertRefused(
      t,
      cache,
      layout,
      new RegExp(`cache ${cache}: is owned by uid ${uid}, not by you \\(uid ${process.geteuid!()}\\) or root`),
    );
    const r = cli(['cache', 'clean', '--cache', cache]);
    t.equal(r.code, 255, r.err);
    t.match(r.err, new RegExp(`cache ${cache}: is owned by uid ${uid}.*runuser -u USER -- nodularity cache clean`));
    t.ok(existsSync(join(cache, 'tmp', 'stale-1-x', 'file')), 'nothing removed');
    t.ok(existsSync(join(cache, 'roots', 'sha256', manifestDigest.slice(7), 'rootfs', 'PLANTED')), 'nothing removed');
  });
});
