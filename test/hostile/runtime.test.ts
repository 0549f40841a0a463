// test-runner: serial — compares the host mount table and SIGKILLs launchers mid-launch on a timing schedule
// Hostile images and specs against the runtime (issue 11): every path the
// child touches is resolved inside the new root, image devices are inert, the
// kernel's trees are never mounted through a symlink, and nothing reaches the
// host. Each test checks the host afterwards.
import t from 'tap';
import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { createSpec, exec, run, SpecError, ContainerError, type Spec } from '../../lib/index.js';
import { prepareLaunch } from '../../lib/internal.js';
import { loadBinding } from '../../lib/native.js';
import {
  haveCommand,
  hostMounts,
  isRoot,
  payloadBinary,
  repoRoot,
  scratch,
  testRootfs,
  type Tap,
} from '../helpers/env.js';
import { capture } from '../helpers/run.js';

type T = Tap;

/** A private copy of the busybox test rootfs (with /payload) to make hostile. */
function hostileRootfs(t: T): string {
  const dir = join(scratch(t, 'nodularity-hostile-'), 'rootfs');
  execFileSync('cp', ['-a', testRootfs(), dir]);
  return dir;
}

/** As root, a spec may run without a user namespace (bundles do): the dangerous case. */
function withoutUserns(s: Spec): Spec {
  s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'user');
  delete s.linux!.uidMappings;
  delete s.linux!.gidMappings;
  return s;
}

function mountsOf(): string[] {
  return hostMounts()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4])
    .sort();
}

/** The host's mount points must be the same after as before (other tests may mount too: compare ours only). */
function noNewHostMounts(t: T, before: string[], under: string) {
  const added = mountsOf().filter((m) => !before.includes(m) && m.startsWith(under));
  t.same(added, [], `no host mount left under ${under}`);
}

t.test('image device nodes are inert: the root is nodev, recursively (item 1)', async (t) => {
  const rootfs = hostileRootfs(t);
  // From inside: the root mount carries nodev, in both passes.
  const r = await capture(
    createSpec({ rootfs, args: ['/bin/sh', '-c', 'awk \'$5 == "/" {print $6}\' /proc/self/mountinfo'] }),
  );
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, /(^|,)nodev(,|$)/m, 'the root is mounted nodev');
  if (!isRoot) {
    // An unprivileged user cannot make a device node to try; the flag is what protects a root-made image.
    return;
  }
  // A loop device over a scratch file stands for a host disk: never a real one.
  const dir = scratch(t, 'nodularity-loop-');
  const backing = join(dir, 'disk.img');
  writeFileSync(backing, Buffer.concat([Buffer.from('CANARY-DISK-0123'), Buffer.alloc(1 << 20)]));
  const loop = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', loop]));
  const rdev = statSync(loop).rdev;
  const major = Math.floor(rdev / 256) & 0xfff,
    minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  mkdirSync(join(rootfs, 'opt'), { recursive: true });
  execFileSync('mknod', ['-m', '0600', join(rootfs, 'opt/disk'), 'b', String(major), String(minor)]);
  const before = readFileSync(backing);
  for (const user of [{}, { uid: 0, gid: 0 }]) {
    const s = createSpec({ rootfs, args: ['/payload', 'rw', '/opt/disk'], ...user });
    const inside = await capture(s);
    t.equal(inside.exitCode, 0, inside.err);
    t.match(inside.out, /^open (EACCES|EPERM)/, `the image's block device cannot be opened (${JSON.stringify(user)})`);
    // Without a user namespace, as bundles run by root may ask.
    const bare = await capture(withoutUserns(createSpec({ rootfs, args: ['/payload', 'rw', '/opt/disk'], ...user })));
    t.equal(bare.exitCode, 0, bare.err);
    t.match(bare.out, /^open (EACCES|EPERM)/, 'not even as real root without a user namespace');
  }
  // The test can fail: with the explicit opt-in the same node is live.
  const live = await capture(withoutUserns(createSpec({ rootfs, args: ['/payload', 'rw', '/opt/disk'] })), {
    allowImageDevices: true,
  });
  t.match(live.out, /^rw OK CANARY-DISK-0123/, 'allowImageDevices makes it live (so the check above means something)');
  t.same(readFileSync(backing), before, 'the canary disk is unchanged');
});

t.test(
  '/proc, /sys or /dev as symlinks in the image are refused, and nothing is made on the host (items 3, 5)',
  async (t) => {
    for (const [dir, to] of [
      ['proc', '/p'],
      ['sys', '/s'],
      ['dev', '/tmp/y'],
    ] as const) {
      const rootfs = hostileRootfs(t);
      rmSync(join(rootfs, dir), { recursive: true });
      symlinkSync(to, join(rootfs, dir));
      mkdirSync(join(rootfs, to), { recursive: true });
      const hostProbe = `/tmp/y/pts`;
      const hostYBefore = existsSync('/tmp/y');
      const mounts = mountsOf();
      const err = await run(createSpec({ rootfs, args: ['/bin/true'] }), { stdio: 'ignore' }).then(
        () => null,
        (e) => e,
      );
      t.type(err, SpecError, `/${dir} -> ${to}`);
      t.match(
        err?.message,
        new RegExp(
          `^/mounts/\\d+/destination: /${dir} is a symlink in the image \\(/${dir} -> ${to.replace(/\//g, '\\/')}\\): refused \\(ELOOP\\)`,
        ),
      );
      if (!hostYBefore) t.notOk(existsSync('/tmp/y'), 'nothing made at the host path the link names');
      t.notOk(existsSync(hostProbe) && !hostYBefore, 'no pts/ on the host');
      noNewHostMounts(t, mounts, '/');
      t.same(readdirSync(join(rootfs, to.replace(/^\//, ''))), [], `nothing made in the link's target either`);
      // A trailing slash in the destination changes nothing.
      const slashed = createSpec({ rootfs, args: ['/bin/true'] });
      for (const m of slashed.mounts!) if (m.destination === `/${dir}`) m.destination = `/${dir}/`;
      t.throws(
        () => prepareLaunch(slashed),
        { name: 'SpecError', message: /is a symlink in the image .* refused \(ELOOP\)/ },
        `/${dir}/ with a trailing slash`,
      );
    }
  },
);

t.test('masks and read-only paths hold: /proc/sys is read-only, masked files are empty (item 3)', async (t) => {
  const rootfs = hostileRootfs(t);
  const pattern = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
  // The payload writes back the value the host already has: a success would
  // change nothing, but must not happen.
  const r = await capture(
    createSpec({
      rootfs,
      args: [
        '/bin/sh',
        '-c',
        `/payload write /proc/sys/kernel/core_pattern "$(cat /proc/sys/kernel/core_pattern)"; for f in /proc/kcore /proc/timer_list /proc/keys; do test -e $f && wc -c < $f; done`,
      ],
    }),
  );
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, /EROFS|EACCES|EPERM/, 'core_pattern is not writable');
  const present = ['/proc/kcore', '/proc/timer_list', '/proc/keys'].filter((f) => existsSync(f));
  t.ok(present.length >= 2, `masked files to check: ${present.join(' ')}`);
  t.same(
    r.out
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim()),
    present.map(() => '0'),
    'kcore, timer_list and keys are masked (empty)',
  );
  t.equal(readFileSync('/proc/sys/kernel/core_pattern', 'utf8'), pattern, 'the host sysctl is unchanged');
});

t.test('a mask or read-only path that is a symlink in the image is resolved inside the root', async (t) => {
  const rootfs = hostileRootfs(t);
  // maskedPaths naming an image path that links out to the host's /etc: the
  // mask lands on the image's own /etc (inside the root), never the host's.
  mkdirSync(join(rootfs, 'data'));
  writeFileSync(join(rootfs, 'etc/secret'), 'image-secret\n');
  symlinkSync('/etc/secret', join(rootfs, 'data/link'));
  symlinkSync('../../../../../../etc', join(rootfs, 'data/up'));
  const s = createSpec({
    rootfs,
    args: ['/bin/sh', '-c', 'cat /etc/secret | wc -c; touch /etc/hostname 2>&1 | grep -c Read-only'],
  });
  s.linux!.maskedPaths = ['/data/link'];
  s.linux!.readonlyPaths = ['/data/up'];
  s.root!.readonly = false;
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  t.same(
    r.out
      .trim()
      .split('\n')
      .map((l) => l.trim()),
    ['0', '1'],
    'the mask hit the image file the link names; ../ stopped at the root',
  );
  t.equal(readFileSync(join(rootfs, 'etc/secret'), 'utf8'), 'image-secret\n');
});

t.test('a symlinked /etc/passwd or /etc/group never creates a host file (item 4)', async (t) => {
  for (const file of ['passwd', 'group']) {
    const image = hostileRootfs(t);
    const name = `nodularity-hostile-${process.pid}-${file}`;
    const hostPath = join('/tmp', name);
    rmSync(join(image, 'etc', file));
    symlinkSync(`/tmp/${name}`, join(image, 'etc', file));
    const mounts = mountsOf();
    const err = await exec(image, ['/bin/true'], { stdio: 'ignore', hostEnv: { HOME: scratch(t) }, hostCwd: '/' }).then(
      () => null,
      (e) => e,
    );
    t.type(err, SpecError, `/etc/${file} -> /tmp/...`);
    t.match(
      err?.message,
      new RegExp(
        `/etc/${file} resolves through a symlink of the image .* inside the bind of /tmp: refusing to create it on the host \\(EXDEV\\)`,
      ),
    );
    t.notOk(existsSync(hostPath), `no ${hostPath} on the host`);
    noNewHostMounts(t, mounts, '/');
  }
  // As root, into root's own home (authorized_keys): the home bind is a host directory too.
  const image = hostileRootfs(t);
  const home = scratch(t, 'nodularity-home-');
  rmSync(join(image, 'etc/passwd'));
  symlinkSync(`${home}/.ssh/authorized_keys`, join(image, 'etc/passwd'));
  const err = await exec(image, ['/bin/true'], { stdio: 'ignore', hostEnv: { HOME: home }, hostCwd: '/' }).then(
    () => null,
    (e) => e,
  );
  t.match(err?.message, /EXDEV/);
  t.same(readdirSync(home), [], 'nothing created in the home directory');
});

t.test("a device node or FIFO as the image's /etc/passwd is refused before it is opened on the host", async (t) => {
  // The launcher reads the image's /etc/passwd on the host side. Opening a
  // device node for reading runs its driver's open on the host (a tape
  // rewinds, a serial line hangs up, a disk's open count moves), so the
  // file must be resolved O_PATH and checked before any read-open.
  const nodes: [string, string[]][] = [['fifo', ['mkfifo', '-m', '0644']]];
  if (isRoot)
    nodes.push(
      ['ptmx (c 5 2)', ['mknod', '-m', '0666', '%', 'c', '5', '2']],
      ['null (c 1 3)', ['mknod', '-m', '0666', '%', 'c', '1', '3']],
    );
  for (const [what, cmd] of nodes) {
    const image = hostileRootfs(t);
    const passwd = join(image, 'etc/passwd');
    rmSync(passwd);
    const argv = cmd.includes('%') ? cmd.map((a) => (a === '%' ? passwd : a)) : [...cmd, passwd];
    execFileSync(argv[0], argv.slice(1));
    const err = await exec(image, ['/bin/true'], { stdio: 'ignore', hostEnv: { HOME: scratch(t) }, hostCwd: '/' }).then(
      () => null,
      (e) => e,
    );
    // ptmx once came back ENOENT from its open and was taken for "no passwd": the launch ran.
    t.type(err, SpecError, `${what}: the launch is refused`);
    t.match(err?.message, /\/etc\/passwd in the image .* is not a regular file/, `${what}: ${err?.message}`);
  }
  // The mechanism, seen from outside: strace the read of a FIFO passwd; the
  // only opens of it are O_PATH (a read-open of a FIFO would succeed under
  // O_NONBLOCK and be caught only by fstat, after the open).
  t.ok(haveCommand('strace'), 'strace is installed');
  const image = hostileRootfs(t);
  rmSync(join(image, 'etc/passwd'));
  execFileSync('mkfifo', [join(image, 'etc/passwd')]);
  const log = join(scratch(t), 'strace.log');
  const code = `import(${JSON.stringify(join(repoRoot, 'dist/plan/inroot.js'))}).then((m) => { try { m.readFileInRoot(${JSON.stringify(image)}, '/etc/passwd'); } catch (e) { console.log(e.code); } })`;
  const out = execFileSync(
    'strace',
    ['-f', '-qq', '-e', 'trace=openat,openat2,open', '-o', log, process.execPath, '-e', code],
    { encoding: 'utf8' },
  );
  t.equal(out.trim(), 'EINVAL', 'refused as not a regular file');
  const opens = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"/etc/passwd"') || l.includes(`"${image}/etc/passwd"`));
  t.ok(opens.length > 0, 'strace saw the resolution');
  for (const l of opens) t.match(l, /O_PATH/, `only O_PATH opens of the FIFO: ${l}`);
});

t.test("a symlink that stays inside the image still works (Debian's /etc/localtime)", async (t) => {
  const image = hostileRootfs(t);
  mkdirSync(join(image, 'usr/share/zoneinfo/Etc'), { recursive: true });
  writeFileSync(join(image, 'usr/share/zoneinfo/Etc/UTC'), 'image-zone');
  symlinkSync('/usr/share/zoneinfo/Etc/UTC', join(image, 'etc/localtime'));
  const c = await exec(image, ['/bin/sh', '-c', 'cat /etc/localtime | md5sum'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    hostEnv: { HOME: scratch(t) },
    hostCwd: '/',
  });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  const r = await c.exited;
  t.equal(r.exitCode, 0);
  if (existsSync('/etc/localtime'))
    t.equal(
      out.split(' ')[0],
      execFileSync('md5sum', ['/etc/localtime'], { encoding: 'utf8' }).split(' ')[0],
      'the host zone is bound over the link target',
    );
  t.equal(readFileSync(join(image, 'usr/share/zoneinfo/Etc/UTC'), 'utf8'), 'image-zone', 'the image file is unchanged');
});

t.test(
  'the image changed between plan and launch: the child refuses the symlink (ELOOP), nothing on the host',
  async (t) => {
    const rootfs = hostileRootfs(t);
    const out = scratch(t, 'nodularity-outside-');
    mkdirSync(join(rootfs, 'opt/target'), { recursive: true });
    const src = scratch(t, 'nodularity-src-');
    const s = createSpec({
      rootfs,
      args: ['/bin/true'],
      mounts: [{ destination: '/opt/target/new', source: src, options: ['bind'] }],
    });
    const prepared = prepareLaunch(s);
    // Swap /opt/target for a link to a host directory after the plan was made.
    rmSync(join(rootfs, 'opt/target'), { recursive: true });
    symlinkSync(out, join(rootfs, 'opt/target'));
    const failure = await new Promise<{ step: number; errno: number; index: number; detail: number } | null>(
      (resolve) => {
        loadBinding().spawn(
          prepared.plan,
          ['ignore', 'ignore', 'ignore'],
          (err) => resolve(err),
          () => {},
        );
      },
    );
    t.ok(failure, 'the launch failed');
    const e = prepared.describeFailure(failure!);
    t.type(e, ContainerError);
    t.equal(e.code, 'ELOOP');
    t.match(e.message, /^mkdir \/opt\/target\/new: openat2\(2\) ELOOP/);
    t.same(readdirSync(out), [], 'nothing created in the host directory the link pointed at');
  },
);

t.test("the caller's session keyring is not reachable from the container (item 12)", async (t) => {
  const desc = `nodularity-canary-${process.pid}`;
  const script = join(scratch(t), 'launch.mjs');
  writeFileSync(
    script,
    `
    import { run, createSpec } from ${JSON.stringify(join(repoRoot, 'dist/index.js'))};
    // No seccomp filter: the default profile refuses keyctl outright, which
    // would hide whether the session keyring step itself does its job.
    const s = createSpec({ rootfs: ${JSON.stringify(testRootfs())}, args: ['/payload', 'findkey', ${JSON.stringify(desc)}], security: { seccomp: 'unconfined' } });
    const r = await run(s, { stdio: ['ignore', 'pipe', 'inherit'] });
    process.stdout.write(r.stdout);
  `,
  );
  // The host side can see its own key (so the check below can fail)...
  t.equal(
    execFileSync(payloadBinary, ['addkey', desc, payloadBinary, 'findkey', desc], { encoding: 'utf8' }),
    'findkey FOUND\n',
  );
  // ...the container launched by the same process cannot.
  const out = execFileSync(payloadBinary, ['addkey', desc, process.execPath, script], { encoding: 'utf8' });
  t.equal(out, 'findkey ENOKEY\n');
});

t.test('no host /proc in a new PID namespace unless asked for (item 13)', async (t) => {
  // A fresh proc is refused where the only proc the kernel sees is partly
  // covered (nested in a container runtime). Reproduce that: an outer user
  // and mount namespace with a tmpfs over /proc/scsi... the launcher's child
  // namespaces then inherit a locked, partly hidden /proc.
  const script = join(scratch(t), 'nested.mjs');
  writeFileSync(
    script,
    `
    import { run, createSpec } from ${JSON.stringify(join(repoRoot, 'dist/index.js'))};
    for (const allowHostProc of [false, true]) {
      const s = createSpec({ rootfs: ${JSON.stringify(testRootfs())}, args: ['/bin/sh', '-c', 'ls /proc | grep -c "^[0-9]"'] });
      try {
        const r = await run(s, { stdio: ['ignore', 'pipe', 'pipe'], allowHostProc });
        console.log(allowHostProc, 'ran', r.stdout.toString().trim());
      } catch (e) { console.log(allowHostProc, 'error', e.message); }
    }
  `,
  );
  const out = execFileSync(
    'unshare',
    [
      '--user',
      '--map-root-user',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      // Another proc mount that the kernel sees whole (field 4 "/"), anywhere in
      // this namespace, lets it grant a fresh proc: say so first.
      `mount -t tmpfs none /proc/sys/fs && awk '$9 == "proc" && $4 == "/" && $5 != "/proc" {n++} END {print "others", n+0}' /proc/self/mountinfo && exec ${process.execPath} ${script}`,
    ],
    { encoding: 'utf8' },
  );
  const [others, deny, allow] = out.trim().split('\n');
  if (others === 'others 0')
    t.match(
      deny,
      /^false error mount proc on \/proc: mount\(2\) (EPERM|EACCES)/,
      'refused by default, with the step named',
    );
  else
    // The host's mount table is not ours (another runtime on this machine left
    // a proc mounted): if that one is fully visible the kernel grants a fresh
    // proc, and what matters is that it is fresh, not the host's.
    t.match(
      deny,
      /^false (ran [1-5]|error mount proc on \/proc: mount\(2\) (EPERM|EACCES).*)$/,
      `refused, or a fresh /proc, never the host's (${others} other proc mounts)`,
    );
  t.match(allow, /^true ran \d+/, 'the explicit opt-in binds the host /proc');
});

t.test('ids above 4294967294 are refused (item 15)', async (t) => {
  for (const [field, v] of [
    ['uid', 4294967295],
    ['gid', 4294967295],
  ] as const) {
    const s = createSpec({ rootfs: testRootfs(), args: ['/bin/true'] });
    (s.process!.user as unknown as Record<string, number>)[field] = v;
    t.throws(() => prepareLaunch(s), {
      name: 'SpecError',
      message: new RegExp(`^/process/user/${field}: must be an integer between 0 and 4294967294`),
    });
  }
  const s: Spec = createSpec({ rootfs: testRootfs(), args: ['/bin/true'] });
  s.process!.user.additionalGids = [4294967295];
  t.throws(() => prepareLaunch(s), { message: /^\/process\/user\/additionalGids\/0:/ });
});

t.test('recursive and atime mount options are applied, unknown ones refused (item 17)', async (t) => {
  const tree = scratch(t, 'nodularity-tree-');
  mkdirSync(join(tree, 'sub'));
  writeFileSync(join(tree, 'f'), 'x');
  if (isRoot) {
    execFileSync('mount', ['-t', 'tmpfs', 'sub', join(tree, 'sub')]);
    t.teardown(() => execFileSync('umount', ['-l', join(tree, 'sub')]));
  }
  const probe =
    'touch /t/w 2>/dev/null && echo top-rw || echo top-ro; touch /t/sub/w 2>/dev/null && echo sub-rw || echo sub-ro; awk \'$5 == "/t" {print $6}\' /proc/self/mountinfo';
  const rro = await capture(
    createSpec({
      rootfs: testRootfs(),
      args: ['/bin/sh', '-c', probe],
      mounts: [{ destination: '/t', source: tree, options: ['rbind', 'rro'] }],
    }),
  );
  t.equal(rro.exitCode, 0, rro.err);
  t.match(rro.out, /^top-ro\nsub-ro\n/, 'rro: the bind and its submounts are read-only');
  // Atime modes of a host mount are locked inside a user namespace (the
  // kernel's rule), so as root they are checked without one; unprivileged,
  // the same option is a clear EPERM naming the bind.
  for (const opt of ['noatime', 'strictatime', 'relatime', 'nodiratime', 'nosymfollow']) {
    const s = createSpec({
      rootfs: testRootfs(),
      args: ['/bin/sh', '-c', probe],
      mounts: [{ destination: '/t', source: tree, options: ['rbind', opt] }],
    });
    if (isRoot) withoutUserns(s);
    const r = await capture(s).catch((e: Error) => e);
    if (r instanceof Error) {
      t.ok(
        !isRoot && opt !== 'nosymfollow',
        `${opt}: only an atime mode may fail, and only unprivileged: ${r.message}`,
      );
      t.match(r.message, /^bind-mount .* -> \/t: mount_setattr\(2\) EPERM[\s\S]*hint: a locked mount flag/);
      continue;
    }
    t.equal(r.exitCode, 0, `${opt}: ${r.err}`);
    const flags = r.out.trim().split('\n')[2];
    if (opt === 'strictatime')
      t.notMatch(flags, /(^|,)(relatime|noatime)(,|$)/, 'strictatime: neither relatime nor noatime');
    else t.match(flags, new RegExp(`(^|,)${opt}(,|$)`), `${opt} is on the mount`);
  }
  const bad = createSpec({
    rootfs: testRootfs(),
    args: ['/bin/true'],
    mounts: [{ destination: '/t', source: tree, options: ['rbind', 'ro', 'frobnicate'] }],
  });
  const i = bad.mounts!.length - 1;
  t.throws(() => prepareLaunch(bad), {
    name: 'SpecError',
    message: new RegExp(`^/mounts/${i}/options/2: mount option "frobnicate" cannot be applied to a bind mount`),
  });
  const sb = createSpec({
    rootfs: testRootfs(),
    args: ['/bin/true'],
    mounts: [{ destination: '/t', source: tree, options: ['bind', 'sync'] }],
  });
  t.throws(() => prepareLaunch(sb), { message: new RegExp(`^/mounts/${i}/options/1: mount option "sync"`) });
});

t.test('killing the launcher mid-launch leaves no container behind (item 14)', async (t) => {
  const tag = `nodularity-orphan-tag-${process.pid}`;
  const script = join(scratch(t), 'launcher.mjs');
  writeFileSync(
    script,
    `
    import { spawn, createSpec } from ${JSON.stringify(join(repoRoot, 'dist/index.js'))};
    // 150 tmpfs mounts make the setup (clone to exec) last milliseconds, so
    // a kill lands in it: the window where the parent-death signal matters.
    const mounts = Array.from({ length: 150 }, (_, i) => ({ destination: '/tmp/m' + i, type: 'tmpfs', source: 'tmpfs' }));
    const s = createSpec({ rootfs: ${JSON.stringify(testRootfs())}, args: ['/bin/sleep', '1000', ${JSON.stringify(tag)}], mounts });
    // Both clone modes (vfork-style, and fork-style while the parent writes
    // id ranges, as root), with and without the init.
    const ranged = structuredClone(s);
    ranged.linux.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    ranged.linux.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    let n = 0;
    const launch = () => {
      n++;
      const spec = ${isRoot} && n % 3 === 0 ? ranged : s;
      spawn(spec, { stdio: 'ignore', init: n % 2 === 0 }).spawned.then(launch, launch);
    };
    for (let i = 0; i < 4; i++) launch();
  `,
  );
  const tagged = () =>
    readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(tag);
        } catch {
          return false;
        }
      })
      .map(Number);
  t.teardown(() => {
    for (const pid of tagged())
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
  });
  for (let run = 0; run < 20; run++) {
    const child = spawnProcess(process.execPath, [script], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 150 + (run % 5) * 37));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  // The kernel delivers the parent-death signal at once; give the reaping a moment.
  let left = tagged();
  for (let i = 0; i < 50 && left.length; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = tagged();
  }
  t.same(left, [], 'no init or payload survived its launcher');
});

t.test(
  "a FIFO or a huge file as the image's /etc/group is an error, not a hang or a memory blow-up (item 6)",
  async (t) => {
    for (const kind of ['fifo', 'huge'] as const) {
      const image = hostileRootfs(t);
      rmSync(join(image, 'etc/group'));
      if (kind === 'fifo') execFileSync('mkfifo', [join(image, 'etc/group')]);
      else execFileSync('truncate', ['-s', '8G', join(image, 'etc/group')]);
      const rss = process.memoryUsage().rss;
      const err = await exec(image, ['/bin/true'], {
        stdio: 'ignore',
        hostEnv: { HOME: scratch(t) },
        hostCwd: '/',
      }).then(
        () => null,
        (e) => e,
      );
      t.type(err, SpecError, kind);
      t.match(
        err?.message,
        kind === 'fifo'
          ? /^image: \/etc\/group in the image .* is not a regular file$/
          : /^image: \/etc\/group in the image .* is larger than 4194304 bytes$/,
      );
      t.ok(process.memoryUsage().rss - rss < 64 << 20, 'memory stayed bounded');
    }
  },
);
