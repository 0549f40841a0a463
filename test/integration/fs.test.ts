// test-runner: serial — squashfuse mounts on the host under a scratch dir, which other files' host mount-table checks would see
// The container's file system, checked from inside.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from '../../lib/index.js';
import { haveCommand, scratch, spec } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

function hostDir(t: { teardown(fn: () => void): void }): string {
  const d = scratch(t);
  chmodSync(d, 0o755);
  return d;
}

t.test('a file of the caller is invisible unless bound', async (t) => {
  const d = hostDir(t);
  writeFileSync(join(d, 'secret'), 'pilot token\n');
  const unbound = await capture(spec(['/bin/sh', '-c', `cat ${d}/secret; ls /tmp; echo rc=$?`], { cwd: '/' }));
  t.match(unbound.err, /No such file or directory/);
  t.notMatch(unbound.out, /pilot token/);
  const bound = await capture(
    spec(['/bin/cat', '/job/secret'], { mounts: [{ destination: '/job', source: d, options: ['rbind'] }] }),
  );
  t.equal(bound.out, 'pilot token\n');
});

t.test('read-only binds refuse writes and cannot be made writable from inside', async (t) => {
  const d = hostDir(t);
  const mounts = [
    { destination: '/ro', source: d, options: ['rbind', 'ro'] },
    { destination: '/rw', source: d, options: ['rbind', 'rw'] },
  ];
  const r = await capture(
    spec(['/bin/sh', '-c', '/payload write /ro/x; /payload remount-rw /ro; /payload write /rw/y'], { mounts }),
  );
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, 'write /ro/x: EROFS');
  t.match(r.out, /remount \/ro: direct=EPERM nested=EPERM/, 'locked read-only, even from a nested user namespace');
  t.match(r.out, 'write /rw/y: OK');
  t.ok(existsSync(join(d, 'y')), 'the rw bind writes through to the host');
  t.notOk(existsSync(join(d, 'x')));
});

t.test('a file system mounted under a bound host directory after the start shows inside (rslave)', async (t) => {
  t.ok(
    haveCommand('squashfuse') && haveCommand('mksquashfs') && haveCommand('fusermount3'),
    'squashfuse, squashfs-tools and fuse3 are installed',
  );
  const d = hostDir(t);
  const src = join(d, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'marker'), 'late repository\n');
  const img = join(d, 'repo.sqfs');
  execFileSync('mksquashfs', [src, img, '-quiet', '-noappend', '-all-root']);
  const cvmfs = join(d, 'cvmfs');
  mkdirSync(join(cvmfs, 'repo.example.org'), { recursive: true });
  const s = spec(
    [
      '/bin/sh',
      '-c',
      'for i in $(seq 100); do [ -e /cvmfs/repo.example.org/marker ] && exec cat /cvmfs/repo.example.org/marker; sleep 0.1; done; echo timeout',
    ],
    { mounts: [{ destination: '/cvmfs', source: cvmfs, options: ['rbind', 'rslave'] }] },
  );
  const run = spawn(s, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  run.stdout!.on('data', (x) => (out += x));
  await run.spawned;
  const mnt = join(cvmfs, 'repo.example.org');
  const m = spawnSync('squashfuse', [img, mnt], { encoding: 'utf8' });
  t.equal(m.status, 0, `squashfuse mounted the repository after the start: ${m.stderr}`);
  try {
    await run.exited;
    t.equal(out, 'late repository\n');
  } finally {
    spawnSync('fusermount3', ['-u', mnt]);
  }
});

t.test('a minimal /dev of its own', async (t) => {
  const r = await capture(
    spec([
      '/bin/sh',
      '-c',
      'ls -A /dev | tr "\\n" " "; echo; echo data > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; ls /dev/pts; readlink /dev/ptmx; readlink /dev/fd; readlink /dev/stdin',
    ]),
  );
  t.equal(r.exitCode, 0, r.err);
  const [list, nullok, zero, pts, ...links] = r.out.trim().split('\n');
  t.same(
    list.trim().split(' ').sort(),
    [
      'fd',
      'full',
      'null',
      'ptmx',
      'pts',
      'random',
      'shm',
      'stderr',
      'stdin',
      'stdout',
      'tty',
      'urandom',
      'zero',
    ].sort(),
  );
  t.equal(nullok, 'null-ok');
  t.equal(zero.trim(), '00 00 00 00');
  t.match(pts, /ptmx/);
  t.same(links, ['pts/ptmx', '/proc/self/fd', '/proc/self/fd/0']);
});

t.test('a fresh /proc, masked and read-only paths', async (t) => {
  const r = await capture(
    spec([
      '/bin/sh',
      '-c',
      'stat -c "%t,%T %s" /proc/keys; grep -c " /proc/acpi .* - tmpfs .* ro" /proc/self/mountinfo; echo x > /proc/sys/kernel/domainname; echo rc=$?; ls /sys/kernel >/dev/null && echo sys-ok',
    ]),
  );
  t.match(r.out, /^1,3 0\n/, 'the file /proc/keys is masked by /dev/null');
  t.match(r.out, /\n1\n/, 'the directory /proc/acpi is masked by an empty read-only tmpfs');
  t.match(r.out, 'rc=1', '/proc/sys is read-only');
  t.match(r.err, /Read-only file system/);
  t.match(r.out, 'sys-ok');
});

t.test('hostname in a uts namespace', async (t) => {
  const r = await capture(spec(['/bin/hostname'], { hostname: 'job-42' }));
  t.equal(r.out, 'job-42\n');
});

t.test('read-only root, tmpfs mounts still writable', async (t) => {
  const r = await capture(
    spec(
      [
        '/bin/sh',
        '-c',
        '/payload write /newfile; /payload write /scratch/f; /payload write /tmp/f; mount | grep " / "',
      ],
      {
        readonly: true,
        mounts: [{ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=1777'] }],
      },
    ),
  );
  t.match(r.out, 'write /newfile: EROFS');
  t.match(r.out, 'write /scratch/f: OK');
  t.match(r.out, 'write /tmp/f: EROFS');
  t.match(r.out, /\bro\b/);
});

t.test('binds are nosuid,nodev and keep the locked flags of their source', async (t) => {
  const d = hostDir(t);
  const r = await capture(
    spec(['/bin/sh', '-c', 'grep " /data " /proc/self/mountinfo'], {
      mounts: [{ destination: '/data', source: d, options: ['rbind'] }],
    }),
  );
  t.match(r.out, /nosuid/);
  t.match(r.out, /nodev/);
  t.match(r.out, / master:\d+/, 'a slave of the host mount (rslave root propagation)');
});
