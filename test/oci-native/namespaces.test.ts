// linux.namespaces[].path: joining namespaces instead of making them, as pods
// do (a pause container's user, network, ipc and uts namespaces shared by the
// others), and the time namespace with linux.timeOffsets. Each check is made
// from inside (readlink /proc/self/ns/X) against the host's view of the
// namespace files (their inodes).
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, spawn, type LinuxNamespace, type Spec } from '../../lib/index.js';
import { openFds, scratch, spec, zombieChildren, type Tap } from '../helpers/env.js';
import { nsInode, tagged } from './helpers.js';

const show = `for n in user net ipc uts pid mnt; do echo $n=$(readlink /proc/self/ns/$n); done; echo host=$(hostname); echo one=$(tr '\\0' ' ' < /proc/1/cmdline)`;

function parse(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]),
  );
}

/** A long-running "pause" container with a network namespace of its own and a hostname. */
async function pause(t: Tap, tag: string) {
  const c = spawn(spec(['/bin/sh', '-c', 'sleep 60; true', tag], { network: 'none', hostname: `pod-${tag}` }), {
    stdio: 'ignore',
  });
  await c.spawned;
  t.teardown(async () => {
    c.kill('SIGKILL');
    await c.exited;
  });
  return c;
}

t.test('a container joins the user, network, ipc and uts namespaces of another (a pod)', async (t) => {
  const tag = `pod-${randomBytes(4).toString('hex')}`;
  await run(spec(['/bin/true']), { stdio: 'ignore' }); // the addon's own fds first
  const fds = openFds();
  const a = await pause(t, tag);
  const s = spec(['/bin/sh', '-c', show, `${tag}-b`]);
  s.linux!.namespaces = [
    { type: 'mount' },
    { type: 'network', path: `/proc/${a.pid}/ns/net` },
    { type: 'pid' },
    { type: 'ipc', path: `/proc/${a.pid}/ns/ipc` },
    { type: 'uts', path: `/proc/${a.pid}/ns/uts` },
    { type: 'user', path: `/proc/${a.pid}/ns/user` }, // listed last: joined first all the same
  ];
  const r = await run(s, { stdio: ['ignore', 'pipe', 'pipe'] });
  t.equal(r.exitCode, 0, r.stderr!.toString());
  const got = parse(r.stdout!.toString());
  for (const ns of ['user', 'net', 'ipc', 'uts']) t.equal(got[ns], nsInode(a.pid!, ns), `${ns}: the pause container's`);
  for (const ns of ['pid', 'mnt']) {
    t.not(got[ns], nsInode(a.pid!, ns), `${ns}: a new one, not the pause container's`);
    t.not(got[ns], nsInode('self', ns), `${ns}: not the host's either`);
  }
  t.equal(got.host, `pod-${tag}`, 'the hostname is the shared uts namespace’s');
  t.match(got.one, /^nodularity-init /, 'its own init is PID 1 of its new pid namespace');
  t.equal(r.initDied, false);
  t.same(tagged(`${tag}-b`), [], 'nothing of the joining container is left');
  t.equal(tagged(tag).length, 2, 'the pause container (init and sleep) still runs');
  a.kill('SIGKILL');
  await a.exited;
  t.same(openFds(), fds, 'no fd leaked (the namespace files are closed)');
  t.same(zombieChildren(), []);
});

t.test('a namespace path that is not a namespace of that type is refused before anything is made', async (t) => {
  const dir = scratch(t);
  const tag = `badns-${randomBytes(4).toString('hex')}`;
  const a = await pause(t, tag);
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  const file = join(dir, 'plain');
  writeFileSync(file, '');
  const withNs = (i: number, ns: LinuxNamespace) => {
    const s = spec(['/bin/true', tag]);
    s.linux!.namespaces!.splice(i, 0, ns);
    return s;
  };
  const cases: [Spec, RegExp][] = [
    [withNs(5, { type: 'network', path: join(dir, 'missing') }), /missing does not exist \(ENOENT\)/],
    [withNs(5, { type: 'network', path: file }), /plain is not a namespace file/],
    [withNs(5, { type: 'network', path: `/proc/${a.pid}/ns/ipc` }), /is an ipc namespace, not a network namespace/],
  ];
  for (const [s, msg] of cases)
    t.throws(() => spawn(s, { stdio: 'ignore' }), {
      name: 'SpecError',
      pointer: '/linux/namespaces/5/path',
      message: msg,
    });
  // A mount namespace by path is refused, whichever it is (test/oci-native/mount-join.test.ts).
  const m = spec(['/bin/true']);
  m.linux!.namespaces![1] = { type: 'mount', path: `/proc/${a.pid}/ns/mnt` };
  t.throws(() => spawn(m, { stdio: 'ignore' }), {
    name: 'SpecError',
    pointer: '/linux/namespaces/1/path',
    message: /a mount namespace cannot be joined by path/,
  });
  const u = spec(['/bin/true']);
  u.linux!.namespaces![0] = { type: 'user', path: `/proc/${a.pid}/ns/user` };
  u.linux!.uidMappings = [{ containerID: 0, hostID: process.geteuid!(), size: 1 }];
  t.throws(() => spawn(u, { stdio: 'ignore' }), { name: 'SpecError', pointer: '/linux/uidMappings' });
  t.same(openFds(), fds, 'no fd left open');
  t.equal(tagged(tag).length, 2, 'only the pause container runs');
});

t.test('time namespace: linux.timeOffsets moves the monotonic and boottime clocks of the container only', async (t) => {
  const s = spec(['/bin/sh', '-c', 'cut -d" " -f1 /proc/uptime; readlink /proc/self/ns/time']);
  s.linux!.namespaces!.push({ type: 'time' });
  const year = 365 * 24 * 3600;
  s.linux!.timeOffsets = { boottime: { secs: year, nanosecs: 0 }, monotonic: { secs: year } };
  const r = await run(s, { stdio: ['ignore', 'pipe', 'pipe'] });
  t.equal(r.exitCode, 0, r.stderr!.toString());
  const [uptime, ns] = r.stdout!.toString().trim().split('\n');
  const hostUptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  t.ok(Number(uptime) >= year + hostUptime - 5, `uptime inside ${uptime} s is a year past the host's ${hostUptime} s`);
  t.not(ns, nsInode('self', 'time'), 'a time namespace of its own');
  const bad = spec(['/bin/true']);
  bad.linux!.timeOffsets = { realtime: { secs: 1 } };
  bad.linux!.namespaces!.push({ type: 'time' });
  t.throws(() => spawn(bad), { name: 'SpecError', pointer: '/linux/timeOffsets/realtime' });
  const none = spec(['/bin/true']);
  none.linux!.timeOffsets = { boottime: { secs: 1 } };
  t.throws(() => spawn(none), { name: 'SpecError', pointer: '/linux/timeOffsets', message: /new time namespace/ });
});

t.test('join mode failures, before and after the fork, leave no process and no fd', async (t) => {
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  // Before the fork: setns into our own user namespace is EINVAL (the kernel's rule).
  const own = spec(['/bin/true']);
  own.linux!.namespaces![0] = { type: 'user', path: `/proc/${process.pid}/ns/user` };
  await t.rejects(run(own, { stdio: 'ignore' }), {
    name: 'ContainerError',
    step: 'join-namespaces',
    code: 'EINVAL',
    message: new RegExp(
      `join the user namespace /proc/${process.pid}/ns/user \\(linux.namespaces\\[0\\].path\\): setns`,
    ),
  });
  // After the fork (a time namespace forks into it): a later step fails in the process that goes on.
  const late = spec(['/bin/true'], { cwd: '/etc/passwd' });
  late.linux!.namespaces!.push({ type: 'time' });
  await t.rejects(run(late, { stdio: 'ignore' }), { name: 'ContainerError', step: 'chdir', code: 'ENOTDIR' });
  t.same(zombieChildren(), [], 'both processes reaped');
  t.same(openFds(), fds, 'no fd left open');
});
