// Podman 4.3 (Debian's) with `--runtime nodularity-oci`: rootful in the root
// pass, rootless (vfs storage, the test user's subordinate ids through
// newuidmap) in the unprivileged pass; its own storage and run directories in
// a scratch dir, cgroupfs, no network. On these machines root lacks
// CAP_SYS_RESOURCE in its bounding set, so Podman's default nofile/nproc
// rlimits (raised above the hard limit) fail with runc too: every run passes
// --ulimit nofile=1024:1024 --ulimit nproc=1024:1024.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { haveCommand, isRoot, scratch, testRootfs } from '../helpers/env.js';
import { requireFreshDist } from '../helpers/cli.js';
import { cleanEnv, OCI_BIN, type Result } from './helpers.js';

const ok = haveCommand('podman');
t.ok(ok, 'podman is installed (Debian package podman)');

if (ok) {
  requireFreshDist();
  const base = scratch(t, 'nodularity-podman-');
  const xdg = join(base, 'xdg');
  mkdirSync(xdg, { mode: 0o700 });
  const env = { ...cleanEnv, HOME: base, XDG_RUNTIME_DIR: xdg, XDG_CONFIG_HOME: join(base, 'config') };
  const global = [
    '--root',
    join(base, 'storage'),
    '--runroot',
    join(base, 'run'),
    '--storage-driver',
    'vfs',
    '--cgroup-manager',
    'cgroupfs',
    '--events-backend',
    'file',
    '--runtime',
    OCI_BIN,
  ];
  const limits = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--network', 'none'];
  const podman = (args: string[], input?: string): Promise<Result> =>
    new Promise((resolve, reject) => {
      // cwd: conmon writes an "oom" file into its working directory when the OOM killer strikes.
      const p = spawn('podman', [...global, ...args], { env, cwd: base, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '',
        err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.stdin.end(input ?? '');
      const timer = setTimeout(() => p.kill('SIGKILL'), 90_000);
      p.on('error', reject);
      p.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, out, err });
      });
    });
  const image = 'localhost/nodularity-test:1';
  // Our state for a container id: under $XDG_RUNTIME_DIR/nodularity (Podman passes no --root), or /run/nodularity.
  const stateOf = (id: string) => [join(xdg, 'nodularity', id), `/run/nodularity/${id}`].filter((p) => existsSync(p));

  t.before(async () => {
    const tar = join(base, 'rootfs.tar');
    execFileSync('tar', ['-C', testRootfs(), '-cf', tar, '.']);
    const r = await podman(['import', tar, image]);
    if (r.code !== 0) throw new Error(`podman import: ${r.err}`);
  });
  t.teardown(async () => {
    await podman(['rm', '-a', '-f']);
    // vfs layers of a rootless store belong to subordinate ids: podman removes them in its own namespace.
    if (!isRoot) await podman(['unshare', 'rm', '-rf', join(base, 'storage')]);
  });

  t.test(`${isRoot ? 'rootful' : 'rootless'}: run --rm, its output and exit status, and nothing left`, async (t) => {
    const r = await podman(['run', '--rm', ...limits, image, '/bin/sh', '-c', 'echo hello from podman; exit 3']);
    t.equal(r.code, 3, `the payload's status comes back\n${r.err}`);
    t.equal(r.out, 'hello from podman\n');
    const ps = await podman(['ps', '-a', '-q']);
    t.equal(ps.out, '', 'podman has no container left');
    t.same(
      readdirSync(join(xdg))
        .filter((e) => e === 'nodularity')
        .flatMap((e) => readdirSync(join(xdg, e))),
      [],
      'nor do we',
    );
  });

  t.test('run -i: stdin reaches the payload', async (t) => {
    const r = await podman(['run', '--rm', '-i', ...limits, image, 'sh', '-c', 'read l; echo got:$l'], 'piped line\n');
    t.equal(r.code, 0, r.err);
    t.equal(r.out, 'got:piped line\n');
  });

  t.test('run -t: the payload has a terminal (the pty over the console socket)', async (t) => {
    const r = await podman(['run', '--rm', '-t', ...limits, image, 'sh', '-c', 'tty; [ -t 1 ] && echo is-a-tty']);
    t.equal(r.code, 0, r.err);
    t.match(r.out, /^\/dev\/pts\/\d+\r?\nis-a-tty\r?\n$/);
  });

  t.test('run -d, exec, ps, stop (TERM), kill, rm -f: states and exit codes', async (t) => {
    const d = await podman(['run', '-d', '--name', 's1', ...limits, image, 'sleep', '300']);
    t.equal(d.code, 0, d.err);
    const id = d.out.trim();
    t.ok(stateOf(id).length === 1, 'our state exists while it runs');
    const e = await podman(['exec', 's1', 'sh', '-c', 'echo exec-ok; tr "\\0" " " < /proc/1/cmdline; exit 5']);
    t.equal(e.code, 5, `exec's own status\n${e.err}`);
    t.match(e.out, /^exec-ok\nnodularity-init /, "exec runs beside the container's init");
    t.match((await podman(['ps', '--format', '{{.Names}} {{.Status}}'])).out, /^s1 Up /m);
    const s = await podman(['stop', '-t', '5', 's1']);
    t.equal(s.code, 0, s.err);
    t.match(
      (await podman(['ps', '-a', '--format', '{{.Names}} {{.Status}}'])).out,
      /^s1 Exited \(143\)/m,
      'TERM ended it: 143',
    );
    t.equal((await podman(['rm', 's1'])).code, 0);
    t.same(stateOf(id), [], 'rm removed our state');
    const k = await podman(['run', '-d', '--name', 's2', ...limits, image, 'sleep', '300']);
    t.equal(k.code, 0, k.err);
    t.equal((await podman(['kill', 's2'])).code, 0);
    const w = await podman(['wait', 's2']);
    t.equal(w.out.trim(), '137', 'kill (KILL): 137');
    const f = await podman(['rm', '-f', 's2']);
    t.equal(f.code, 0, f.err);
    t.same(stateOf(k.out.trim()), []);
  });

  t.test('init (created, never started), then rm: Podman deletes with --force; nothing is left', async (t) => {
    // Podman's DeleteContainer always passes `delete --force`, which kills a created container at its gate.
    const c = await podman(['create', '--name', 'i1', ...limits, image, 'sleep', '300']);
    t.equal(c.code, 0, c.err);
    const id = c.out.trim();
    const i = await podman(['init', 'i1']);
    t.equal(i.code, 0, i.err);
    t.equal(stateOf(id).length, 1, 'init ran our create');
    const pid = Number((await podman(['inspect', '--format', '{{.State.Pid}}', 'i1'])).out.trim());
    t.ok(pid > 0 && existsSync(`/proc/${pid}`), `the container's init waits at its gate (pid ${pid})`);
    t.match((await podman(['ps', '-a', '--format', '{{.Names}} {{.Status}}'])).out, /^i1 Initialized/m);
    const r = await podman(['rm', 'i1']);
    t.equal(r.code, 0, r.err);
    t.same(stateOf(id), [], 'our state is gone');
    t.notOk(existsSync(`/proc/${pid}`), 'its init is gone');
    t.equal((await podman(['ps', '-a', '-q'])).out, '', 'podman has no container left');
  });

  t.test('with cgroups (not --cgroups disabled): the limits Podman sets are felt inside', async (t) => {
    const fork = 'for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo forked';
    const p = await podman(['run', '--rm', '--pids-limit', '5', ...limits, image, 'sh', '-c', fork]);
    if (!isRoot) {
      // Rootless Podman on cgroup v1 sets no limits (it says so); the container runs without a cgroup.
      t.equal(p.code, 0, p.err);
      t.match(p.err, /not supported and ignored on cgroups V1 rootless/);
      t.equal(p.out, 'forked\n');
      return;
    }
    t.match(p.err, /can't fork/, `--pids-limit 5 holds inside\n${p.err}`);
    t.notMatch(p.out, /forked/);
    const cg = await podman(['run', '--rm', '--memory', '32m', ...limits, image, 'sh', '-c', 'cat /proc/self/cgroup']);
    t.equal(cg.code, 0, cg.err);
    t.match(cg.out, /^\d+:memory:\/.*libpod/m, 'in the cgroup Podman named (linux.cgroupsPath)');
    const m = await podman([
      'run',
      '--name',
      'oom1',
      '--memory',
      '32m',
      '--memory-swap',
      '32m',
      ...limits,
      image,
      'sh',
      '-c',
      'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}',
    ]);
    t.teardown(() => podman(['rm', '-f', 'oom1']));
    t.notMatch(m.out, /100000000/, `--memory 32m holds: the 100 MB string is never built\n${m.err}`);
    t.equal(m.code, 137, 'the OOM killer ended it');
  });
}
