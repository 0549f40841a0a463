// `nodularity-oci exec`: a new process in a running container, as `ctr task
// exec`, `podman exec` and the kubelet's probes run one: in the container's
// namespaces (its PID 1 is the container's init, its root the container's),
// with the command line's env, cwd, user, its exit status; --detach with a
// pid file; --process FILE; --tty over a console socket.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { gid, payloadBinary, scratch, uid, type Tap } from '../helpers/env.js';
import { lineReader } from '../oci-native/helpers.js';
import { cleanEnv, makeBundle, OCI_BIN, oci, ociDetached, runCmd, until } from './helpers.js';

/** The first id of the caller's subordinate range (/etc/subuid), as newuidmap would use it; root: any. */
function subId(file: string): number {
  const me = userInfo().username;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [name, start] = line.split(':');
    if (name === me || name === String(uid)) return Number(start);
  }
  return 300000;
}

async function running(t: Tap, root: string, id: string): Promise<{ pid: number; bundle: string }> {
  const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', 'echo container-marker > /tmp/marker; exec sleep 300']);
  // The caller's id, and 65536 more from its subordinate range, so that --user can name an id other than its own.
  const cfg = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  cfg.linux.uidMappings = [
    { containerID: uid, hostID: uid, size: 1 },
    { containerID: 1000, hostID: subId('/etc/subuid'), size: 1000 },
  ];
  cfg.linux.gidMappings = [
    { containerID: gid, hostID: gid, size: 1 },
    { containerID: 1000, hostID: subId('/etc/subgid'), size: 1000 },
  ];
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(cfg));
  const c = await ociDetached(root, 'create', '--bundle', bundle, id);
  t.equal(c.code, 0, c.err);
  t.equal((await oci(root, 'start', id)).code, 0);
  t.teardown(() => oci(root, 'delete', '--force', id));
  const pid = JSON.parse((await oci(root, 'state', id)).out).pid as number;
  await until('the payload ran', 10_000, () => {
    try {
      return readFileSync(`/proc/${pid}/root/tmp/marker`, 'utf8') === 'container-marker\n';
    } catch {
      return false;
    }
  });
  return { pid, bundle };
}

t.test("exec runs in the container's namespaces and root, with its own env, cwd, user and exit status", async (t) => {
  const root = scratch(t);
  const { pid } = await running(t, root, 'x1');
  const r = await oci(
    root,
    'exec',
    '--env',
    'FOO=bar',
    '--cwd',
    '/etc',
    'x1',
    '/bin/sh',
    '-c',
    'echo foo=$FOO cwd=$(pwd) marker=$(cat /tmp/marker) pid1=$(tr "\\0" " " < /proc/1/cmdline) uid=$(id -u); exit 4',
  );
  t.equal(r.code, 4, `the exec's own status\n${r.err}`);
  t.match(
    r.out,
    /foo=bar cwd=\/etc marker=container-marker pid1=nodularity-init/,
    'env, cwd, the root and PID 1 of the container',
  );
  for (const ns of ['pid', 'mnt', 'user', 'ipc', 'uts']) {
    const host = readlinkSync(`/proc/self/ns/${ns}`);
    t.not(readlinkSync(`/proc/${pid}/ns/${ns}`), host, `the container has its own ${ns} namespace`);
  }
  const id = await oci(root, 'exec', '--user', '1000:1000', 'x1', 'id');
  t.equal(id.code, 0, id.err);
  t.match(id.out, /uid=1000 gid=1000/, '--user UID:GID');
  const missing = await oci(root, 'exec', 'x1', '/no/such');
  t.equal(missing.code, 1);
  t.match(missing.err, /executable .*\/no\/such.* not found in the container/);
});

t.test('exec --detach --pid-file: returns at once, the process runs in the container, ps lists it', async (t) => {
  const root = scratch(t);
  await running(t, root, 'x2');
  const pidFile = join(scratch(t), 'exec.pid');
  const r = await ociDetached(root, 'exec', '--detach', '--pid-file', pidFile, 'x2', 'sleep', '200');
  t.equal(r.code, 0, r.err);
  const epid = Number(readFileSync(pidFile, 'utf8'));
  t.ok(epid > 0);
  const pids = JSON.parse((await oci(root, 'ps', '--format', 'json', 'x2')).out) as number[];
  t.ok(pids.includes(epid), `the exec's process (${epid}) is one of the container's (${pids})`);
  t.equal((await oci(root, 'delete', '--force', 'x2')).code, 0);
  await until('gone', 5000, () => !pids.some((p) => readdirSync('/proc').includes(String(p))));
  t.pass('every process of the container, the exec included, is gone after delete --force');
});

t.test('exec --process FILE; exec into a stopped container is refused', async (t) => {
  const root = scratch(t);
  await running(t, root, 'x3');
  const pf = join(scratch(t), 'process.json');
  writeFileSync(
    pf,
    JSON.stringify({
      args: ['/bin/sh', '-c', 'echo from-process-file $X'],
      env: ['X=1', 'PATH=/bin'],
      cwd: '/',
      user: { uid, gid },
    }),
  );
  const r = await oci(root, 'exec', '--process', pf, 'x3');
  t.equal(r.code, 0, r.err);
  t.equal(r.out, 'from-process-file 1\n');
  t.equal((await oci(root, 'kill', 'x3', 'KILL')).code, 0);
  await until('stopped', 10_000, async () => JSON.parse((await oci(root, 'state', 'x3')).out).status === 'stopped');
  const s = await oci(root, 'exec', 'x3', 'true');
  t.equal(s.code, 1);
  t.match(s.err, /cannot exec in a container that is stopped: x3/);
});

t.test('exec --tty --console-socket: the exec gets a pty of its own, sent over the socket', async (t) => {
  const root = scratch(t);
  await running(t, root, 'x4');
  const dir = scratch(t);
  const sock = join(dir, 'console.sock');
  const rt = spawn(payloadBinary, ['recvtty', sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => rt.kill('SIGKILL'));
  const lines = lineReader(rt);
  await lines.waitLine(/^listening$/, 'recvtty');
  const r = await runCmd(
    [OCI_BIN, '--root', root, 'exec', '--tty', '--console-socket', sock, 'x4', '/bin/sh', '-c', 'echo tty=$(tty)'],
    {
      env: cleanEnv,
    },
  );
  t.equal(r.code, 0, r.err);
  const name = (await lines.waitLine(/^name (.*)$/, 'the master'))[1];
  await lines.waitLine(/^tty=/, 'the exec output');
  t.ok(lines.lines.includes(`tty=${name}`), `the exec's terminal is the pty that was sent (${name})`);
  const bad = await oci(root, 'exec', '--tty', 'x4', 'true');
  t.equal(bad.code, 1);
  t.match(bad.err, /exec --tty needs --console-socket/);
});
