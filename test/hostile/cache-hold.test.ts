// `cache clean` under a running job (issue 12 item 4): it deleted the job's
// root, and the job's next `ls /bin` failed with "not found", exit 127. A
// running container holds its cache entry; clean skips it and says so,
// --force takes it out of the cache without breaking the job, and a holder
// killed with SIGKILL does not block clean. Through the built CLI as a pilot
// runs it, and through the library's exec(); in both passes (root and the
// unprivileged test user), each with a cache of its own.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exec } from '../../lib/index.js';
import { ImageCache } from '../../lib/image/index.js';
import { scratch, testRootfs } from '../helpers/env.js';
import { bare, binPath, cli, makeLayout, requireBuiltCli } from './fixtures.js';

t.before(() => requireBuiltCli());

/** An OCI layout (tag `latest`) whose one layer is the busybox test rootfs: a job can run `ls /bin`. */
async function busyboxLayout(dir: string): Promise<{ layout: string; digest: string; source: string }> {
  mkdirSync(dir, { recursive: true });
  const tarFile = join(dir, 'layer.tar');
  const tar = spawnSync('tar', ['--numeric-owner', '-C', testRootfs(), '-cf', tarFile, '.'], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
  const { layout, manifestDigest } = await makeLayout(dir, { Env: ['PATH=/bin:/usr/bin'] }, readFileSync(tarFile));
  return { layout, digest: manifestDigest, source: `oci:${layout}:latest` };
}

interface Job {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start the built CLI in the background (no NODE_OPTIONS), collecting its output. */
function startCli(args: string[], env: NodeJS.ProcessEnv): Job {
  const child = spawn(...bare([binPath, ...args]), {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('close', (code, signal) => res({ code, signal })),
  );
  return { child, out: () => out, err: () => err, exited };
}

async function until(t: { fail(m: string): void }, what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) {
      t.fail(`timed out waiting for ${what}`);
      throw new Error(`timed out waiting for ${what}`);
    }
    await sleep(50);
  }
}

const entryOf = (cache: string, digest: string) => join(cache, 'roots', 'sha256', digest.slice(7));
const holdRecords = (cache: string, digest: string): string[] => {
  const d = join(cache, 'holds', `sha256-${digest.slice(7)}`);
  return existsSync(d) ? readdirSync(d) : [];
};
const parked = (cache: string): string[] =>
  existsSync(join(cache, 'tmp')) ? readdirSync(join(cache, 'tmp')).filter((n) => n.startsWith('parked-')) : [];
const noTrace = (t: { notMatch(s: string, re: RegExp, m: string): void }, s: string) =>
  t.notMatch(s, /^\s+at /m, 'no stack trace');

/**
 * A job from the cached image that says "started", waits for `go` in a
 * bound directory, then lists /bin (what broke when its root was deleted).
 */
function startJob(cache: string, source: string, sync: string): Job {
  return startCli(
    [
      'exec',
      '-B',
      `${sync}:/sync`,
      source,
      '/bin/sh',
      '-c',
      'echo started; while [ ! -e /sync/go ]; do sleep 0.05; done; ls /bin; echo job-done',
    ],
    { NODULARITY_CACHE: cache },
  );
}

t.test(
  'cache clean skips the root of a running job, which still runs `ls /bin`; once the job ended, clean removes it',
  async (t) => {
    const d = scratch(t);
    const cache = join(d, 'cache');
    const img = await busyboxLayout(d);
    const pulled = cli(['pull', '-q', img.source], { NODULARITY_CACHE: cache });
    t.equal(pulled.code, 0, pulled.err);
    const sync = join(d, 'sync');
    mkdirSync(sync);
    const job = startJob(cache, img.source, sync);
    await until(t, 'the job to start', () => job.out().includes('started'));
    t.equal(holdRecords(cache, img.digest).length, 1, 'the running job holds its entry (one record)');

    const clean = cli(['cache', 'clean'], { NODULARITY_CACHE: cache });
    t.equal(clean.code, 0, clean.err);
    t.equal(
      clean.err,
      `skipped ${img.digest}: in use by 1 running container (pid ${job.child.pid}); --force takes it away anyway\n`,
      'one line per skipped entry, naming the holder',
    );
    t.match(
      clean.out,
      /^removed 0 image\(s\), freed .*, including 0 blob\(s\); skipped 1 in use\n$/,
      'the summary says it skipped one',
    );
    t.ok(existsSync(join(entryOf(cache, img.digest), 'rootfs', 'bin', 'busybox')), 'the entry is still there');

    writeFileSync(join(sync, 'go'), '');
    const r = await job.exited;
    t.same(r, { code: 0, signal: null }, `the job ran to its end: ${job.err()}`);
    t.match(job.out(), /^busybox$/m, "ls /bin after the clean listed the image's /bin");
    t.match(job.out(), /job-done\n$/);
    await until(t, 'a dead holder', () => job.child.exitCode !== null);

    const after = cli(['cache', 'clean'], { NODULARITY_CACHE: cache });
    t.equal(after.code, 0, after.err);
    t.equal(after.err, '', 'nothing skipped once the job ended');
    t.match(after.out, /^removed 1 image\(s\)/);
    t.notOk(existsSync(entryOf(cache, img.digest)), 'removed after the job ended');
    t.same(
      existsSync(join(cache, 'holds')) ? readdirSync(join(cache, 'holds')) : [],
      [],
      'no hold records or dirs left',
    );
  },
);

t.test('a holder killed with SIGKILL does not block clean', async (t) => {
  const d = scratch(t);
  const cache = join(d, 'cache');
  const img = await busyboxLayout(d);
  const job = startCli(['exec', img.source, '/bin/sh', '-c', 'echo started; exec sleep 60'], {
    NODULARITY_CACHE: cache,
  });
  await until(t, 'the job to start', () => job.out().includes('started'));
  t.equal(holdRecords(cache, img.digest).length, 1, 'held while it runs');
  job.child.kill('SIGKILL');
  const r = await job.exited;
  t.equal(r.signal, 'SIGKILL');
  t.equal(holdRecords(cache, img.digest).length, 1, 'the killed holder left its record behind');
  const clean = cli(['cache', 'clean'], { NODULARITY_CACHE: cache });
  t.equal(clean.code, 0, clean.err);
  t.equal(clean.err, '', 'the stale hold is not reported as in use');
  t.match(clean.out, /^removed 1 image\(s\)/);
  t.notOk(existsSync(entryOf(cache, img.digest)), 'removed');
  t.same(holdRecords(cache, img.digest), [], 'the stale record is gone');
});

t.test('--force takes a held root out of the cache; the job keeps working; the root is deleted after', async (t) => {
  const d = scratch(t);
  const cache = join(d, 'cache');
  const img = await busyboxLayout(d);
  const sync = join(d, 'sync');
  mkdirSync(sync);
  const job = startJob(cache, img.source, sync);
  await until(t, 'the job to start', () => job.out().includes('started'));
  const clean = cli(['cache', 'clean', '--force'], { NODULARITY_CACHE: cache });
  t.equal(clean.code, 0, clean.err);
  t.equal(
    clean.err,
    `took away ${img.digest}: in use by 1 running container (pid ${job.child.pid}); deleted once they exit\n`,
  );
  t.match(clean.out, /; 1 in use taken away, deleted when released\n$/);
  t.notOk(existsSync(entryOf(cache, img.digest)), 'no longer in the cache: a new pull unpacks afresh');
  t.equal(parked(cache).length, 1, 'parked under tmp/');
  const second = cli(['cache', 'clean'], { NODULARITY_CACHE: cache });
  t.equal(second.code, 0, second.err);
  t.equal(parked(cache).length, 1, 'a clean while the job runs leaves the parked root');
  writeFileSync(join(sync, 'go'), '');
  const r = await job.exited;
  t.same(r, { code: 0, signal: null }, `the job ran to its end: ${job.err()}`);
  t.match(job.out(), /^busybox$/m, 'ls /bin worked after --force');
  const last = cli(['cache', 'clean'], { NODULARITY_CACHE: cache });
  t.equal(last.code, 0, last.err);
  t.same(parked(cache), [], 'deleted once the job ended');
});

t.test(
  'library exec() of an oci: image holds the entry until the container exits; a failed launch releases it',
  async (t) => {
    const d = scratch(t);
    const cacheDir = join(d, 'cache');
    const img = await busyboxLayout(d);
    const cache = new ImageCache(cacheDir);
    const c = await exec(img.source, ['/bin/sh', '-c', 'read x; ls /bin'], {
      pull: { cacheDir },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
    });
    t.ok(c.image.hold, 'the resolved image carries its hold');
    t.equal(holdRecords(cacheDir, img.digest).length, 1);
    const r1 = await cache.clean();
    t.same(r1.removed, []);
    t.same(r1.skipped, [{ manifestDigest: img.digest, holders: [process.pid] }], 'skipped, held by this process');
    c.stdin!.end('go\n');
    const res = await c.exited;
    t.equal(res.exitCode, 0);
    t.match(out, /^busybox$/m);
    await until(t, 'the hold to be released', () => holdRecords(cacheDir, img.digest).length === 0, 5000);
    // A launch that fails after the image was resolved (a --home that does not exist) holds nothing.
    await t.rejects(exec(img.source, ['/bin/true'], { pull: { cacheDir }, home: join(d, 'no-such-home') }), /--home/);
    await until(t, 'the failed launch to release its hold', () => holdRecords(cacheDir, img.digest).length === 0, 5000);
    const r2 = await cache.clean();
    t.same(r2.removed, [img.digest], 'removed once nothing runs from it');
    t.same(r2.skipped, []);
  },
);

t.test('bad input to cache list/clean: one line, exit 255, nothing touched', async (t) => {
  const d = scratch(t);
  const cache = join(d, 'cache');
  const img = await busyboxLayout(d);
  t.equal(cli(['pull', '-q', img.source], { NODULARITY_CACHE: cache }).code, 0);
  const cases: [string[], RegExp][] = [
    [
      ['cache', 'clean', '--type', 'bogus', '--cache', cache],
      /^nodularity: --type `bogus`: not a cache type \(expected blob, root or all, comma-separated\)\n$/,
    ],
    [['cache', 'clean', '-T', 'blob,\x1b[2J', '--cache', cache], /^nodularity: --type `\\x1b\[2J`: not a cache type/],
    [['cache', 'list', '--type', 'roots', '--cache', cache], /^nodularity: --type `roots`: not a cache type/],
    [
      ['cache', 'clean', '--cache', join(d, 'nonexistent')],
      new RegExp(`^nodularity: cache ${join(d, 'nonexistent')} \\(--cache\\) does not exist; check the path\n$`),
    ],
    [['cache', 'list', '--cache', join(d, 'nonexistent')], /does not exist; check the path\n$/],
    [
      ['cache', 'clean', '--type', 'blob', '--cache', cache, img.digest],
      /^nodularity: cache clean: digests name unpacked roots; --type blob leaves roots out\n$/,
    ],
  ];
  for (const [args, want] of cases) {
    const r = cli(args);
    t.equal(r.code, 255, `${args.join(' ')}: ${r.err}`);
    t.match(r.err, want);
    t.equal(r.err.split('\n').length, 2, 'one line');
    noTrace(t, r.err);
  }
  const env = cli(['cache', 'list'], { NODULARITY_CACHE: join(d, 'nope') });
  t.equal(env.code, 255);
  t.match(env.err, /\(\$NODULARITY_CACHE\) does not exist/);
  t.notOk(existsSync(join(d, 'nonexistent')) || existsSync(join(d, 'nope')), 'nothing created');
  t.ok(existsSync(entryOf(cache, img.digest)), 'the cache given with a bad --type is untouched');
});
