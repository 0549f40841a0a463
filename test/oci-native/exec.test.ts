// An exec into a running container (SpawnOptions.joinPid, runc exec): every
// namespace of the target joined, no mounts of its own, and only the exec's
// own spec.process applied: user, capabilities, no_new_privs, seccomp,
// rlimits, cwd, env. Checked from inside and against the host's view.
import t from 'tap';
import { closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawn as spawnNode } from 'node:child_process';
import { join } from 'node:path';
import { openConsoleSocket, run, spawn, type Container } from '../../lib/index.js';
import { isRoot, openFds, payloadBinary, scratch, spec, zombieChildren, type Tap } from '../helpers/env.js';
import { children, lineReader, nsInode, tagged } from './helpers.js';

/** A running container that made /tmp/made-at-runtime (not in the image) and waits. */
async function target(t: Tap, tag: string): Promise<Container> {
  const c = spawn(
    spec(
      [
        '/bin/sh',
        '-c',
        'printf "#!/bin/sh\\necho runtime-made \\$*\\n" > /tmp/made-at-runtime; chmod 755 /tmp/made-at-runtime; echo ready; sleep 60; true',
        tag,
      ],
      { network: 'none', hostname: 'exec-target' },
    ),
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise((res) => c.stdout!.once('data', res)); // "ready"
  await c.spawned; // (the output can come before the launch's own completion is delivered)
  t.teardown(async () => {
    c.kill('SIGKILL');
    await c.exited;
  });
  return c;
}

function execSpec(args: string[], more: { cwd?: string; env?: string[] } = {}) {
  const s = spec(args, { cwd: more.cwd ?? '/', env: more.env });
  return s;
}

t.test('exec joins every namespace of the target and sees its live mounts', async (t) => {
  const tag = `exec-${randomBytes(4).toString('hex')}`;
  await run(spec(['/bin/true']), { stdio: 'ignore' });
  const fds = openFds();
  const c = await target(t, tag);
  const show =
    'for n in user mnt pid net ipc uts cgroup; do echo $n=$(readlink /proc/self/ns/$n); done; echo host=$(hostname); echo cwd=$(pwd); echo foo=$FOO; echo one=$(tr "\\0" " " < /proc/1/cmdline); /tmp/made-at-runtime arg; exit 7';
  const r = await run(execSpec(['/bin/sh', '-c', show, `${tag}-x`], { cwd: '/tmp', env: ['FOO=bar', 'PATH=/bin'] }), {
    stdio: ['ignore', 'pipe', 'pipe'],
    joinPid: c.pid,
  });
  t.equal(r.exitCode, 7, `the exec's exit code (stderr: ${r.stderr})`);
  t.equal(r.initDied, false);
  const out = r.stdout!.toString();
  for (const ns of ['user', 'mnt', 'pid', 'net', 'ipc', 'uts'])
    t.match(out, `${ns}=${nsInode(c.pid!, ns)}\n`, `${ns}: the target's`);
  t.match(out, 'host=exec-target\n');
  t.match(out, 'cwd=/tmp\n', 'process.cwd, in the container');
  t.match(out, 'foo=bar\n', 'process.env');
  t.match(
    out,
    /one=nodularity-init \d+ \/bin\/sh \/bin\/sh -c printf/,
    "PID 1 is the target's init: the exec is in its pid namespace",
  );
  t.match(out, 'runtime-made arg\n', 'a file the container made at run time is there: its mount namespace, live');
  t.same(tagged(`${tag}-x`), [], 'nothing of the exec is left');
  t.equal(children(c.pid!).length, 1, 'the target still runs its payload');
  c.kill('SIGKILL');
  await c.exited;
  await new Promise((res) => (c.stdout!.closed ? res(null) : c.stdout!.once('close', res)));
  t.same(openFds(), fds, 'no fd leaked');
  t.same(zombieChildren(), []);
});

t.test('exec applies its own process: user, capabilities, no_new_privs, seccomp, rlimits', async (t) => {
  const tag = `exec-sec-${randomBytes(4).toString('hex')}`;
  const c = await target(t, tag);
  const s = execSpec([
    '/bin/sh',
    '-c',
    'grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; echo nofile=$(ulimit -n); mkdir /tmp/blocked 2>&1 || echo mkdir-failed',
    tag,
  ]);
  // Ambient too, so that a non-root payload (the unprivileged pass) keeps it across its exec.
  const chown = ['CAP_CHOWN'];
  s.process!.capabilities = { bounding: chown, effective: chown, permitted: chown, inheritable: chown, ambient: chown };
  s.process!.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 123, hard: 456 }];
  s.process!.noNewPrivileges = true;
  s.linux!.seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
  };
  const r = await run(s, { stdio: ['ignore', 'pipe', 'pipe'], joinPid: c.pid });
  const out = r.stdout!.toString();
  t.equal(r.exitCode, 0, r.stderr!.toString());
  t.match(out, /CapEff:\s+0000000000000001\n/, 'effective: CAP_CHOWN only');
  t.match(out, /CapBnd:\s+0000000000000001\n/, 'bounding: CAP_CHOWN only');
  t.match(out, /NoNewPrivs:\s+1\n/);
  t.match(out, /Seccomp:\s+2\n/, 'a seccomp filter');
  t.match(out, 'nofile=123\n', 'the rlimit');
  t.match(out, /Operation not permitted\nmkdir-failed|mkdir-failed/, 'mkdir refused by the filter');
  const ids = await run(execSpec(['/payload', 'ids']), { stdio: ['ignore', 'pipe', 'pipe'], joinPid: c.pid });
  t.match(ids.stdout!.toString(), `uid=${process.geteuid!()} euid=${process.geteuid!()}`, 'process.user');
});

t.test('exec with a terminal: a pty of the container, sent over a console socket', async (t) => {
  const dir = scratch(t);
  const tag = `exec-tty-${randomBytes(4).toString('hex')}`;
  const c = await target(t, tag);
  const sock = join(dir, 'console.sock');
  const rt = spawnNode(payloadBinary, ['recvtty', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => rt.kill('SIGKILL'));
  const { waitLine, lines } = lineReader(rt);
  await waitLine(/^listening$/, 'recvtty');
  const fd = openConsoleSocket(sock);
  const s = execSpec(['/bin/sh', '-c', 'echo tty=$(tty); [ -t 0 ] && [ -t 1 ] && echo all-tty; ls /dev/pts']);
  s.process!.terminal = true;
  const e = spawn(s, { joinPid: c.pid, consoleSocket: fd });
  await e.spawned;
  closeSync(fd);
  t.equal((await e.exited).exitCode, 0);
  await waitLine(/^eof$/, 'the relay to end');
  const name = (await waitLine(/^name (.*)$/, 'the name'))[1];
  t.ok(lines.includes(`tty=${name}`), `tty names the pty sent (${name})`);
  t.ok(lines.includes('all-tty'));
});

t.test(
  'exec into a process that is gone, or of a missing executable, is refused before anything is made',
  async (t) => {
    const tag = `exec-bad-${randomBytes(4).toString('hex')}`;
    const c = await target(t, tag);
    t.throws(() => spawn(execSpec(['/bin/true']), { joinPid: 0x3ffffff }), {
      name: 'SpecError',
      message: /joinPid.*process \d+ does not exist/,
    });
    t.throws(() => spawn(execSpec(['nosuch-binary']), { joinPid: c.pid }), {
      name: 'SpecError',
      pointer: '/process/args/0',
      message: /executable "nosuch-binary" not found in the container/,
    });
    t.throws(() => spawn(execSpec(['/bin/true']), { joinPid: c.pid, init: false }), {
      name: 'SpecError',
      message: /exec needs the init/,
    });
    if (!isRoot)
      t.throws(() => spawn(execSpec(['/bin/true']), { joinPid: process.pid }), {
        name: 'SpecError',
        message: /only root can enter it/,
      });
  },
);

t.test('joinNamespaces: all but the mount namespace, as a createContainer hook runs', async (t) => {
  const tag = `exec-nomnt-${randomBytes(4).toString('hex')}`;
  const c = await target(t, tag);
  // A host program (the host's /bin/sh: the mount namespace stays ours), in the container's other namespaces.
  const s = execSpec([
    '/bin/sh',
    '-c',
    'for n in net uts ipc pid mnt; do echo $n=$(readlink /proc/self/ns/$n); done; hostname; test -e /tmp/made-at-runtime || echo host-tmp',
  ]);
  const r = await run(s, {
    stdio: ['ignore', 'pipe', 'pipe'],
    joinPid: c.pid,
    joinNamespaces: ['user', 'network', 'uts', 'ipc', 'pid', 'cgroup'],
  });
  t.equal(r.exitCode, 0, r.stderr!.toString());
  const out = r.stdout!.toString();
  for (const ns of ['net', 'uts', 'ipc']) t.match(out, `${ns}=${nsInode(c.pid!, ns)}\n`, `${ns}: the container's`);
  t.match(out, `mnt=${nsInode('self', 'mnt')}\n`, 'mnt: ours');
  t.match(out, 'exec-target\nhost-tmp\n', "the container's hostname, the host's files");
  t.throws(() => spawn(execSpec(['/bin/true']), { joinPid: c.pid, joinNamespaces: ['bogus'] }), {
    name: 'SpecError',
    message: /joinNamespaces.*unknown namespace "bogus"/,
  });
});
