// runtime-spec's lifecycle through bin/nodularity-oci, as containerd's shim and
// conmon drive it: create (the container waits; the create process is gone,
// the init reparented), state, start, kill, delete; the pid file; a container
// that dies before start; delete --force leaving no process; run in the
// foreground and its hooks at their points, a failing prestart hook destroying
// the container. Bundles on the busybox test rootfs.
import t from 'tap';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from 'node:fs';
import { createSpec } from '../../lib/index.js';
import { join } from 'node:path';
import { isRoot, scratch, uid } from '../helpers/env.js';
import { cleanEnv, makeBundle, OCI_BIN, oci, pidsTagged, runCmd, until, type Result } from './helpers.js';

/** `create` with its stdio on a file (as the runtime-tools suite and conmon give it); waits for create's exit. */
async function create(root: string, bundle: string, id: string, ...extra: string[]): Promise<Result & { log: string }> {
  const log = join(bundle, `stdio-${id}`);
  const fd = openSync(log, 'a+');
  try {
    const p = spawn(OCI_BIN, ['--root', root, 'create', '--bundle', bundle, ...extra, id], {
      env: cleanEnv,
      stdio: ['ignore', fd, fd],
    });
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
      p.once('exit', (c, s) => r([c, s])),
    );
    return { code, signal, out: '', err: readFileSync(log, 'utf8'), log };
  } finally {
    closeSync(fd);
  }
}

const stateOf = async (root: string, id: string) => {
  const r = await oci(root, 'state', id);
  return r.code === 0 ? (JSON.parse(r.out) as { status: string; pid: number; bundle: string; id: string }) : undefined;
};
const alive = (pid: number) =>
  existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

t.test(
  'create -> created (waiting, create gone) -> start -> running -> kill -> stopped -> delete -> nothing',
  async (t) => {
    const root = scratch(t);
    const tag = `oci-life-${process.pid}`;
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `echo payload ran; exec sleep 300 # ${tag}`]);
    const pidFile = join(bundle, 'pid');
    const c = await create(root, bundle, 'l1', '--pid-file', pidFile);
    t.equal(c.code, 0, c.err);
    const s1 = await stateOf(root, 'l1');
    t.equal(s1?.status, 'created', 'created');
    t.equal(s1?.id, 'l1');
    t.equal(s1?.bundle, bundle);
    t.equal(Number(readFileSync(pidFile, 'utf8')), s1?.pid, 'the pid file names the state pid');
    t.ok(alive(s1!.pid), 'the init outlives create');
    t.equal(readFileSync(c.log, 'utf8'), '', 'the payload has not run');
    t.ok(existsSync(join(root, 'l1', 'exec.fifo')), 'it waits at exec.fifo');
    t.notOk(existsSync(join(root, 'l1', 'lock')), 'create released its lock');
    const del = await oci(root, 'delete', 'l1');
    t.equal(del.code, 1, 'delete of a created container is refused (runtime-spec: not stopped)');
    t.match(del.err, /cannot delete container l1 that is not stopped: created/);

    const st = await oci(root, 'start', 'l1');
    t.equal(st.code, 0, st.err);
    await until('the payload prints', 10_000, () => readFileSync(c.log, 'utf8').includes('payload ran'));
    t.equal((await stateOf(root, 'l1'))?.status, 'running');
    t.notOk(existsSync(join(root, 'l1', 'exec.fifo')), 'the fifo is gone');
    const again = await oci(root, 'start', 'l1');
    t.equal(again.code, 1);
    t.match(again.err, /cannot start an already running container: l1/);
    const ps = await oci(root, 'ps', '--format', 'json', 'l1');
    const pids = JSON.parse(ps.out) as number[];
    t.ok(pids.includes(s1!.pid) && pids.length === 2, `ps: the init and the payload (${pids})`);
    t.ok(
      pidsTagged(tag).every((p) => pids.includes(p)) && pidsTagged(tag).length === 1,
      'the tagged payload is among them',
    );
    const busy = await oci(root, 'delete', 'l1');
    t.equal(busy.code, 1);
    t.match(busy.err, /that is not stopped: running/);

    const k = await oci(root, 'kill', 'l1', 'TERM');
    t.equal(k.code, 0, k.err);
    await until('stopped', 10_000, async () => (await stateOf(root, 'l1'))?.status === 'stopped');
    const k2 = await oci(root, 'kill', 'l1', 'KILL');
    t.equal(k2.code, 1, 'kill of a stopped container fails');
    t.match(k2.err, /container not running/, "containerd's phrase");
    const d = await oci(root, 'delete', 'l1');
    t.equal(d.code, 0, d.err);
    t.same(readdirSync(root), [], 'nothing of the container is left');
    t.same(pidsTagged(tag), [], 'no process is left');
    t.match((await oci(root, 'state', 'l1')).err, /container does not exist: l1/);
  },
);

t.test('a created container whose init dies before start is stopped; start says so', async (t) => {
  const root = scratch(t);
  const bundle = makeBundle(scratch(t), ['/bin/true']);
  t.equal((await create(root, bundle, 'd1')).code, 0);
  const s = await stateOf(root, 'd1');
  process.kill(s!.pid, 'SIGKILL');
  await until('stopped', 10_000, async () => (await stateOf(root, 'd1'))?.status === 'stopped');
  const st = await oci(root, 'start', 'd1');
  t.equal(st.code, 1);
  t.match(st.err, /cannot start a container that has stopped: d1/);
  t.equal((await oci(root, 'delete', 'd1')).code, 0);
  t.same(readdirSync(root), []);
});

t.test('kill TERM ends a created container (the init dies of it at the gate)', async (t) => {
  const root = scratch(t);
  const bundle = makeBundle(scratch(t), ['/bin/true']);
  t.equal((await create(root, bundle, 'k1')).code, 0);
  t.equal((await oci(root, 'kill', 'k1')).code, 0, 'default signal TERM');
  await until('stopped', 10_000, async () => (await stateOf(root, 'k1'))?.status === 'stopped');
  t.equal((await oci(root, 'delete', 'k1')).code, 0);
});

t.test('delete --force of a running container leaves no process (found by a tag in argv)', async (t) => {
  const root = scratch(t);
  const tag = `oci-force-${process.pid}`;
  const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `sleep 300 & sleep 301 & wait # ${tag}`]);
  t.equal((await create(root, bundle, 'f1')).code, 0);
  t.equal((await oci(root, 'start', 'f1')).code, 0);
  await until('the payload runs', 10_000, () => pidsTagged(tag).length > 0);
  const pids = JSON.parse((await oci(root, 'ps', '--format', 'json', 'f1')).out) as number[];
  t.ok(pids.length >= 4, `init, sh and two sleeps (${pids})`);
  const d = await oci(root, 'delete', '--force', 'f1');
  t.equal(d.code, 0, d.err);
  t.same(pidsTagged(tag), [], 'the tagged payload is gone');
  t.same(pids.filter(alive), [], 'every process the container had is gone (no orphan reparented anywhere)');
  t.same(readdirSync(root), []);
});

t.test('kill --all signals every process of the container, kill only its init', async (t) => {
  const root = scratch(t);
  const tag = `oci-all-${process.pid}`;
  // The shell survives USR1 (a trap, which its children do not inherit; the init forwards a plain kill to it, and
  // each one ends one `wait`); its two sleeps die of USR1 only if it reaches them.
  const bundle = makeBundle(scratch(t), [
    '/bin/sh',
    '-c',
    `trap 'echo got USR1' USR1; sleep 300 & sleep 301 & wait; wait; wait # ${tag}`,
  ]);
  t.equal((await create(root, bundle, 'a1')).code, 0);
  t.equal((await oci(root, 'start', 'a1')).code, 0);
  await until(
    'payload',
    10_000,
    async () => JSON.parse((await oci(root, 'ps', '--format', 'json', 'a1')).out).length >= 4,
  );
  t.equal((await oci(root, 'kill', 'a1', 'USR1')).code, 0);
  await new Promise((r) => setTimeout(r, 500));
  t.equal((await stateOf(root, 'a1'))?.status, 'running', 'the init forwarded USR1 to the shell, which survives it');
  const before = JSON.parse((await oci(root, 'ps', '--format', 'json', 'a1')).out) as number[];
  const all = await oci(root, 'kill', '--all', 'a1', 'USR1');
  t.equal(all.code, 0, all.err);
  await until('stopped', 10_000, async () => (await stateOf(root, 'a1'))?.status === 'stopped');
  t.same(before.filter(alive), [], 'the sleeps died of it, the shell ended, the container stopped');
  t.equal((await oci(root, 'delete', 'a1')).code, 0);
});

t.test(
  "run: foreground, the payload's status, hooks at their points with the state on stdin, nothing left",
  async (t) => {
    const root = scratch(t);
    const out = scratch(t);
    const hook = (kind: string) => [
      { path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/${kind}.json; echo ${kind} >> ${out}/order`] },
    ];
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `echo payload >> ${'/dev/null'}; exit 7`], {
      hooks: {
        createRuntime: hook('createRuntime'),
        prestart: hook('prestart'),
        poststart: [{ path: '/bin/false' }, ...hook('poststart')],
        poststop: hook('poststop'),
      },
    } as Record<string, unknown>);
    const r = await runCmd([OCI_BIN, '--root', root, 'run', '--bundle', bundle, 'r1']);
    t.equal(r.code, 7, `the payload's status\n${r.err}`);
    t.match(
      r.err,
      /level=warning msg="poststart hook #0 failed: \/bin\/false exited with status 1"/,
      'a failing poststart hook is a warning',
    );
    t.same(
      readFileSync(join(out, 'order'), 'utf8').trim().split('\n'),
      ['createRuntime', 'prestart', 'poststart', 'poststop'],
      'in lifecycle order; the next poststart hook still ran',
    );
    const pre = JSON.parse(readFileSync(join(out, 'prestart.json'), 'utf8'));
    t.equal(pre.id, 'r1');
    t.equal(pre.bundle, bundle);
    t.ok(pre.pid > 0, "prestart gets the init's pid");
    t.equal(JSON.parse(readFileSync(join(out, 'poststop.json'), 'utf8')).status, 'stopped');
    t.same(readdirSync(root), [], 'run removed the state');
  },
);

t.test(
  'a failing prestart hook fails start: the container is destroyed before its payload ran, poststop runs',
  async (t) => {
    const root = scratch(t);
    const out = scratch(t);
    const tag = `oci-prestart-${process.pid}`;
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `touch /payload-ran; sleep 300 # ${tag}`], {
      hooks: {
        prestart: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/prestart.json; echo nope >&2; exit 3`] }],
        poststop: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/poststop.json`] }],
      },
    } as Record<string, unknown>);
    const c = await create(root, bundle, 'p1');
    t.equal(c.code, 0, c.err);
    const st = await oci(root, 'start', 'p1');
    t.equal(st.code, 1);
    t.match(st.err, /prestart hook #0 failed: \/bin\/sh exited with status 3 \(output: nope\)/);
    t.equal(JSON.parse(readFileSync(join(out, 'prestart.json'), 'utf8')).status, 'created', 'prestart saw "created"');
    t.same(readdirSync(root), [], 'no state left');
    t.same(pidsTagged(tag), [], 'no container process left');
    t.notOk(existsSync(join(bundle, 'rootfs', 'payload-ran')), 'the payload never ran');
    t.equal(JSON.parse(readFileSync(join(out, 'poststop.json'), 'utf8')).status, 'stopped', 'poststop ran');
    const slow = makeBundle(scratch(t), ['/bin/true'], {
      hooks: { createRuntime: [{ path: '/bin/sleep', args: ['sleep', '30'], timeout: 1 }] },
    } as Record<string, unknown>);
    const t0 = Date.now();
    const s = await create(root, slow, 'p2');
    t.equal(s.code, 1);
    t.match(s.err, /createRuntime hook #0 failed: \/bin\/sleep did not finish within its timeout of 1 s; killed/);
    t.ok(Date.now() - t0 < 15_000, 'the timeout is kept');
    t.same(readdirSync(root), []);
  },
);

const NS = ['mnt', 'net', 'uts', 'ipc', 'pid', 'user'];
/** A shell hook script at PATH that records, in DIR/KIND.*, its stdin, its namespaces, its uid and what it sees. */
function hookScript(path: string, dir: string, kind: string, extra = ''): void {
  writeFileSync(
    path,
    `#!/bin/sh
cat > ${dir}/${kind}.json
for n in ${NS.join(' ')}; do echo "$n $(readlink /proc/self/ns/$n)"; done > ${dir}/${kind}.ns
id -u > ${dir}/${kind}.uid
echo ${kind} >> ${dir}/order
${extra}
`,
    { mode: 0o755 },
  );
}

t.test(
  'createContainer and startContainer hooks run in the container, in order, with the state on stdin',
  async (t) => {
    const root = scratch(t);
    const out = scratch(t);
    chmodSync(out, 0o777);
    const host = scratch(t);
    const tag = `oci-cchooks-${process.pid}`;
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', `echo payload >> /out/order; exec sleep 300 # ${tag}`], {
      hooks: {
        createRuntime: [{ path: '/bin/sh', args: ['sh', '-c', `echo createRuntime >> ${out}/order`] }],
        // A host path (runtime namespace), run before pivot_root: the container's mounts are under the rootfs path.
        createContainer: [{ path: join(host, 'cc.sh'), args: ['cc.sh'], env: ['HOOKVAR=cc'] }],
        prestart: [{ path: '/bin/sh', args: ['sh', '-c', `echo prestart >> ${out}/order`] }],
        // A path inside the container (it does not exist on the host), its output in a bind of OUT.
        startContainer: [{ path: '/sc.sh' }],
        poststart: [{ path: '/bin/sh', args: ['sh', '-c', `echo poststart >> ${out}/order`] }],
        poststop: [{ path: '/bin/sh', args: ['sh', '-c', `echo poststop >> ${out}/order`] }],
      },
      mounts: [
        ...(createSpec({ rootfs: 'rootfs', args: ['true'] }).mounts ?? []),
        { destination: '/out', source: out, type: 'bind', options: ['rbind'] },
      ],
    } as Record<string, unknown>);
    chmodSync(host, 0o755);
    hookScript(
      join(host, 'cc.sh'),
      out,
      'createContainer',
      `test -f ${bundle}/rootfs/proc/self/status && echo "proc at the rootfs path, env $HOOKVAR" > ${out}/createContainer.saw`,
    );
    hookScript(
      join(bundle, 'rootfs', 'sc.sh'),
      '/out',
      'startContainer',
      'test -e /sc.sh && echo root is the container > /out/startContainer.saw; grep ^Seccomp: /proc/self/status > /out/startContainer.seccomp',
    );
    t.notOk(existsSync('/sc.sh'), 'no /sc.sh on the host');

    const c = await create(root, bundle, 'cc1');
    t.equal(c.code, 0, c.err);
    const s = await stateOf(root, 'cc1');
    t.equal(s?.status, 'created');
    t.same(
      readFileSync(join(out, 'order'), 'utf8').split('\n'),
      ['createRuntime', 'createContainer', ''],
      'create ran them in order',
    );
    const initNs = NS.map((n) => `${n} ${readlinkSync(`/proc/${s!.pid}/ns/${n}`)}`).join('\n') + '\n';
    t.equal(
      readFileSync(join(out, 'createContainer.ns'), 'utf8'),
      initNs,
      "createContainer: every namespace of the container's",
    );
    t.not(
      readlinkSync(`/proc/${s!.pid}/ns/mnt`),
      readlinkSync('/proc/self/ns/mnt'),
      'which is not the host mount namespace',
    );
    t.equal(
      readFileSync(join(out, 'createContainer.saw'), 'utf8'),
      'proc at the rootfs path, env cc\n',
      'before pivot_root, its own env',
    );
    // The container's root where its user namespace maps 0 (root: no user namespace); unprivileged, the bundle
    // (createSpec's default) maps only the caller's own uid, the payload's, which the hook then runs as.
    t.equal(
      readFileSync(join(out, 'createContainer.uid'), 'utf8'),
      `${isRoot ? 0 : uid}\n`,
      "the container's root, or the only uid it maps",
    );
    const cs = JSON.parse(readFileSync(join(out, 'createContainer.json'), 'utf8'));
    t.match(cs, { ociVersion: /^1\./, id: 'cc1', status: 'creating', pid: s!.pid, bundle }, 'state on stdin');

    const st = await oci(root, 'start', 'cc1');
    t.equal(st.code, 0, st.err);
    await until('the payload ran', 10_000, () => readFileSync(join(out, 'order'), 'utf8').includes('poststart'));
    t.same(
      readFileSync(join(out, 'order'), 'utf8').trim().split('\n'),
      ['createRuntime', 'createContainer', 'prestart', 'startContainer', 'payload', 'poststart'],
      'start: prestart, startContainer, then the payload, then poststart',
    );
    t.equal(readFileSync(join(out, 'startContainer.ns'), 'utf8'), initNs, "startContainer: the container's namespaces");
    t.equal(readFileSync(join(out, 'startContainer.saw'), 'utf8'), 'root is the container\n', 'after pivot_root');
    // An image's program just before the payload runs under the container's seccomp filter (mode 2), as runc's.
    t.match(
      readFileSync(join(out, 'startContainer.seccomp'), 'utf8'),
      /^Seccomp:\s+2$/m,
      "under the container's filter",
    );
    t.match(JSON.parse(readFileSync(join(out, 'startContainer.json'), 'utf8')), {
      id: 'cc1',
      status: 'created',
      pid: s!.pid,
    });
    t.equal((await oci(root, 'delete', '--force', 'cc1')).code, 0);
    t.same(pidsTagged(tag), []);
    t.same(readdirSync(root), []);
  },
);

t.test(
  'a failing createContainer hook fails create, a failing startContainer hook fails start: nothing left',
  async (t) => {
    const root = scratch(t);
    const out = scratch(t);
    const tag = `oci-ccfail-${process.pid}`;
    const failing = makeBundle(scratch(t), ['/bin/sh', '-c', `touch /payload-ran; sleep 300 # ${tag}`], {
      hooks: {
        createContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'echo no way >&2; exit 4'] }],
        poststop: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/poststop-c.json`] }],
      },
    } as Record<string, unknown>);
    const c = await create(root, failing, 'cf1');
    t.equal(c.code, 1);
    t.match(c.err, /createContainer hook #0 failed: \/bin\/sh exited with status 4 \(output: no way\)/);
    t.same(readdirSync(root), [], 'no state dir');
    t.same(pidsTagged(tag), [], 'no process');
    t.notOk(existsSync(join(failing, 'rootfs', 'payload-ran')), 'the payload never ran');
    t.equal(JSON.parse(readFileSync(join(out, 'poststop-c.json'), 'utf8')).status, 'stopped', 'poststop ran');
    t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), failing, 'no mount of the bundle on the host');

    const late = makeBundle(scratch(t), ['/bin/sh', '-c', `touch /payload-ran; sleep 300 # ${tag}`], {
      hooks: {
        startContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'exit 5'] }],
        poststop: [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${out}/poststop-s.json`] }],
      },
    } as Record<string, unknown>);
    t.equal((await create(root, late, 'sf1')).code, 0);
    const st = await oci(root, 'start', 'sf1');
    t.equal(st.code, 1);
    t.match(st.err, /startContainer hook #0 failed: \/bin\/sh exited with status 5/);
    t.same(readdirSync(root), [], 'no state dir');
    t.same(pidsTagged(tag), [], 'no process');
    t.notOk(existsSync(join(late, 'rootfs', 'payload-ran')), 'the payload never ran');
    t.equal(JSON.parse(readFileSync(join(out, 'poststop-s.json'), 'utf8')).status, 'stopped', 'poststop ran');
    t.notMatch(readFileSync('/proc/self/mountinfo', 'utf8'), late, 'no mount of the bundle on the host');

    // A createContainer hook that outlives its timeout is killed (in the container) and fails create.
    const slowSecs = String(3000 + (process.pid % 1000)); // its command line, to look for it afterwards
    const slow = makeBundle(scratch(t), ['/bin/true'], {
      hooks: { createContainer: [{ path: '/bin/sleep', args: ['sleep', slowSecs], timeout: 1 }] },
    } as Record<string, unknown>);
    const t0 = Date.now();
    const sl = await create(root, slow, 'ct1');
    t.equal(sl.code, 1);
    t.match(sl.err, /createContainer hook #0 failed: \/bin\/sleep did not finish within its timeout of 1 s; killed/);
    t.ok(Date.now() - t0 < 15_000, 'the timeout is kept');
    t.same(pidsTagged(`sleep\0${slowSecs}\0`), [], 'the hook is gone');
    t.same(readdirSync(root), []);

    // --ignore-hooks: the same failing hooks are not run.
    const quiet = makeBundle(scratch(t), ['/bin/true'], {
      hooks: { createContainer: [{ path: '/bin/false' }], startContainer: [{ path: '/bin/false' }] },
    } as Record<string, unknown>);
    const ok = await runCmd([OCI_BIN, '--root', root, 'run', '--ignore-hooks', '--bundle', quiet, 'i1']);
    t.equal(ok.code, 0, ok.err);
    const no = await runCmd([OCI_BIN, '--root', root, 'run', '--bundle', quiet, 'i2']);
    t.equal(no.code, 255, "without it, run fails (runc's runtime failure status)");
    t.match(no.err, /createContainer hook #0 failed: \/bin\/false exited with status 1/);
    t.same(readdirSync(root), []);
  },
);
