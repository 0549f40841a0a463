// Spec fields applied, not ignored: linux.sysctl (namespaced keys only),
// process.oomScoreAdj, process.user.umask, linux.personality, linux.devices;
// and the fields accepted with a warning (labels without the LSM).
// Each is checked from inside the container, and the host afterwards.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { run, spawn, type Spec } from '../../lib/index.js';
import { isRoot, spec } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

const sh = (script: string, o: Parameters<typeof spec>[1] = {}) => spec(['/bin/sh', '-c', script], o);

t.test('linux.sysctl: namespaced keys are set inside, the host keeps its values', async (t) => {
  const hostFwd = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
  const hostShm = readFileSync('/proc/sys/kernel/shmmni', 'utf8');
  const hostMq = readFileSync('/proc/sys/fs/mqueue/msg_max', 'utf8');
  // uid 0 inside: the ipc and mqueue keys belong to the namespace's root (the
  // kernel's ipc_set_ownership), which a single-ID map of another id lacks.
  const s = sh('cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni /proc/sys/fs/mqueue/msg_max', {
    network: 'none',
    uid: 0,
    gid: 0,
  });
  s.linux!.sysctl = { 'net.ipv4.ip_forward': '1', 'kernel.shmmni': '1234', 'fs.mqueue.msg_max': '42' };
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  t.equal(r.out, '1\n1234\n42\n', 'the values inside');
  t.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'), hostFwd, "the host's net.ipv4.ip_forward");
  t.equal(readFileSync('/proc/sys/kernel/shmmni', 'utf8'), hostShm, "the host's kernel.shmmni");
  t.equal(readFileSync('/proc/sys/fs/mqueue/msg_max', 'utf8'), hostMq, "the host's fs.mqueue.msg_max");
});

t.test('linux.sysctl: a key that would change the host is refused', async (t) => {
  const s = sh('true');
  s.linux!.sysctl = { 'kernel.pid_max': '100000' };
  t.throws(() => spawn(s), { name: 'SpecError', pointer: '/linux/sysctl/kernel.pid_max', message: /change the host/ });
  const n = sh('true'); // the host's network namespace
  n.linux!.sysctl = { 'net.ipv4.ip_forward': '1' };
  t.throws(() => spawn(n), { pointer: '/linux/sysctl/net.ipv4.ip_forward', message: /needs a network namespace/ });
  const odd = sh('true', { network: 'none' });
  odd.linux!.sysctl = { 'net/../../kernel/pid_max': '1' };
  t.throws(() => spawn(odd), { pointer: '/linux/sysctl/net~1..~1..~1kernel~1pid_max', message: /not a sysctl key/ });
});

t.test('process.oomScoreAdj, process.user.umask, linux.personality', async (t) => {
  const s = sh('cat /proc/self/oom_score_adj; umask; uname -m');
  s.process!.oomScoreAdj = 500;
  s.process!.user.umask = 0o027;
  s.linux!.personality = { domain: 'LINUX32' };
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  const [oom, umask, machine] = r.out.trim().split('\n');
  t.equal(oom, '500', 'oom_score_adj raised');
  t.equal(umask, '0027', 'umask');
  t.equal(machine, process.arch === 'x64' ? 'i686' : process.arch === 'arm64' ? 'armv8l' : machine, 'PER_LINUX32');
  t.equal(readFileSync('/proc/self/oom_score_adj', 'utf8').trim(), '0', 'ours unchanged');
  // Lowering needs CAP_SYS_RESOURCE of the host's user namespace: root
  // without a user namespace has it; inside a new one nobody has (root
  // included, as with runc): a clear error, not a silent 0.
  const low = sh('cat /proc/self/oom_score_adj');
  low.process!.oomScoreAdj = -500;
  await t.rejects(run(low, { stdio: 'ignore' }), {
    name: 'ContainerError',
    step: 'process-attrs',
    message: /oomScoreAdj.*EACCES/,
  });
  if (isRoot) {
    // (These machines' root lacks CAP_SYS_RESOURCE in its bounding set: then it cannot either.)
    const eff = BigInt('0x' + readFileSync('/proc/self/status', 'utf8').match(/^CapEff:\s+(\w+)$/m)![1]);
    low.linux!.namespaces = low.linux!.namespaces!.filter((n) => n.type !== 'user');
    low.process!.user = { uid: 0, gid: 0 };
    if (eff & (1n << 24n)) t.equal((await capture(low)).out, '-500\n', 'root without a user namespace may lower it');
    else await t.rejects(run(low, { stdio: 'ignore' }), { step: 'process-attrs', message: /EACCES/ });
  }
  for (const [bad, ptr] of [
    [(x: Spec) => (x.process!.oomScoreAdj = 5000), '/process/oomScoreAdj'],
    [(x: Spec) => (x.process!.user.umask = 0o1000), '/process/user/umask'],
    [(x: Spec) => (x.linux!.personality = { domain: 'BSD' }), '/linux/personality/domain'],
  ] as const) {
    const x = sh('true');
    bad(x);
    t.throws(() => spawn(x), { name: 'SpecError', pointer: ptr });
  }
});

t.test('linux.devices: the host node bound in a user namespace, refused when it cannot be', async (t) => {
  const s = sh("stat -c '%F %t:%T' /dev/fuse");
  s.linux!.devices = [{ type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 0o666 }];
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  t.equal(r.out, 'character special file a:e5\n', '/dev/fuse 10:229 inside');
  const missing = sh('true');
  missing.linux!.devices = [{ type: 'c', path: '/dev/nodularity-nosuch', major: 1, minor: 3 }];
  t.throws(() => spawn(missing), {
    name: 'SpecError',
    pointer: '/linux/devices/0',
    message: /mknod is refused in a user namespace.*does not exist/,
  });
  const wrong = sh('true');
  wrong.linux!.devices = [{ type: 'c', path: '/dev/fuse', major: 1, minor: 3 }];
  t.throws(() => spawn(wrong), { pointer: '/linux/devices/0', message: /is char 10:229/ });
});

t.test('linux.devices as root without a user namespace: mknod with the given owner and mode', async (t) => {
  const s = sh("stat -c '%F %t:%T %a %u:%g' /dev/mynull; echo x > /dev/mynull && echo writable");
  s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'user');
  s.process!.user = { uid: 0, gid: 0 };
  s.linux!.devices = [{ type: 'c', path: '/dev/mynull', major: 1, minor: 3, fileMode: 0o640, uid: 0, gid: 5 }];
  if (!isRoot) {
    // Without a user namespace only root may launch at all: the unprivileged pass checks the refusal.
    t.throws(() => spawn(s), {
      name: 'SpecError',
      pointer: '/linux/namespaces',
      message: /user namespace is required/,
    });
    return;
  }
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  t.equal(r.out, 'character special file 1:3 640 0:5\nwritable\n');
  t.notOk(existsSync('/dev/mynull'), 'nothing made on the host');
});

t.test('fields accepted with one warning: labels of an LSM the host lacks', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error & { code?: string }) => {
    if (w.code === 'NODULARITY_SPEC_IGNORED') warnings.push(w.message);
  };
  process.on('warning', onWarning);
  t.teardown(() => process.off('warning', onWarning));
  const s = sh('true');
  s.process!.apparmorProfile = 'nodularity-test';
  s.process!.selinuxLabel = 'system_u:system_r:container_t:s0';
  s.linux!.mountLabel = 'system_u:object_r:container_file_t:s0';
  const apparmor = existsSync('/sys/module/apparmor/parameters/enabled')
    ? readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y'
    : false;
  const selinux = existsSync('/sys/fs/selinux/enforce');
  if (apparmor || selinux) {
    // A confinement the host could give and we do not apply is refused, not silently dropped.
    t.throws(() => spawn(s), { name: 'SpecError', message: /not applied yet/ });
    return;
  }
  t.equal((await run(s, { stdio: 'ignore' })).exitCode, 0, 'the container runs');
  t.equal((await run(s, { stdio: 'ignore' })).exitCode, 0, 'twice');
  await new Promise((r) => setImmediate(r));
  t.same(
    warnings.sort(),
    [
      'linux.mountLabel ignored: this host has no SELinux',
      'process.apparmorProfile ignored: this host has no AppArmor',
      'process.selinuxLabel ignored: this host has no SELinux',
    ],
    'one warning each, once per process',
  );
});
