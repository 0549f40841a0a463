// linux.namespaces: a mount namespace given by path is joined and the
// container's root built in it, as runc does (runtime-tools linux_ns_path):
// the container's mount namespace is the one given, and nothing of it shows
// on the host, even when the joined namespace's mounts are peers of the
// host's (made with `unshare -m --propagation unchanged`, as root). The
// runtime's own mount namespace and the host's are refused: pivot_root there
// would move the root of every process in them.
import t from 'tap';
import { spawn as spawnProcess, type ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { run, spawn, type Spec } from '../../lib/index.js';
import { isRoot, openFds, spec, testRootfs, zombieChildren, type Tap } from '../helpers/env.js';

/** A process in a new mount namespace (and, unprivileged, the user namespace that owns it), killed at teardown. */
async function holder(t: Tap): Promise<ChildProcess & { pid: number }> {
  const args = [...(isRoot ? [] : ['-U', '-r']), '-m', '--propagation', 'unchanged', 'sleep', '600'];
  const h = spawnProcess('unshare', args, { stdio: 'ignore' });
  t.teardown(() => {
    h.kill('SIGKILL');
  });
  const mine = readlinkSync('/proc/self/ns/mnt');
  for (let i = 0; i < 200; i++) {
    try {
      if (readlinkSync(`/proc/${h.pid}/ns/mnt`) !== mine) return h as ChildProcess & { pid: number };
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('unshare did not make its mount namespace');
}

/** The spec joining pid's mount namespace (and its user namespace unprivileged; as root, no user namespace). */
function joining(pid: number, args: string[]): Spec {
  const s = spec(args, { uid: 0, gid: 0 });
  s.linux!.namespaces = s.linux!.namespaces!.flatMap((n) =>
    n.type === 'mount'
      ? [{ type: 'mount' as const, path: `/proc/${pid}/ns/mnt` }]
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

const hostRootFields = () =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === '/')!
    .split(' ')
    .slice(6)
    .join(' ')
    .replace(/ - .*/, '');

t.test('a mount namespace by path: the container is built in it, the host mount table is untouched', async (t) => {
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  const h = await holder(t);
  const joined = readlinkSync(`/proc/${h.pid}/ns/mnt`);
  const rootfs = testRootfs();
  const hostBefore = readFileSync('/proc/self/mountinfo', 'utf8');
  const hostRoot = hostRootFields();
  const r = await run(joining(h.pid, ['/bin/sh', '-c', 'readlink /proc/self/ns/mnt; cat /proc/self/mountinfo']), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.equal(r.exitCode, 0, r.stderr!.toString());
  const [inside, ...mountinfo] = r.stdout!.toString().trim().split('\n');
  t.equal(inside, joined, 'the container is in the joined mount namespace');
  t.not(inside, readlinkSync('/proc/self/ns/mnt'), 'not ours');
  t.ok(
    mountinfo.some((l) => l.split(' ')[4] === '/proc') && mountinfo.some((l) => l.split(' ')[4] === '/dev'),
    'its root was built there (/proc, /dev)',
  );
  t.notOk(
    mountinfo.some((l) => l.split(' ')[4] === rootfs),
    'pivoted: the host path of the rootfs is not a mount point inside',
  );
  const hostAfter = readFileSync('/proc/self/mountinfo', 'utf8');
  t.same(
    hostAfter.split('\n').filter((l) => l.includes(rootfs)),
    hostBefore.split('\n').filter((l) => l.includes(rootfs)),
    'no mount under the rootfs on the host',
  );
  t.equal(hostRootFields(), hostRoot, "the host's / keeps its propagation");
  t.same(zombieChildren(), []);
  t.same(openFds(), fds, 'no fd left open');
});

t.test("the runtime's own and the host's mount namespace are refused, before anything is made", async (t) => {
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  const own = joining(process.pid, ['/bin/true']);
  t.throws(() => spawn(own), {
    name: 'SpecError',
    pointer: /^\/linux\/namespaces\/\d\/path$/,
    message: /is the runtime's own mount namespace: the container's root cannot be built in it/,
  });
  // PID 1's: refused by its identity where we can see it; where we cannot (unprivileged, or root without
  // ptrace rights over PID 1, as on these VMs) it cannot be opened, and that is refused before clone too.
  await t.rejects(run(joining(1, ['/bin/true']), { stdio: 'ignore' }), {
    name: 'SpecError',
    message: /\/proc\/1\/ns\/mnt is the host's mount namespace|cannot open \/proc\/1\/ns\/(mnt|user) \(EACCES\)/,
  });
  t.same(zombieChildren(), []);
  t.same(openFds(), fds);
});

t.test('a joined mount namespace with a new user namespace is refused (it would own nothing there)', async (t) => {
  const h = await holder(t);
  const s = spec(['/bin/true']);
  s.linux!.namespaces = s.linux!.namespaces!.map((n) =>
    n.type === 'mount' ? { type: 'mount' as const, path: `/proc/${h.pid}/ns/mnt` } : n,
  );
  t.ok(
    s.linux!.namespaces!.some((n) => n.type === 'user' && !n.path),
    'a new user namespace is asked for',
  );
  t.throws(() => spawn(s), {
    name: 'SpecError',
    message: /a mount namespace joined by path belongs to an existing user namespace: join that one too/,
  });
});
