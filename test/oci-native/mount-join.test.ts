// linux.namespaces: a mount namespace given by path is refused, whatever it
// is, before anything is made. The container's root is built in the mount
// namespace it ends up in, and pivot_root there moves the root of every
// process of that namespace to the image: a host daemon with a mount
// namespace of its own (systemd's PrivateTmp=, ProtectSystem=) would run an
// image binary at its next exec, as host root. The attack, here against a
// stand-in daemon (`unshare -m --propagation private sleep`): by
// /proc/PID/ns/mnt, through a symlink, through a bind-mounted nsfs file
// (root), through the CLI (config.json), and a plan handed to the addon
// directly. Each time the daemon's root and mount table are what they were,
// and so is the host's. An exec into a running container joins that
// container's own mount namespace and pivots nothing: test/oci-native/exec.test.ts.
import t from 'tap';
import { spawn as spawnProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerError, run, spawn, type Spec } from '../../lib/index.js';
import { prepareLaunch } from '../../lib/internal.js';
import { loadBinding } from '../../lib/native.js';
import { CLONE } from '../../lib/plan/flags.js';
import { isRoot, openFds, scratch, spec, testRootfs, zombieChildren, type Tap } from '../helpers/env.js';
import { cleanEnv, makeBundle, OCI_BIN, pidsTagged, runCmd } from '../oci/helpers.js';

const REFUSED =
  /a mount namespace cannot be joined by path \(.*\): the container's root would be built in it, and pivot_root would move the root of every process in that namespace to the image/;

/**
 * A stand-in for a host daemon in a mount namespace of its own (private
 * propagation: nothing of the host's reaches it, so its mount table is a
 * stable witness), unprivileged in the user namespace that owns it. Killed by
 * pid at teardown.
 */
async function daemon(t: Tap): Promise<number> {
  const args = [...(isRoot ? [] : ['-U', '-r']), '-m', '--propagation', 'private', 'sleep', '300'];
  const d = spawnProcess('unshare', args, { stdio: 'ignore' });
  const pid = d.pid!;
  const exited = new Promise((r) => d.once('exit', r));
  t.teardown(async () => {
    d.kill('SIGKILL');
    await exited;
  });
  const mine = readlinkSync('/proc/self/ns/mnt');
  for (let i = 0; i < 300; i++) {
    try {
      if (readlinkSync(`/proc/${pid}/ns/mnt`) !== mine && readlinkSync(`/proc/${pid}/exe`).endsWith('/sleep'))
        return pid;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('unshare did not make its mount namespace');
}

/** What the daemon sees: its root, its / listing, its mount table. */
function daemonView(pid: number) {
  return {
    root: readlinkSync(`/proc/${pid}/root`),
    ls: readdirSync(`/proc/${pid}/root/`).sort(),
    mountinfo: readFileSync(`/proc/${pid}/mountinfo`, 'utf8'),
    ns: readlinkSync(`/proc/${pid}/ns/mnt`),
  };
}

/** The host's "/" line of mountinfo (mount id onwards, without the fs fields' counters). */
const hostRootFields = () =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === '/')!
    .split(' ')
    .slice(6)
    .join(' ')
    .replace(/ - .*/, '');

const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(dir));

/** The spec naming path as its mount namespace (and the daemon's user namespace unprivileged; as root, none). */
function joining(pid: number, path: string, s: Spec = spec(['/bin/sh', '-c', 'echo escaped > /tmp/x'])): Spec {
  s.linux!.namespaces = s.linux!.namespaces!.flatMap((n) =>
    n.type === 'mount'
      ? [{ type: 'mount' as const, path }]
      : n.type === 'user'
        ? isRoot
          ? []
          : [{ type: 'user' as const, path: `/proc/${pid}/ns/user` }]
        : [n],
  );
  delete s.linux!.uidMappings;
  delete s.linux!.gidMappings;
  return s;
}

const mountIndex = (s: Spec) => s.linux!.namespaces!.findIndex((n) => n.type === 'mount');

/** The daemon and the host as they were: nothing pivoted, nothing mounted. */
function unchanged(t: Tap, pid: number, before: ReturnType<typeof daemonView>, hostRoot: string, rootfs: string) {
  const after = daemonView(pid);
  t.equal(after.root, '/', "the daemon's root is still its root");
  t.same(after.ls, before.ls, "the daemon's / lists what it listed");
  t.notOk(existsSync(`/proc/${pid}/root/payload`), "the image's /payload is not at the daemon's /");
  t.equal(after.mountinfo, before.mountinfo, "the daemon's mount table is unchanged");
  t.equal(after.ns, before.ns, 'the daemon is in its own mount namespace still');
  t.same(mountsUnder(rootfs + '/'), [], 'no mount under the rootfs on the host');
  t.notOk(
    mountsUnder(rootfs).some((l) => l.split(' ')[4] === rootfs),
    'nor on it',
  );
  t.equal(hostRootFields(), hostRoot, "the host's / keeps its propagation");
}

t.test(
  "a daemon's mount namespace by /proc/PID/ns/mnt: refused before anything is made, its root untouched",
  async (t) => {
    await run(spec(['/bin/true']), { stdio: 'ignore' });
    const fds = openFds();
    const pid = await daemon(t);
    const before = daemonView(pid);
    t.ok(existsSync(join(testRootfs(), 'payload')) && !existsSync(`/proc/${pid}/root/payload`), 'the witness can fail');
    const hostRoot = hostRootFields();
    const s = joining(pid, `/proc/${pid}/ns/mnt`);
    const i = mountIndex(s);
    // Both entry points: spawn (synchronous refusal) and run (a rejected promise).
    t.throws(() => spawn(s, { stdio: 'ignore' }), {
      name: 'SpecError',
      pointer: `/linux/namespaces/${i}/path`,
      message: REFUSED,
    });
    await t.rejects(run(s, { stdio: 'ignore' }), {
      name: 'SpecError',
      pointer: `/linux/namespaces/${i}/path`,
      message: REFUSED,
    });
    unchanged(t, pid, before, hostRoot, testRootfs());
    t.same(zombieChildren(), []);
    t.same(openFds(), fds, 'no fd left open');
  },
);

t.test('the same namespace under another name: a symlink, a bind-mounted nsfs file (root)', async (t) => {
  const pid = await daemon(t);
  const before = daemonView(pid);
  const hostRoot = hostRootFields();
  const dir = scratch(t);
  const link = join(dir, 'ns-link');
  symlinkSync(`/proc/${pid}/ns/mnt`, link);
  const names = [link];
  if (isRoot) {
    // A bind of the nsfs file keeps the namespace alive under an ordinary
    // path, as `unshare --mount=FILE` and `ip netns` do: on a private mount
    // (the kernel refuses an nsfs bind under a shared one), here the scratch
    // directory bound on itself; the kernel allows binding a mount namespace
    // newer than ours.
    const priv = join(dir, 'priv');
    mkdirSync(priv);
    const file = join(priv, 'ns-bound');
    writeFileSync(file, '');
    for (const argv of [
      ['mount', '--bind', priv, priv],
      ['mount', '--make-private', priv],
      ['mount', '--bind', `/proc/${pid}/ns/mnt`, file],
    ]) {
      const b = await runCmd(argv);
      t.equal(b.code, 0, `${argv.join(' ')}: ${b.err}`);
    }
    t.teardown(async () => {
      await runCmd(['umount', '-R', '-l', priv]);
    });
    t.equal(readlinkSync(`/proc/${pid}/ns/mnt`), before.ns);
    t.ok(
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .some((l) => l.split(' ')[4] === file && / - nsfs /.test(l)),
      'the file is an nsfs mount',
    );
    names.push(file);
  }
  // (Unprivileged, no bind mount can be made in the host's mount namespace: the symlink stands for a disguised name.)
  for (const name of names) {
    const s = joining(pid, name);
    t.throws(() => spawn(s, { stdio: 'ignore' }), {
      name: 'SpecError',
      pointer: `/linux/namespaces/${mountIndex(s)}/path`,
      message: REFUSED,
    });
  }
  unchanged(t, pid, before, hostRoot, testRootfs());
});

t.test("the runtime's own and PID 1's mount namespace: refused the same way", async (t) => {
  const fds = openFds();
  const hostRoot = hostRootFields();
  for (const path of ['/proc/self/ns/mnt', `/proc/${process.pid}/ns/mnt`, '/proc/1/ns/mnt']) {
    const s = joining(process.pid, path, spec(['/bin/true']));
    if (!isRoot) s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'user');
    t.throws(() => spawn(s, { stdio: 'ignore' }), { name: 'SpecError', message: REFUSED }, path);
  }
  t.equal(hostRootFields(), hostRoot);
  t.same(mountsUnder(testRootfs()), []);
  t.same(zombieChildren(), []);
  t.same(openFds(), fds);
});

t.test(
  'through the CLI: nodularity-oci run refuses config.json in one line, leaves no state, no process',
  async (t) => {
    const pid = await daemon(t);
    const before = daemonView(pid);
    const hostRoot = hostRootFields();
    const tag = `mount-join-${process.pid}`;
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `echo escaped; sleep 30 # ${tag}`]);
    const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as Spec;
    joining(pid, `/proc/${pid}/ns/mnt`, cfg);
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
    const root = scratch(t);
    const r = await runCmd([OCI_BIN, '--root', root, 'run', '--bundle', bundle, 'mj1'], { env: cleanEnv });
    t.not(r.code, 0, 'refused');
    t.notMatch(r.out, /escaped/, 'the payload never ran');
    const lines = r.err.trim().split('\n');
    t.equal(lines.length, 1, `one line: ${r.err}`);
    t.match(lines[0], `/linux/namespaces/${mountIndex(cfg)}/path`);
    t.match(lines[0], /a mount namespace cannot be joined by path/);
    t.notMatch(r.err, /^\s+at /m, 'no stack trace');
    t.same(readdirSync(root), [], 'no state left in --root');
    t.same(pidsTagged(tag), [], 'no process left');
    unchanged(t, pid, before, hostRoot, join(bundle, 'rootfs'));
  },
);

t.test('a plan joining a mount namespace where a root is built is refused by the addon too', async (t) => {
  const pid = await daemon(t);
  const before = daemonView(pid);
  const hostRoot = hostRootFields();
  // A legitimate join-mode plan (our own ipc namespace by path), its join then swapped for the daemon's mount namespace.
  const s = spec(['/bin/sh', '-c', 'echo escaped']);
  s.linux!.namespaces = s.linux!.namespaces!.map((n) =>
    n.type === 'ipc' ? { type: 'ipc' as const, path: '/proc/self/ns/ipc' } : n,
  );
  const prepared = prepareLaunch(s);
  t.equal(prepared.plan.joins?.length, 1, 'a join-mode plan');
  const plan = { ...prepared.plan, joins: [{ type: CLONE.NEWNS, path: `/proc/${pid}/ns/mnt` }] };
  const fds = openFds();
  let reported: unknown = null;
  let thrown: unknown;
  try {
    loadBinding().spawn(
      plan,
      ['ignore', 'ignore', 'ignore'],
      (err) => (reported = err),
      () => {},
    );
  } catch (e) {
    thrown = e;
  }
  t.type(thrown, ContainerError, 'the addon throws');
  t.equal((thrown as ContainerError).code, 'EPERM');
  t.match((thrown as ContainerError).message, /join a mount namespace by path with a root to build \(refused\)/);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(reported, null, 'nothing was launched to fail');
  t.same(openFds(), fds, 'no fd left open');
  unchanged(t, pid, before, hostRoot, testRootfs());
});
