// --overlay DIR[:ro] (issue 13, item 5), through the CLI installed as
// `apptainer`: a persistent overlay directory in Apptainer's layout
// (DIR/upper, DIR/work). What a run writes is in DIR/upper and seen by the
// next run, the image never changes, `:ro` shows the layer read-only, bad
// directories are one FATAL line naming --overlay, and a DIR/upper that an
// earlier payload filled with symlinks never makes the runtime create
// anything on the host (the mount points are made from an fd of the upper
// layer, never by path).
import t from 'tap';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { hostMounts, isRoot, scratch } from '../helpers/env.js';
import { installAs, run } from './apptainer-cli.js';
import { makeSandbox } from './fixtures.js';

let image: string;
let cli: string;
let work: string;
t.before(() => {
  image = makeSandbox(t);
  // No /var and no /opt in the image: those mount points are made in the upper layer.
  rmSync(join(image, 'var'), { recursive: true, force: true });
  rmSync(join(image, 'opt'), { recursive: true, force: true });
  cli = installAs(t, 'apptainer');
  work = scratch(t, 'nodularity-overlay-');
  chmodSync(work, 0o755);
  mkdirSync(join(work, 'data'));
  writeFileSync(join(work, 'data', 'f'), 'DATA\n');
});

/** overlayfs leaves DIR/work/work mode 000: let the scratch dir's removal in (called as each test ends). */
function unlockWork(): void {
  for (const d of readdirSync(work))
    if (existsSync(join(work, d, 'work', 'work'))) chmodSync(join(work, d, 'work', 'work'), 0o700);
}

/** Every path under dir with its mode and size, to see that a tree did not change. */
function listing(dir: string, rel = ''): string[] {
  return readdirSync(join(dir, rel))
    .sort()
    .flatMap((n) => {
      const p = join(rel, n);
      const st = lstatSync(join(dir, p));
      return [`${p} ${st.mode.toString(8)} ${st.size}`, ...(st.isDirectory() ? listing(dir, p) : [])];
    });
}

const sh = (args: string[], script: string) => run(cli, ['exec', ...args, image, '/bin/sh', '-c', script]);
const ourMounts = () =>
  hostMounts()
    .split('\n')
    .filter((l) => l.includes(work) || l.includes(image));
const fatal = (r: { code: number | null; err: string }) => ({
  code: r.code,
  lines: r.err.trim().split('\n').length,
  first: r.err.split('\n')[0],
});

t.test('what one run writes is in DIR/upper and in the next run; the image is unchanged', async (t) => {
  const before = listing(image);
  const ov = join(work, 'ov');
  mkdirSync(ov);
  const w = sh(
    ['--overlay', ov],
    'echo persisted > /newfile && mkdir -p /usr/local/x && echo deep > /usr/local/x/f && rm /bin/true && echo written',
  );
  t.equal(w.err, '');
  t.equal(w.out, 'written\n');
  t.equal(w.code, 0);
  t.ok(
    lstatSync(join(ov, 'upper')).isDirectory() && lstatSync(join(ov, 'work')).isDirectory(),
    'DIR/upper and DIR/work made',
  );
  t.equal(readFileSync(join(ov, 'upper', 'newfile'), 'utf8'), 'persisted\n', 'the file is in DIR/upper on the host');
  t.equal(lstatSync(join(ov, 'upper', 'newfile')).uid, process.geteuid!(), 'owned by the caller');
  const r = sh(
    ['--overlay', ov],
    'cat /newfile /usr/local/x/f; test -e /bin/true && echo true-back || echo true-gone; echo again >> /newfile',
  );
  t.equal(r.out, 'persisted\ndeep\ntrue-gone\n', 'the next run sees the file, the directory and the deletion');
  t.equal(r.code, 0);
  t.equal(readFileSync(join(ov, 'upper', 'newfile'), 'utf8'), 'persisted\nagain\n');
  t.same(listing(image), before, 'the image directory is unchanged');
  t.equal(
    sh([], 'test -e /newfile && echo seen || echo absent').out,
    'absent\n',
    'without --overlay the image is as it was',
  );
  t.same(ourMounts(), [], 'nothing of the runs is mounted on the host');
  unlockWork();
});

t.test(':ro shows DIR/upper above the image, read-only, and writes nothing', async (t) => {
  const ov = join(work, 'ov-ro');
  mkdirSync(ov);
  t.equal(sh(['--overlay', ov], 'echo earlier > /etc/earlier').code, 0);
  const before = listing(join(ov, 'upper'));
  const r = sh(
    ['--overlay', `${ov}:ro`],
    'cat /etc/earlier; echo x > /etc/later 2>/dev/null && echo wrote || echo read-only; touch /bin/y 2>/dev/null || echo root-ro',
  );
  t.equal(r.out, 'earlier\nread-only\nroot-ro\n');
  t.equal(r.code, 0);
  t.same(listing(join(ov, 'upper')), before, 'DIR/upper unchanged by the :ro run');
  // APPTAINER_OVERLAY is the same flag.
  t.equal(
    run(cli, ['exec', image, '/bin/cat', '/etc/earlier'], { APPTAINER_OVERLAY: `${ov}:ro` }).out,
    'earlier\n',
    'APPTAINER_OVERLAY',
  );
  const missingUpper = join(work, 'ov-ro-empty');
  mkdirSync(missingUpper);
  const e = fatal(sh(['--overlay', `${missingUpper}:ro`], 'true'));
  t.same(e, {
    code: 255,
    lines: 1,
    first: `FATAL:   --overlay: ${missingUpper}/upper: a read-only overlay needs its upper directory`,
  });
  t.same(readdirSync(missingUpper), [], 'nothing made in a :ro DIR');
  t.same(ourMounts(), []);
  unlockWork();
});

t.test('a missing DIR, a file, a symlink, an upper that is a symlink: one FATAL line naming --overlay', async (t) => {
  const file = join(work, 'ov.img');
  writeFileSync(file, 'not an overlay image\n');
  const target = join(work, 'ov-target');
  mkdirSync(target);
  const link = join(work, 'ov-link');
  symlinkSync(target, link);
  const badUpper = join(work, 'ov-bad-upper');
  mkdirSync(badUpper);
  symlinkSync(target, join(badUpper, 'upper'));
  const cases: [string, string][] = [
    [
      join(work, 'nothere'),
      `FATAL:   --overlay: ${join(work, 'nothere')}: the overlay directory is not usable (ENOENT)`,
    ],
    [
      file,
      `FATAL:   --overlay: ${file}: the overlay directory is not a directory (overlay images are not supported yet)`,
    ],
    [
      link,
      `FATAL:   --overlay: ${link}: the overlay directory is a symlink (refused: it must be a directory of the caller)`,
    ],
    [
      badUpper,
      `FATAL:   --overlay: ${badUpper}/upper: the overlay's upper directory is a symlink (refused: it must be a directory of the caller)`,
    ],
  ];
  for (const [dir, line] of cases)
    t.same(fatal(sh(['--overlay', dir], 'true')), { code: 255, lines: 1, first: line }, dir);
  t.same(readdirSync(target), [], 'nothing made through the symlinks');
  if (isRoot) {
    // Root too refuses a directory of another user: its upper is that user's to fill.
    const other = join(work, 'ov-other');
    mkdirSync(other);
    chownSync(other, 65534, 65534);
    t.same(fatal(sh(['--overlay', other], 'true')), {
      code: 255,
      lines: 1,
      first: `FATAL:   --overlay: ${other}: the overlay directory is owned by uid 65534, not by the caller (0) or root`,
    });
    t.same(readdirSync(other), [], 'nothing made in it');
  } else {
    // A root-owned directory is accepted, but we cannot make upper in it.
    t.same(fatal(sh(['--overlay', '/usr/share'], 'true')), {
      code: 255,
      lines: 1,
      first: "FATAL:   --overlay: /usr/share/upper: cannot create the overlay's upper directory (EACCES)",
    });
  }
  t.same(ourMounts(), []);
});

t.test(
  'hostile: symlinks an earlier payload left in DIR/upper never make the runtime create on the host',
  async (t) => {
    const canary = join(work, 'canary');
    mkdirSync(canary);
    chmodSync(canary, 0o777);
    // A payload plants /opt -> the canary (a host path, as the runtime would see it).
    const ov = join(work, 'ov-hostile');
    mkdirSync(ov);
    const plant = sh(['--overlay', ov], `ln -s ${canary} /opt && echo planted`);
    t.equal(plant.out, 'planted\n');
    t.ok(lstatSync(join(ov, 'upper', 'opt')).isSymbolicLink(), 'upper/opt is a symlink now');
    // The next run needs the mount points /opt/ and /opt/data/ (the image has no /opt).
    const r = sh(['--overlay', ov, '-B', `${join(work, 'data')}:/opt/data`], 'cat /opt/data/f');
    t.equal(r.code, 255, 'refused');
    t.equal(r.err.trim().split('\n').length, 1, 'one line');
    t.match(
      r.err,
      new RegExp(`^FATAL: {3}make the mount point /opt/ in the overlay's upper layer at ${ov}/upper/opt .*ELOOP`),
      'names the path',
    );
    t.same(readdirSync(canary), [], 'nothing created in the canary');

    // Planted by the test directly: a parent of a mount point (/var of /var/tmp,
    // the image has no /var) and an entry itself (/tmp), both to the canary.
    const ov2 = join(work, 'ov-hostile2');
    mkdirSync(join(ov2, 'upper'), { recursive: true });
    symlinkSync(canary, join(ov2, 'upper', 'var'));
    const r2 = sh(['--overlay', ov2], 'echo ran');
    t.equal(r2.code, 255);
    t.match(r2.err, /^FATAL: {3}make the mount point \/var\/ in the overlay's upper layer at .*ELOOP/);
    rmSync(join(ov2, 'upper', 'var'));
    mkdirSync(join(ov2, 'upper', 'var'));
    symlinkSync(canary, join(ov2, 'upper', 'var', 'tmp'));
    const r3 = sh(['--overlay', ov2], 'echo ran');
    t.equal(r3.code, 255);
    t.match(r3.err, /^FATAL: {3}make the mount point \/var\/tmp\/ in the overlay's upper layer at .*ELOOP/);
    t.same(readdirSync(canary), [], 'still nothing in the canary');
    t.equal(lstatSync(canary).mode & 0o7777, 0o777, 'its mode untouched (no chmod through the symlink)');
    t.notOk(existsSync(join(canary, 'tmp')));
    t.same(ourMounts(), [], 'nothing mounted on the host');
    unlockWork();
  },
);
