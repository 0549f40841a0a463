// test-runner: serial — one containerd daemon, and its shim's runtime root is host-wide (/run/containerd/runc)
// containerd 1.6 (Debian's), the path Kubernetes' CRI takes, with
// nodularity-oci as its runc binary: a containerd started by the test with its
// own root, state and socket in a scratch dir (CRI and the snapshotters that
// need a host setup disabled; the native snapshotter), a docker-archive of the
// test rootfs imported with `ctr image import`, then `ctr run --runc-binary
// ... --rm`, --tty (ctr wants a terminal of its own: run under script(1)),
// `ctr task exec`, `ctr task ps`, `ctr task kill`. Root-only: containerd
// runs as root here (rootless containerd needs RootlessKit, not installed).
import t from 'tap';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { haveCommand, isRoot, scratch, testRootfs } from '../helpers/env.js';
import { requireFreshDist } from '../helpers/cli.js';
import { cleanEnv, OCI_BIN, pidsTagged, runCmd, until, type Result } from './helpers.js';

const ok = haveCommand('containerd') && haveCommand('ctr');
t.ok(ok, 'containerd and ctr are installed (Debian package containerd)');

if (!isRoot) {
  t.comment('containerd runs as root (rootless containerd needs RootlessKit): the root pass runs this file');
  t.pass('unprivileged pass: nothing to run');
} else if (ok) {
  requireFreshDist();
  const base = scratch(t, 'nodularity-containerd-');
  const sock = join(base, 'containerd.sock');
  writeFileSync(
    join(base, 'config.toml'),
    [
      'version = 2',
      `root = "${join(base, 'root')}"`,
      `state = "${join(base, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
      '[grpc]',
      `  address = "${sock}"`,
      '[ttrpc]',
      `  address = "${sock}.ttrpc"`,
      '',
    ].join('\n'),
  );
  let daemon: ChildProcess | undefined;
  const ctr = (args: string[], timeoutMs = 60_000): Promise<Result> =>
    runCmd(['ctr', '--address', sock, ...args], { timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  const run = ['run', '--snapshotter', 'native', '--runc-binary', OCI_BIN];
  const image = 'localhost/nodularity-test:1';
  // The shim's --root for our state: /run/containerd/runc/<namespace>.
  const ourState = (id: string) => join('/run/containerd/runc/default', id);

  t.before(async () => {
    daemon = spawn('containerd', ['--config', join(base, 'config.toml')], {
      env: cleanEnv,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    daemon.stderr!.on('data', (d) => (log += d));
    await until(`containerd to listen (${log.slice(-500)})`, 20_000, () => existsSync(sock));
    // A docker-archive of the test rootfs: one layer, its config, the manifest.
    const img = join(base, 'img');
    mkdirSync(img);
    execFileSync('tar', ['-C', testRootfs(), '-cf', join(img, 'layer.tar'), '.']);
    const diff = createHash('sha256')
      .update(readFileSync(join(img, 'layer.tar')))
      .digest('hex');
    writeFileSync(
      join(img, 'config.json'),
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: [`sha256:${diff}`] },
        config: { Cmd: ['/bin/sh'] },
      }),
    );
    writeFileSync(
      join(img, 'manifest.json'),
      JSON.stringify([{ Config: 'config.json', RepoTags: [image], Layers: ['layer.tar'] }]),
    );
    execFileSync('tar', ['-C', img, '-cf', join(base, 'image.tar'), 'manifest.json', 'config.json', 'layer.tar']);
    const r = await ctr(['image', 'import', '--snapshotter', 'native', join(base, 'image.tar')]);
    if (r.code !== 0) throw new Error(`ctr image import: ${r.err}`);
  });
  t.teardown(async () => {
    for (const id of ['c-run', 'c-tty', 'c-task', 'c-created', 'c-lim']) {
      await ctr(['task', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
      await ctr(['task', 'rm', '-f', id]).catch(() => undefined);
      await ctr(['container', 'rm', id]).catch(() => undefined);
    }
    daemon?.kill('SIGTERM');
    await new Promise((r) => (daemon?.exitCode !== null ? r(null) : daemon.once('exit', r)));
  });

  t.test('ctr run --rm: output, exit status, and our state gone', async (t) => {
    const r = await ctr([...run, '--rm', image, 'c-run', 'sh', '-c', 'echo hello from containerd; exit 3']);
    t.equal(r.code, 3, `the payload's status\n${r.err}`);
    t.equal(r.out, 'hello from containerd\n');
    t.notOk(existsSync(ourState('c-run')), 'the shim deleted our state');
  });

  t.test('ctr run --tty: the payload has the pty the shim received over the console socket', async (t) => {
    const cmd = ['ctr', '--address', sock, ...run, '--rm', '--tty', image, 'c-tty', 'sh', '-c', 'tty; exit 6'];
    const r = await runCmd(['script', '-qec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null']);
    t.equal(r.code, 6, r.err);
    // Two terminals in a row (the payload's, then script's) each add a CR.
    t.match(r.out, /\/dev\/pts\/\d+\r*\n/);
  });

  t.test('ctr task exec, task ps, task kill on a detached task', async (t) => {
    const d = await ctr([...run, '-d', image, 'c-task', 'sleep', '300']);
    t.equal(d.code, 0, d.err);
    t.ok(existsSync(ourState('c-task')), 'our state exists while it runs');
    const e = await ctr(['task', 'exec', '--exec-id', 'e1', 'c-task', 'sh', '-c', 'echo exec-ok; exit 4']);
    t.equal(e.code, 4, `exec's status\n${e.err}`);
    t.equal(e.out, 'exec-ok\n');
    const ps = await ctr(['task', 'ps', 'c-task']);
    t.equal(ps.code, 0, ps.err);
    t.equal(
      ps.out.trim().split('\n').length,
      3,
      `ps: a header, the init and sleep (from our ps --format json)\n${ps.out}`,
    );
    t.equal((await ctr(['task', 'kill', '-s', 'SIGKILL', 'c-task'])).code, 0);
    await until('stopped', 10_000, async () => /c-task\s+\d+\s+STOPPED/.test((await ctr(['task', 'ls'])).out));
    t.equal((await ctr(['task', 'rm', 'c-task'])).code, 0);
    t.equal((await ctr(['container', 'rm', 'c-task'])).code, 0);
    t.notOk(existsSync(ourState('c-task')), 'our state is gone');
  });

  t.test(
    'a task created and never started is removed as containerd removes one: kill, then delete; nothing is left',
    async (t) => {
      // A task stays "created" when its start fails (here: a runtime wrapper
      // that logs each call and runs nodularity-oci for all but `start`). The
      // containerd client deletes a created task with a pid only once it is
      // stopped ("task must be stopped before deletion"): `ctr task rm -f`,
      // like CRI's RemoveContainer, kills it first (WithProcessKill), and the
      // shim then calls `delete ID` without --force (Podman's rm always passes
      // --force). So a created container must die of the kill at its gate and
      // then delete like any stopped one.
      const dir = scratch(t, 'nodularity-ctr-wrap-');
      const calls = join(dir, 'calls');
      const wrapper = join(dir, 'runtime');
      const tag = `ctr-created-${process.pid}`;
      writeFileSync(
        wrapper,
        `#!/bin/sh
printf '%s\\n' "$*" >> ${calls}
for a; do [ "$a" = start ] && { echo 'start refused by the test' >&2; exit 1; }; done
${OCI_BIN} "$@"
rc=$?
echo "rc=$rc" >> ${calls}
exit $rc
`,
        { mode: 0o755 },
      );
      const r = await ctr([
        'run',
        '--snapshotter',
        'native',
        '--runc-binary',
        wrapper,
        image,
        'c-created',
        'sh',
        '-c',
        `sleep 300 # ${tag}`,
      ]);
      t.not(r.code, 0, 'ctr run fails: its start failed');
      const state = await runCmd([OCI_BIN, '--root', '/run/containerd/runc/default', 'state', 'c-created']);
      t.equal(JSON.parse(state.out || '{}').status, 'created', `the task is left created\n${state.err}`);
      const rm = await ctr(['task', 'rm', '-f', 'c-created']);
      t.equal(rm.code, 0, rm.err);
      // Each call and its status: "delete c-created rc=0".
      const lines = readFileSync(calls, 'utf8').split('\n').filter(Boolean);
      const verbs = lines.flatMap((l, i) => {
        if (l.startsWith('rc=')) return [];
        const w = l.split(' ');
        const v = w.find((x) => ['create', 'start', 'delete', 'kill', 'state'].includes(x))!;
        const rc = lines[i + 1]?.startsWith('rc=') ? ` ${lines[i + 1]}` : '';
        if (v === 'state') return [];
        return [`${v === 'kill' ? `kill ${w[w.length - 1]}` : v}${w.includes('--force') ? ' --force' : ''}${rc}`];
      });
      t.same(
        verbs.slice(0, 4),
        ['create rc=0', 'start', 'kill 9 rc=0', 'delete rc=0'],
        `create, the failed start, the kill and a delete without --force, which succeeds (${verbs.join(', ')})`,
      );
      // After it the shim, exiting, cleans up with `delete --force`, which finds nothing (no error, as runc).
      t.ok(
        verbs.slice(4).every((v) => v === 'delete --force rc=0'),
        `only the shim's cleanup after it (${verbs.slice(4).join(', ')})`,
      );
      t.same(pidsTagged(tag), [], 'no process of the container is left');
      t.notOk(existsSync(ourState('c-created')), 'no state dir');
      t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), '/c-created/', 'no mount of its rootfs');
      t.equal((await ctr(['container', 'rm', 'c-created'])).code, 0);
    },
  );

  t.test('with cgroups: the limits ctr sets are felt inside; ctr task ps reads our cgroup.procs', async (t) => {
    // ctr gives every container linux.cgroupsPath /default/ID and linux.resources (cpu shares at least).
    const cg = await ctr([
      ...run,
      '--rm',
      '--memory-limit',
      String(32 << 20),
      image,
      'c-lim',
      'cat',
      '/proc/self/cgroup',
    ]);
    t.equal(cg.code, 0, cg.err);
    t.match(cg.out, /^\d+:memory:\/default\/c-lim$/m, 'in the cgroup containerd named');
    const m = await ctr([
      ...run,
      '--rm',
      '--memory-limit',
      String(32 << 20),
      image,
      'c-lim',
      'sh',
      '-c',
      'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}',
    ]);
    t.notMatch(m.out, /100000000/, `a 32 MiB memory limit holds: the 100 MB string is never built\n${m.err}`);
    t.equal(m.code, 137, 'the OOM killer ended it');
    t.notOk(existsSync('/sys/fs/cgroup/memory/default/c-lim'), 'the cgroup went with the container');
  });
}
