// examples/pilot.ts run end to end as a user would run it: a process of its
// own, a job file, three images (the busybox test rootfs, a copy with another
// /etc/os-release, an OCI layout made with umoci), a /cvmfs stand-in. The
// checks read the pilot's JSON records and the steps' logs, in which every
// step says what it saw from inside.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { haveCommand, hostMounts, isRoot, repoRoot, testRootfs } from '../helpers/env.js';
import type { StepRecord } from '../../examples/pilot.js';

const pilot = join(repoRoot, 'examples', 'pilot.ts');

interface PilotRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  records: StepRecord[];
}

/** The environment a user would have: tap's own hooks (NODE_OPTIONS, its TAP_* and _TAPJS_* variables) left out. */
function pilotEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(NODE_OPTIONS$|TAP|_TAPJS)/.test(k)) env[k] = v;
  return { ...env, TS_NODE_TRANSPILE_ONLY: '1' };
}

/**
 * Run the pilot with the command the README gives (the tests' TypeScript
 * loader, not the rest of tap's). `onStderr` sees its stderr as it comes.
 */
function runPilot(
  args: string[],
  onStderr?: (all: string, child: ReturnType<typeof spawn>) => void,
): Promise<PilotRun> {
  // Through env(1), which execs node: tap's process-info hook adds itself to
  // NODE_OPTIONS of every child it sees spawned, and the pilot is not a test.
  const child = spawn(
    'env',
    ['-u', 'NODE_OPTIONS', process.execPath, '--import', '@tapjs/typescript/import', pilot, ...args],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: pilotEnv(),
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    onStderr?.(stderr, child);
  });
  return new Promise((res, rej) => {
    child.once('error', rej);
    child.once('close', (code, signal) => {
      const lines = stdout.split('\n').filter(Boolean);
      let records: StepRecord[];
      try {
        records = lines.map((l) => JSON.parse(l) as StepRecord);
      } catch (e) {
        return rej(
          new Error(`stdout holds more than JSON records (${(e as Error).message}):\n${stdout}\nstderr:\n${stderr}`),
        );
      }
      res({ code, signal, stderr, records });
    });
  });
}

/** rm -rf that copes with the read-only directories of unprivileged unpacks. */
function removeAll(dir: string): void {
  if (!existsSync(dir)) return;
  execFileSync('chmod', ['-R', 'u+rwX', dir]);
  rmSync(dir, { recursive: true, force: true });
}

/** A fresh directory, removed when the test ends. */
function workDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'nodularity-pilot-'));
  t.teardown(() => removeAll(dir));
  return dir;
}

/** A second directory image: the test rootfs with another /etc/os-release. */
function otherImage(dir: string): string {
  const image = join(dir, 'image-b');
  execFileSync('cp', ['-a', testRootfs(), image]);
  writeFileSync(join(image, 'etc/os-release'), 'NAME="pilot image B"\nID=pilot-b\n');
  return image;
}

/** An OCI layout (tag `v1`) of the test rootfs, made with umoci; returns its path and manifest digest. */
function ociImage(dir: string): { layout: string; digest: string } {
  if (!haveCommand('umoci')) throw new Error('umoci is needed for the OCI image of this test: apt-get install umoci');
  const layout = join(dir, 'layout');
  const bundle = join(dir, 'bundle');
  const umoci = (...a: string[]) => execFileSync('umoci', a, { stdio: ['ignore', 'ignore', 'pipe'] });
  umoci('init', '--layout', layout);
  umoci('new', '--image', `${layout}:v1`);
  umoci('unpack', ...(isRoot ? [] : ['--rootless']), '--image', `${layout}:v1`, bundle);
  execFileSync('cp', ['-a', `${testRootfs()}/.`, join(bundle, 'rootfs')]);
  writeFileSync(join(bundle, 'rootfs/etc/os-release'), 'NAME="pilot OCI image"\nID=pilot-oci\n');
  umoci('repack', '--image', `${layout}:v1`, bundle);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  return { layout, digest: index.manifests[0].digest };
}

/** Every step reports, one `key=value` a line, what it sees from inside. */
const REPORT =
  'echo "pid=$$"; echo "pidns=$(readlink /proc/self/ns/pid)"; echo "job=$PILOT_JOB_ID"; echo "pwd=$(pwd)"; ' +
  'echo "os=$(. /etc/os-release; echo $NAME)"; echo "cvmfs=$(cat /cvmfs/atlas.cern.ch/marker)"; ' +
  'echo "tmp=$(ls -A /tmp)"; touch /tmp/left-by-an-earlier-step';
const job = (id: string, image: string, payloadTail = '') => ({
  id,
  image,
  stageIn: ['/bin/sh', '-c', `${REPORT}; echo "input for ${id}" > input.txt`],
  payload: [
    '/bin/sh',
    '-c',
    `${REPORT}; echo "input=$(cat input.txt)"; echo "output of ${id}" > output.txt${payloadTail}`,
  ],
  stageOut: ['/bin/sh', '-c', `${REPORT}; echo "output=$(cat output.txt)"`],
});

/** The key=value lines of a step's log. */
function report(r: StepRecord): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(r.log!, 'utf8').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

t.test('jobs at once, each step in its own container, with its own image, scratch and /cvmfs', async (t) => {
  const dir = workDir(t);
  const scratchRoot = join(dir, 'scratch');
  const cvmfs = join(dir, 'cvmfs');
  const logs = join(dir, 'logs');
  const cache = join(dir, 'cache');
  mkdirSync(scratchRoot);
  mkdirSync(join(cvmfs, 'atlas.cern.ch'), { recursive: true });
  writeFileSync(join(cvmfs, 'atlas.cern.ch/marker'), 'stand-in repository\n');
  chmodSync(dir, 0o755);
  const imageB = otherImage(dir);
  const oci = ociImage(dir);
  const jobs = [
    job('alpha', testRootfs()),
    job('beta', imageB),
    job('gamma', `oci:${oci.layout}:v1`, '; exit 7'),
    job('broken', join(dir, 'no-such-image')),
  ];
  const jobFile = join(dir, 'jobs.json');
  writeFileSync(jobFile, JSON.stringify(jobs, null, 2));

  const r = await runPilot([
    jobFile,
    '--parallel',
    '3',
    '--scratch-root',
    scratchRoot,
    '--cvmfs',
    cvmfs,
    '--logs',
    logs,
    '--cache',
    cache,
  ]);
  t.equal(r.code, 1, `one job failed and one could not start, so the pilot exits 1; stderr:\n${r.stderr}`);
  const rec = (id: string, step: string) => r.records.find((x) => x.job === id && x.step === step)!;
  t.equal(r.records.length, 12, 'one record per step of every job');
  for (const j of jobs)
    for (const step of ['stage-in', 'payload', 'stage-out']) t.ok(rec(j.id, step), `a record for ${j.id} ${step}`);

  // The two directory jobs ran all their steps.
  const launched = r.records.filter((x) => x.pid !== null);
  for (const id of ['alpha', 'beta']) {
    for (const step of ['stage-in', 'payload', 'stage-out']) {
      const x = rec(id, step);
      t.equal(x.status, 'ok', `${id} ${step} ok (${x.error ?? ''})`);
      t.equal(x.exitCode, 0);
      t.equal(x.signal, null);
      t.equal(x.digest, 'directory', 'a directory image is reported as such');
      t.same(
        x.argv,
        jobs.find((j) => j.id === id)![step === 'stage-in' ? 'stageIn' : step === 'payload' ? 'payload' : 'stageOut'],
      );
      t.ok(x.durationMs! > 0, 'a wall time');
      t.ok(x.rusage && x.rusage.userMs >= 0 && x.rusage.sysMs >= 0 && x.rusage.maxRssKiB! > 0, 'rusage');
    }
  }

  // Each step in its own container: its own host pid, a PID namespace in
  // which it is a low pid (the init is 1), a fresh /tmp although every step
  // leaves a file there. (Not "a different pid-namespace inode per step":
  // the kernel reuses the inode number of a namespace that is gone.)
  t.equal(launched.length, 8, 'alpha, beta: 3 steps; gamma: stage-in and payload');
  t.equal(new Set(launched.map((x) => x.pid)).size, launched.length, 'a different host pid per step');
  const reports = launched.map(report);
  const hostNs = execFileSync('readlink', ['/proc/self/ns/pid'], { encoding: 'utf8' }).trim();
  for (const [i, x] of reports.entries()) {
    const what = `${launched[i].job} ${launched[i].step}`;
    t.match(x.pidns, /^pid:\[\d+\]$/);
    t.not(x.pidns, hostNs, `${what}: not the host's PID namespace`);
    t.ok(Number(x.pid) >= 1 && Number(x.pid) <= 2, `${what}: sees itself as pid ${x.pid}`);
    // (It may hold the mount point of the contained home, when $HOME is under /tmp.)
    t.notMatch(x.tmp, /left-by-an-earlier-step/, `${what}: a fresh /tmp`);
    t.equal(x.job, launched[i].job, `${what}: PILOT_JOB_ID passed`);
    t.equal(x.pwd, '/srv', `${what}: working directory is the job's scratch dir`);
    t.equal(x.cvmfs, 'stand-in repository', `${what}: /cvmfs bound`);
  }

  // The scratch dir carries data from step to step, per job.
  for (const id of ['alpha', 'beta', 'gamma'])
    t.equal(report(rec(id, 'payload')).input, `input for ${id}`, `${id}: the payload reads what stage-in wrote`);
  for (const id of ['alpha', 'beta'])
    t.equal(report(rec(id, 'stage-out')).output, `output of ${id}`, `${id}: stage-out reads what the payload wrote`);

  // Per-job images.
  t.equal(report(rec('alpha', 'payload')).os, 'nodularity busybox');
  t.equal(report(rec('beta', 'payload')).os, 'pilot image B');
  t.equal(report(rec('gamma', 'payload')).os, 'pilot OCI image');

  // The pulled image: its manifest digest; the failing payload stops the job.
  t.equal(rec('gamma', 'stage-in').digest, oci.digest, 'an oci: image is reported with its manifest digest');
  t.match(oci.digest, /^sha256:[0-9a-f]{64}$/);
  t.equal(rec('gamma', 'stage-in').status, 'ok');
  t.equal(rec('gamma', 'payload').status, 'failed');
  t.equal(rec('gamma', 'payload').exitCode, 7);
  t.equal(rec('gamma', 'stage-out').status, 'skipped', 'after a failing payload, stage-out does not run');
  t.equal(rec('gamma', 'stage-out').pid, null);
  t.match(rec('gamma', 'stage-out').error, /payload ended with exit 7/);

  // A bad image is a per-job launch failure, not a crash of the pilot.
  t.equal(rec('broken', 'stage-in').status, 'error');
  t.match(rec('broken', 'stage-in').error, /no-such-image does not exist/);
  t.equal(rec('broken', 'payload').status, 'skipped');
  t.equal(rec('broken', 'stage-out').status, 'skipped');

  t.match(r.stderr, /^job +step +status +exit +wall ms +user ms +sys ms +maxRSS KiB +image$/m, 'the table at the end');
  t.match(r.stderr, /2 of 4 jobs succeeded; failed: gamma, broken/);
  t.same(readdirSync(scratchRoot), [], 'no scratch dir left');
  t.notOk(hostMounts().includes(scratchRoot), 'nothing mounted on the host');
});

t.test('--keep-scratch keeps the job dir with what the steps wrote', async (t) => {
  const dir = workDir(t);
  const cvmfs = join(dir, 'cvmfs');
  mkdirSync(join(cvmfs, 'atlas.cern.ch'), { recursive: true });
  writeFileSync(join(cvmfs, 'atlas.cern.ch/marker'), 'stand-in repository\n');
  const jobFile = join(dir, 'jobs.json');
  writeFileSync(jobFile, JSON.stringify([job('k1', testRootfs())]));
  const r = await runPilot([jobFile, '--scratch-root', dir, '--cvmfs', cvmfs, '--keep-scratch']);
  t.equal(r.code, 0, r.stderr);
  const kept = readdirSync(dir).filter((f) => f.startsWith('pilot-k1-'));
  t.equal(kept.length, 1, 'the scratch dir is still there');
  t.match(r.stderr, `k1 scratch kept in ${join(dir, kept[0])}`, 'and its path is printed');
  t.equal(readFileSync(join(dir, kept[0], 'output.txt'), 'utf8'), 'output of k1\n');
  t.match(r.stderr, /^\[k1\/stage-out\] output=output of k1$/m, 'without --logs, step output goes to stderr, prefixed');
});

t.test('SIGTERM stops the pilot: the running payload is killed, later steps skipped, scratch removed', async (t) => {
  const dir = workDir(t);
  const scratchRoot = join(dir, 'scratch');
  const cvmfs = join(dir, 'cvmfs');
  mkdirSync(scratchRoot);
  mkdirSync(cvmfs);
  const jobFile = join(dir, 'jobs.json');
  writeFileSync(
    jobFile,
    JSON.stringify([
      {
        id: 'long',
        image: testRootfs(),
        stageIn: ['/bin/true'],
        payload: ['/bin/sh', '-c', 'echo running; exec sleep 600'],
        stageOut: ['/bin/true'],
      },
    ]),
  );
  let sent = false;
  const r = await runPilot([jobFile, '--scratch-root', scratchRoot, '--cvmfs', cvmfs], (err, child) => {
    // The payload printed its line: it runs, so the signal reaches it.
    if (!sent && err.includes('[long/payload] running')) {
      sent = true;
      child.kill('SIGTERM');
    }
  });
  t.ok(sent, 'the payload started');
  t.equal(r.code, 143, `the pilot exits 128+SIGTERM; stderr:\n${r.stderr}`);
  const payload = r.records.find((x) => x.step === 'payload')!;
  t.equal(payload.status, 'failed');
  t.equal(payload.signal, 'SIGTERM', 'the payload was killed by the forwarded SIGTERM');
  t.equal(r.records.find((x) => x.step === 'stage-out')!.status, 'skipped');
  t.match(r.stderr, /SIGTERM, stopping 1 running container/);
  t.same(readdirSync(scratchRoot), [], 'no scratch dir left');
});

t.test('--instance: the three steps of a job in one instance, stopped when the job ends', async (t) => {
  const dir = workDir(t);
  const scratchRoot = join(dir, 'scratch');
  const cvmfs = join(dir, 'cvmfs');
  const logs = join(dir, 'logs');
  const store = join(dir, 'instances');
  mkdirSync(scratchRoot);
  mkdirSync(join(cvmfs, 'atlas.cern.ch'), { recursive: true });
  writeFileSync(join(cvmfs, 'atlas.cern.ch/marker'), 'stand-in repository\n');
  chmodSync(dir, 0o755);
  const jobFile = join(dir, 'jobs.json');
  writeFileSync(jobFile, JSON.stringify([job('i1', testRootfs()), job('i2', testRootfs(), '; exit 5')]));
  const r = await runPilot([
    jobFile,
    '--instance',
    '--instance-dir',
    store,
    '--scratch-root',
    scratchRoot,
    '--cvmfs',
    cvmfs,
    '--logs',
    logs,
  ]);
  t.equal(r.code, 1, `i2's payload fails; stderr:\n${r.stderr}`);
  const rec = (id: string, step: string) => r.records.find((x) => x.job === id && x.step === step)!;
  for (const step of ['stage-in', 'payload', 'stage-out']) {
    t.equal(rec('i1', step).status, 'ok', `i1 ${step} (${rec('i1', step).error ?? ''})`);
    t.match(rec('i1', step).instance, /^pilot-i1-\d+$/, 'ran in the job instance');
  }
  const steps = ['stage-in', 'payload', 'stage-out'].map((s) => report(rec('i1', s)));
  t.equal(new Set(steps.map((x) => x.pidns)).size, 1, 'one PID namespace for the three steps');
  t.match(steps[1].tmp, /left-by-an-earlier-step/, 'one /tmp: the payload sees what stage-in left');
  t.equal(steps[2].output, 'output of i1', 'the scratch dir carries data');
  t.equal(steps[1].cvmfs, 'stand-in repository', '/cvmfs bound in the instance');
  t.equal(steps[1].job, 'i1');
  t.equal(steps[1].pwd, '/srv');
  t.equal(rec('i2', 'payload').exitCode, 5);
  t.equal(rec('i2', 'stage-out').status, 'skipped');
  const { recorded } = await import('../instances/helpers.js');
  t.same(recorded(store), [], 'both instances stopped and their records removed when their jobs ended');
  t.same(readdirSync(scratchRoot), [], 'no scratch dir left');
});

t.test('--vobox: busybox httpd as an instance on 127.0.0.1, reached from the host, stopped cleanly', async (t) => {
  const dir = workDir(t);
  const store = join(dir, 'instances');
  const { freePort, recorded, running } = await import('../instances/helpers.js');
  const port = await freePort();
  chmodSync(dir, 0o755);
  const r = await runPilot(['--vobox', String(port), '--instance-dir', store, '--scratch-root', dir]);
  t.equal(r.code, 0, r.stderr);
  const [served, stopped] = r.records as unknown as [
    { status: string; body: string; url: string; pid: number },
    { stopped: boolean; killed: boolean },
  ];
  t.equal(served.status, 'ok');
  t.match(served.body, /^VO-box of pilot \d+\n$/, 'the page came from the service');
  t.equal(served.url, `http://127.0.0.1:${port}/index.html`);
  t.same(stopped, { service: 'vobox', stopped: true, killed: false }, 'httpd ended on SIGTERM');
  t.notOk(running(served.pid), 'no process of the service left');
  t.same(recorded(store), []);
  const { connect } = await import('node:net');
  const refused = await new Promise<boolean>((res) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), res(false)));
    s.once('error', () => res(true));
  });
  t.ok(refused, 'the port is closed');
  const bad = await runPilot(['--vobox', 'eighty']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--vobox must be a TCP port, not eighty/);
});
