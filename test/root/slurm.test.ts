// test-runner: serial — its daemons bind ports found free a moment before, and munged/slurmd are host-wide
// Slurm's `srun --container=BUNDLE` through nodularity: a real one-node
// cluster (munged, slurmctld, slurmd) with examples/slurm/oci.conf, job steps
// run as root and as the unprivileged test user, checked from inside the
// container. Root-only (test/root/): the daemons need root; the unprivileged
// path is covered here by running srun as that user.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { haveCommand, repoRoot, testRootfs } from '../helpers/env.js';
import { writeCliWrapper } from '../helpers/cli.js';
import { clusterLogs, SLURM_BINARIES, startCluster, type Cluster } from './slurm-cluster.js';

const TEST_USER = process.env.NODULARITY_TEST_USER || 'nodularity-test';

/** Our environment without tap's hooks (NODE_OPTIONS loads its process-info recorder into every node). */
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP')),
);

interface Result {
  code: number | null;
  signal: string | null;
  out: string;
  err: string;
}

function runCmd(
  argv: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(argv[0], argv.slice(1), {
      env: opts.env ?? cleanEnv,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '',
      err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    // A safety net against a hung step, not a timing assertion: the kill shows up as a failure.
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

/** A bundle: the busybox test rootfs plus /bundle-marker holding TOKEN, config.json as given. */
function makeBundle(dir: string, token: string, extra: Record<string, unknown> = {}): void {
  mkdirSync(dir, { mode: 0o755 });
  cpSync(testRootfs(), join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(dir, 'rootfs', 'bundle-marker'), `${token}\n`, { mode: 0o644 });
  // Slurm replaces process.args with the step's argv.
  const spec = { ...createSpec({ rootfs: 'rootfs', args: ['/bin/false'] }), ...extra };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2), { mode: 0o644 });
}

/** Lines `key:value` printed by the payload script below. */
function fields(out: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) r[line.slice(0, i)] = line.slice(i + 1);
  }
  return r;
}

const ok = SLURM_BINARIES.every(haveCommand);
t.ok(ok, `${SLURM_BINARIES.join(', ')} are installed (Debian packages slurm-wlm, munge, util-linux)`);
t.equal(process.geteuid!(), 0, 'runs as root (test/root/ files run in the root pass only)');
let testUid = -1,
  testGid = -1;
try {
  testUid = Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8' }).trim());
  testGid = Number(execFileSync('id', ['-g', TEST_USER], { encoding: 'utf8' }).trim());
} catch {
  /* asserted below */
}
t.ok(testUid > 0, `user ${TEST_USER} exists (bash scripts/test-user.sh)`);

if (ok && process.geteuid!() === 0 && testUid > 0) {
  // Everything under one directory the job user can traverse but not write.
  const base = mkdtempSync(join(tmpdir(), 'nodularity-slurm-'));
  chmodSync(base, 0o755);
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const cli = join(base, 'nodularity');
  writeCliWrapper(cli);
  const token = randomBytes(8).toString('hex');
  const bundle = join(base, 'bundle');
  makeBundle(bundle, token);
  // A bundle with hooks: each writes the state JSON it gets on stdin to a file the job's user may write.
  const hookOut = join(base, 'hook-out');
  mkdirSync(hookOut, { mode: 0o755 });
  const hooked = join(base, 'hooked');
  const hook = (kind: string) => [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${hookOut}/${kind}.json`] }];
  makeBundle(hooked, token, {
    hooks: {
      createRuntime: hook('createRuntime'),
      prestart: hook('prestart'),
      poststart: hook('poststart'),
      poststop: hook('poststop'),
    },
  });
  const example = readFileSync(join(repoRoot, 'examples', 'slurm', 'oci.conf'), 'utf8');
  t.match(example, /^RunTimeRun=/m, 'examples/slurm/oci.conf sets RunTimeRun');
  const ociConf = example.replaceAll('/usr/local/bin/nodularity', cli);

  let cluster: Cluster | undefined;
  t.before(async () => {
    mkdirSync(join(base, 'slurm'), { mode: 0o755 });
    cluster = await startCluster(join(base, 'slurm'), ociConf);
  });
  // Also when a test failed or threw (the last subtest then never ran).
  t.teardown(async () => {
    await cluster?.stop();
  });

  const hostPidNs = readlinkSync('/proc/self/ns/pid');
  const hostUserNs = readlinkSync('/proc/self/ns/user');
  // What the step prints: each line `key:value`; then it exits 37.
  const script = [
    'echo out:hello from the step',
    'echo uid:$(id -u)',
    'echo gid:$(id -g)',
    'echo pid:$$',
    'echo pidns:$(readlink /proc/self/ns/pid)',
    'echo userns:$(readlink /proc/self/ns/user)',
    'echo uidmap:$(cat /proc/self/uid_map)',
    'echo marker:$(cat /bundle-marker)',
    `echo hostconf:$(test -e ${join(base, 'slurm', 'slurm.conf')} && echo visible || echo absent)`,
    'echo job:$SLURM_JOB_ID',
    'exit 37',
  ].join('; ');

  const srunAs = (who: 'root' | 'user', args: string[]) => {
    const prefix = who === 'root' ? [] : ['setpriv', `--reuid=${testUid}`, `--regid=${testGid}`, '--clear-groups'];
    return runCmd([...prefix, 'srun', '--quiet', ...args], { env: cluster!.env, cwd: base });
  };

  for (const who of ['root', 'user'] as const) {
    const uid = who === 'root' ? 0 : testUid;
    const gid = who === 'root' ? 0 : testGid;
    t.test(
      `srun --container as ${who === 'root' ? 'root' : TEST_USER}: the step runs in the bundle, as the job's user, and its exit status comes back`,
      async (t) => {
        const r = await srunAs(who, [`--container=${bundle}`, '/bin/sh', '-c', script]);
        const f = fields(r.out);
        t.equal(r.code, 37, `srun exits with the payload's 37\n${r.err}${r.code === 37 ? '' : clusterLogs(cluster!)}`);
        t.equal(f.out, 'hello from the step', "the step's stdout reaches srun");
        t.equal(f.marker, token, "the root file system is the bundle's (its marker file is there)");
        t.equal(f.hostconf, 'absent', 'host files are not visible');
        t.equal(f.uid, String(uid), `uid inside is the job user's (${uid})`);
        t.equal(f.gid, String(gid), `gid inside is the job user's (${gid})`);
        t.equal(
          f.uidmap?.trim().split(/\s+/).join(' '),
          `${uid} ${uid} 1`,
          'its uid maps to the same uid outside, and only that',
        );
        t.not(f.pidns, hostPidNs, 'a new PID namespace');
        t.not(f.userns, hostUserNs, 'a new user namespace');
        t.ok(Number(f.pid) <= 2, `the step is PID 1 or the init's first child (pid ${f.pid})`);
        t.match(f.job, /^\d+$/, "Slurm's job environment is passed in");
      },
    );
  }

  t.test("a bundle's OCI hooks run as the job's user at their lifecycle points, the state JSON on stdin", async (t) => {
    chownSync(hookOut, testUid, testGid);
    const r = await srunAs('user', [`--container=${hooked}`, '/bin/sh', '-c', 'exit 5']);
    t.equal(r.code, 5, `the step's own status comes back\n${r.err}`);
    for (const [kind, status] of [
      ['createRuntime', 'creating'],
      ['prestart', 'created'],
      ['poststart', 'running'],
      ['poststop', 'stopped'],
    ] as const) {
      let st: { status?: string; id?: string; bundle?: string; pid?: number } = {};
      try {
        st = JSON.parse(readFileSync(join(hookOut, `${kind}.json`), 'utf8'));
      } catch (e) {
        t.fail(`${kind} hook output: ${(e as Error).message}`);
        continue;
      }
      t.equal(st.status, status, `${kind}: status ${status}`);
      t.match(st.id, /\.\d+\./, `${kind}: the id Slurm gave`);
      t.ok(typeof st.bundle === 'string' && st.bundle.length > 0, `${kind}: the bundle Slurm made`);
      if (kind !== 'poststop') t.ok(Number(st.pid) > 0, `${kind}: the init's pid`);
    }
  });

  t.test(
    "oci state, kill and delete find a running container; a state file may not point at another user's process",
    async (t) => {
      const root = join(base, 'state');
      mkdirSync(root, { mode: 0o700 });
      const sleeper = join(base, 'sleeper');
      mkdirSync(sleeper, { mode: 0o755 });
      writeFileSync(
        join(sleeper, 'config.json'),
        JSON.stringify(createSpec({ rootfs: join(bundle, 'rootfs'), args: ['/bin/sh', '-c', 'exec sleep 120'] })),
      );
      const nod = (...a: string[]) => runCmd([cli, 'oci', `--root=${root}`, ...a]);
      const run = nod('run', '--bundle', sleeper, 'c1');
      // Wait for the record to name the init (each CLI call costs a second or two of TypeScript loading).
      const recorded = () => {
        try {
          return JSON.parse(readFileSync(join(root, 'c1', 'state.json'), 'utf8')).pid > 0;
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 300 && !recorded(); i++) await new Promise((r) => setTimeout(r, 100));
      const s1 = await nod('state', 'c1');
      t.equal(s1.code, 0, s1.err);
      const state = JSON.parse(s1.out || '{}') as { status?: string; pid?: number; bundle?: string };
      t.equal(state.status, 'running', 'state says running');
      t.equal(state.bundle, sleeper);
      t.match(
        readFileSync(`/proc/${state.pid}/cmdline`, 'latin1'),
        /nodularity-init|sleep/,
        "its pid is the container's init",
      );

      // A job user's file naming a root process: root (as Slurm runs RunTimeKill) must not signal it.
      const victim = spawn('sleep', ['120'], { stdio: 'ignore' });
      t.teardown(() => {
        victim.kill('SIGKILL');
      });
      const victimStat = () => readFileSync(`/proc/${victim.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      mkdirSync(join(root, 'c2'), { mode: 0o700 });
      chownSync(join(root, 'c2'), testUid, testGid);
      const forged = join(root, 'c2', 'state.json');
      writeFileSync(
        forged,
        JSON.stringify({
          ociVersion: '1.0.0',
          id: 'c2',
          bundle: sleeper,
          created: '',
          pid: victim.pid,
          pidStart: victimStat()[19],
          runtimePid: 0,
          runtimeStart: '',
        }),
      );
      chownSync(forged, testUid, testGid);
      mkdirSync(join(root, 'c3'), { mode: 0o700 });
      const link = join(root, 'c3', 'state.json');
      execFileSync('ln', ['-s', '/etc/shadow', link]);
      // Independent calls, at once: each costs a second or more of TypeScript loading.
      const [del, k2, s3] = await Promise.all([nod('delete', 'c1'), nod('kill', 'c2', 'KILL'), nod('state', 'c3')]);
      t.equal(del.code, 1, "runc's status for a failed verb");
      t.match(del.err, /cannot delete container c1 that is not stopped: running/);
      t.equal(k2.code, 1);
      t.match(k2.err, new RegExp(`pid ${victim.pid} does not belong to uid ${testUid}`));
      t.equal(victimStat()[0], 'S', 'the root process was not signalled (still sleeping, not a zombie)');
      t.equal(s3.code, 1);
      t.match(s3.err, /state file .*c3\/state\.json is a symbolic link/);
      t.notMatch(s3.out + s3.err, /root:/, 'nothing of the target is echoed');
      rmSync(join(root, 'c2'), { recursive: true });
      rmSync(join(root, 'c3'), { recursive: true });

      const k1 = await nod('kill', 'c1', 'USR1');
      t.equal(k1.code, 0, k1.err);
      const r = await run;
      t.equal(r.code, 128 + 10, 'the payload died of SIGUSR1, and oci run says so');
      t.notOk(existsSync(join(root, 'c1')), 'oci run removed its state directory');
      const [gone, forced] = await Promise.all([nod('state', 'c1'), nod('delete', '--force', 'c1')]);
      t.equal(gone.code, 1);
      t.match(gone.err, /container does not exist: c1/);
      t.equal(forced.code, 0, 'delete --force of a container that is gone succeeds');
    },
  );

  t.test('the daemons stop and leave no process behind', async (t) => {
    const strays = await cluster!.stop();
    t.same(strays, [], 'no slurmstepd, runtime or payload outlives the daemons');
    t.same(
      readdirSync(join(base, 'slurm', 'spool')).filter((e) => e.startsWith('oci-job')),
      [],
      "Slurm removed every step's spool directory (our state files were gone)",
    );
  });
}
