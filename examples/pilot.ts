// A small grid pilot on nodularity: it takes a list of jobs and runs several
// at once; each job gets its own scratch directory and its own image, and
// its three steps (stage-in, payload, stage-out) each run in a container of
// their own, as a pilot runs an untrusted payload with Apptainer:
//
//   apptainer exec --containall -B SCRATCH:/srv --pwd /srv -B /cvmfs:/cvmfs:ro \
//                  --env PILOT_JOB_ID=ID IMAGE ARGV...
//
// For every step it prints one JSON line on stdout (job, step, status, image
// and its digest, argv, pid, exit code/signal, wall time, CPU time, max RSS),
// and a table of all steps on stderr at the end. A step that exits non-zero
// (or cannot be launched: bad image, missing bind source) stops its job; the
// job's later steps are recorded as skipped and the other jobs go on.
//
// Run it from the repository, after `npm install` built the addon, with the
// TypeScript loader the tests use (Node 20 has no --experimental-strip-types):
//
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import examples/pilot.ts [JOBS.json] [options]
//
//   JOBS.json          [{"id", "image", "stageIn", "payload", "stageOut", "env"?, "timeoutMs"?}, ...]
//                      (or {"jobs": [...]}); a step is an argv array, or absent
//                      to skip it. A relative image directory is taken from the
//                      file's directory. Without a file: three demo jobs on the
//                      busybox image of `npm run demo`, one of which fails.
//   --parallel N       jobs at once (default 2)
//   --scratch-root DIR where job scratch directories are made (default $TMPDIR)
//   --keep-scratch     leave the scratch directories (their paths go to stderr)
//   --cvmfs DIR        bind DIR as /cvmfs (a stand-in where CernVM-FS is not
//                      installed); default /cvmfs when the host has it
//   --logs DIR         write each step's stdout+stderr to DIR/JOB/STEP.log
//                      (default: copy them to stderr, prefixed by job/step)
//   --cache DIR        image cache for oci:, docker-archive:, docker:// images
//   --instance         run each job's three steps in ONE instance (Apptainer's
//                      `instance start` + `exec instance://`): one set of
//                      namespaces, one /tmp, the scratch bound once; the
//                      instance is stopped when the job ends
//   --instance-dir DIR where instances are recorded (default
//                      $NODULARITY_INSTANCE_DIR, else ~/.nodularity/instances)
//   --vobox PORT       instead of jobs: a VO-box style service, busybox httpd
//                      on 127.0.0.1:PORT as an instance (its startscript),
//                      probed from the host, then stopped cleanly; one JSON
//                      line for each
//
// Exit status: 0 when every job succeeded, 1 when one failed, 2 for a bad
// command line or job file, 130/143 after SIGINT/SIGTERM (which kill the
// running containers; a second one kills them with SIGKILL).
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { get } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { exec, startInstance, type ImageContainer, type ExecOptions, type Instance } from '../lib/index.js';

/** Where the job's scratch directory appears inside its containers. */
const JOB_DIR = '/srv';
const STEPS = [
  ['stage-in', 'stageIn'],
  ['payload', 'payload'],
  ['stage-out', 'stageOut'],
] as const;
type StepName = (typeof STEPS)[number][0];

interface Job {
  id: string;
  image: string;
  stageIn?: string[];
  payload?: string[];
  stageOut?: string[];
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface StepRecord {
  job: string;
  step: StepName;
  /** ok: exit 0; failed: non-zero exit or killed; error: not launched; skipped: an earlier step did not succeed. */
  status: 'ok' | 'failed' | 'error' | 'skipped';
  image: string;
  /** Manifest digest of a pulled image, "directory" for an unpacked directory, null if never resolved. */
  digest: string | null;
  argv: string[];
  /** Host pid of the container's init. */
  pid: number | null;
  exitCode: number | null;
  signal: string | null;
  durationMs: number | null;
  rusage: { userMs: number; sysMs: number; maxRssKiB: number | null } | null;
  error?: string;
  log?: string;
  /** The instance the step ran in (--instance). */
  instance?: string;
}

const { values: opt, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        parallel: { type: 'string', default: '2' },
        'scratch-root': { type: 'string', default: tmpdir() },
        'keep-scratch': { type: 'boolean', default: false },
        cvmfs: { type: 'string' },
        logs: { type: 'string' },
        cache: { type: 'string' },
        instance: { type: 'boolean', default: false },
        'instance-dir': { type: 'string' },
        vobox: { type: 'string' },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
})();

function usage(message: string): never {
  process.stderr.write(
    `pilot: ${message}\nusage: pilot.ts [JOBS.json] [--parallel N] [--scratch-root DIR] [--keep-scratch] [--cvmfs DIR] [--logs DIR] [--cache DIR] [--instance] [--instance-dir DIR] [--vobox PORT]\n`,
  );
  process.exit(2);
}

function loadJobs(file: string): Job[] {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return usage(`cannot read ${file}: ${(e as Error).message}`);
  }
  const list = Array.isArray(data) ? data : (data as { jobs?: unknown }).jobs;
  if (!Array.isArray(list) || list.length === 0)
    return usage(`${file}: expected a non-empty array of jobs, or {"jobs": [...]}`);
  const isArgv = (a: unknown) =>
    a === undefined || (Array.isArray(a) && a.length > 0 && a.every((s) => typeof s === 'string'));
  const seen = new Set<string>();
  return list.map((j: Job, i) => {
    const where = `${file}: job ${i}`;
    if (typeof j?.id !== 'string' || !/^[\w.-]+$/.test(j.id))
      usage(`${where}: "id" must be a name of letters, digits, . _ -`);
    if (seen.has(j.id)) usage(`${where}: id ${j.id} is used twice`);
    seen.add(j.id);
    if (typeof j.image !== 'string' || !j.image)
      usage(`${where}: "image" must be a directory, oci:, docker-archive: or docker:// reference`);
    for (const [, key] of STEPS) if (!isArgv(j[key])) usage(`${where}: "${key}" must be a non-empty array of strings`);
    // A relative directory means one next to the job file; references stay as given.
    const image = /^[a-z-]+:/.test(j.image) || isAbsolute(j.image) ? j.image : resolve(dirname(file), j.image);
    return { ...j, image };
  });
}

/** The demo: three jobs on the busybox image `npm run demo` builds (made here when missing). */
async function demoJobs(): Promise<Job[]> {
  const cache =
    process.env.NODULARITY_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nodularity');
  const image = join(cache, 'demo-busybox-rootfs');
  if (!existsSync(join(image, 'bin/busybox'))) {
    mkdirSync(image, { recursive: true });
    // Plain ESM without typings; loaded by URL so the type checker does not look for them.
    const { makeBusyboxRootfs } = await import(new URL('../scripts/busybox-rootfs.mjs', import.meta.url).href);
    makeBusyboxRootfs(image);
  }
  const sh = (script: string) => ['/bin/sh', '-c', script];
  return ['demo-1', 'demo-2', 'demo-3'].map((id) => ({
    id,
    image,
    stageIn: sh(
      'mkdir -p in && seq 1 100000 > in/numbers && ls /cvmfs > in/cvmfs-repos 2>/dev/null; echo staged $(wc -l < in/numbers) lines',
    ),
    payload: sh(
      id === 'demo-2'
        ? 'echo "$PILOT_JOB_ID: bad input, giving up" >&2; exit 3'
        : 'echo "$PILOT_JOB_ID as pid $$ on $(. /etc/os-release; echo $NAME)"; awk "{s+=\\$1} END {print s}" in/numbers > result',
    ),
    stageOut: sh('test -s result && echo "uploading result $(cat result)"'),
  }));
}

const running = new Set<ImageContainer>();
let stopping: NodeJS.Signals | undefined;

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    // First signal: stop starting steps, ask the payloads to end (the init
    // forwards the signal). Second: kill outright.
    const hard = stopping !== undefined;
    stopping ??= sig;
    process.stderr.write(`pilot: ${sig}, ${hard ? 'killing' : 'stopping'} ${running.size} running container(s)\n`);
    for (const c of running) c.kill(hard ? 'SIGKILL' : sig);
  });
}

function print(r: StepRecord): StepRecord {
  process.stdout.write(JSON.stringify(r) + '\n');
  return r;
}

/** Copy a step's output stream to stderr, one prefixed line at a time; resolves when it closes. */
function relay(stream: Readable | null, tag: string): Promise<void> {
  // A payload that wrote nothing and ended before we got here: its empty
  // stream has seen EOF and closed already (a net.Socket reads at once).
  if (!stream || stream.closed) return Promise.resolve();
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    const lines = (rest + d).split('\n');
    rest = lines.pop()!;
    for (const l of lines) process.stderr.write(`[${tag}] ${l}\n`);
  });
  return new Promise((res) =>
    stream.once('close', () => {
      if (rest) process.stderr.write(`[${tag}] ${rest}\n`);
      res();
    }),
  );
}

async function runStep(
  job: Job,
  step: StepName,
  argv: string[],
  scratch: string,
  binds: string[],
  instance?: Instance,
): Promise<StepRecord> {
  const rec = blankRecord(job, step, argv);
  let logFd: number | undefined;
  const t0 = performance.now();
  try {
    if (opt.logs) {
      rec.log = join(resolve(opt.logs), job.id, `${step}.log`);
      mkdirSync(dirname(rec.log), { recursive: true });
      logFd = openSync(rec.log, 'w');
    }
    const options: ExecOptions = {
      binds: [`${scratch}:${JOB_DIR}`, ...binds],
      containall: true, // fresh /tmp and home, no host environment
      pwd: JOB_DIR,
      env: { ...job.env, PILOT_JOB_ID: job.id },
      stdio: ['ignore', logFd ?? 'pipe', logFd ?? 'pipe'],
      timeout: job.timeoutMs,
      pull: opt.cache ? { cacheDir: opt.cache } : undefined,
    };
    // In an instance the scratch is bound already and the environment is the
    // instance's: the step says only where it starts and what it adds.
    const c = instance
      ? await exec(instance, argv, {
          pwd: JOB_DIR,
          cleanenv: true,
          env: options.env,
          stdio: options.stdio,
          timeout: options.timeout,
        })
      : await exec(job.image, argv, options);
    if (instance) rec.instance = instance.name;
    rec.digest = c.image.digest ?? 'directory';
    running.add(c);
    if (stopping) c.kill(stopping); // the signal came while the image was being resolved
    const output = [relay(c.stdout, `${job.id}/${step}`), relay(c.stderr, `${job.id}/${step}`)];
    try {
      const r = await c.exited;
      await Promise.all(output);
      rec.pid = r.pid;
      rec.exitCode = r.exitCode;
      rec.signal = r.signal;
      // CPU times are the init's, which include the payload's; maxRSS is the
      // payload's own peak, as the init saw it (null: unknown, the init died).
      rec.rusage = {
        userMs: r.rusage.userCPUTime / 1000,
        sysMs: r.rusage.systemCPUTime / 1000,
        maxRssKiB: r.rusage.maxRSS,
      };
      rec.status = r.exitCode === 0 ? 'ok' : 'failed';
      if (r.timedOut) rec.error = `killed after the job's timeout of ${job.timeoutMs} ms`;
    } finally {
      running.delete(c);
    }
  } catch (e) {
    rec.error = (e as Error).message;
  } finally {
    if (logFd !== undefined) closeSync(logFd);
  }
  rec.durationMs = Math.round((performance.now() - t0) * 10) / 10;
  return print(rec);
}

async function runJob(job: Job, binds: string[]): Promise<StepRecord[]> {
  const records: StepRecord[] = [];
  const scratch = mkdtempSync(join(opt['scratch-root']!, `pilot-${job.id}-`));
  let instance: Instance | undefined;
  try {
    let blocker: string | undefined;
    let startError: string | undefined;
    if (opt.instance && !stopping) {
      try {
        instance = await startInstance(job.image, `pilot-${job.id}-${process.pid}`, {
          binds: [`${scratch}:${JOB_DIR}`, ...binds],
          containall: true,
          env: { ...job.env, PILOT_JOB_ID: job.id },
          pull: opt.cache ? { cacheDir: opt.cache } : undefined,
          instanceDir: opt['instance-dir'],
        });
      } catch (e) {
        startError = `the job's instance could not be started: ${(e as Error).message}`;
      }
    }
    for (const [step, key] of STEPS) {
      const argv = job[key];
      if (!argv) continue;
      if (stopping && !blocker) blocker = `pilot stopped by ${stopping}`;
      if (blocker) {
        records.push(print({ ...blankRecord(job, step, argv), status: 'skipped', error: blocker }));
        continue;
      }
      if (startError) {
        records.push(print({ ...blankRecord(job, step, argv), error: startError }));
        blocker = startError;
        continue;
      }
      const r = await runStep(job, step, argv, scratch, binds, instance);
      records.push(r);
      if (r.status !== 'ok')
        blocker = `${step} ${r.status === 'error' ? 'could not be launched' : `ended with ${r.signal ?? `exit ${r.exitCode}`}`}`;
    }
  } finally {
    // Every process of the instance is gone when stop() resolves.
    if (instance)
      await instance.stop({ timeout: 5 }).catch((e: Error) => process.stderr.write(`pilot: ${e.message}\n`));
    if (opt['keep-scratch']) process.stderr.write(`pilot: ${job.id} scratch kept in ${scratch}\n`);
    else rmSync(scratch, { recursive: true, force: true });
  }
  return records;
}

function blankRecord(job: Job, step: StepName, argv: string[]): StepRecord {
  return {
    job: job.id,
    step,
    status: 'error',
    image: job.image,
    digest: null,
    argv,
    pid: null,
    exitCode: null,
    signal: null,
    durationMs: null,
    rusage: null,
  };
}

/**
 * The VO-box: a long-running service in an instance, as ALICE runs its
 * services in a container. busybox httpd from the image's startscript on
 * 127.0.0.1:PORT, serving a host directory bound read-only; probed from the
 * host, then stopped (SIGTERM, SIGKILL after 5 s).
 */
async function vobox(port: number): Promise<number> {
  const cache =
    process.env.NODULARITY_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nodularity');
  const image = join(cache, 'demo-vobox-rootfs');
  if (!existsSync(join(image, '.singularity.d/startscript'))) {
    mkdirSync(image, { recursive: true });
    const { makeBusyboxRootfs } = await import(new URL('../scripts/busybox-rootfs.mjs', import.meta.url).href);
    makeBusyboxRootfs(image);
    mkdirSync(join(image, '.singularity.d'), { recursive: true });
    writeFileSync(
      join(image, '.singularity.d/startscript'),
      '#!/bin/sh\necho "vobox: httpd on 127.0.0.1:$1"\nexec httpd -f -p "127.0.0.1:$1" -h /srv/www\n',
      { mode: 0o755 },
    );
  }
  const www = mkdtempSync(join(opt['scratch-root']!, 'pilot-vobox-'));
  chmodSync(www, 0o755);
  writeFileSync(join(www, 'index.html'), `VO-box of pilot ${process.pid}\n`);
  const url = `http://127.0.0.1:${port}/index.html`;
  let instance: Instance | undefined;
  try {
    instance = await startInstance(image, `vobox-${process.pid}`, {
      binds: [`${www}:/srv/www:ro`],
      containall: true,
      args: [String(port)],
      instanceDir: opt['instance-dir'],
    });
    const fetch1 = () =>
      new Promise<string>((res, rej) =>
        get(url, { timeout: 2000 }, (r) => {
          let body = '';
          r.setEncoding('utf8').on('data', (d: string) => (body += d));
          r.on('end', () => (r.statusCode === 200 ? res(body) : rej(new Error(`HTTP ${r.statusCode}`))));
        }).on('error', rej),
      );
    let body: string | undefined;
    let error: string | undefined;
    for (let i = 0; i < 100 && body === undefined && !stopping; i++) {
      body = await fetch1().catch((e: Error) => {
        error = e.message;
        return undefined;
      });
      if (body === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    process.stdout.write(
      JSON.stringify({
        service: 'vobox',
        instance: instance.name,
        pid: instance.pid,
        url,
        status: body !== undefined ? 'ok' : 'failed',
        body,
        error: body === undefined ? error : undefined,
        logs: instance.logs,
      }) + '\n',
    );
    const s = await instance.stop({ timeout: 5 });
    instance = undefined;
    process.stdout.write(JSON.stringify({ service: 'vobox', stopped: true, killed: s.killed }) + '\n');
    return body !== undefined ? 0 : 1;
  } finally {
    if (instance) await instance.stop({ timeout: 0 });
    rmSync(www, { recursive: true, force: true });
  }
}

function table(records: StepRecord[]): string {
  const head = ['job', 'step', 'status', 'exit', 'wall ms', 'user ms', 'sys ms', 'maxRSS KiB', 'image'];
  const rows = records.map((r) => [
    r.job,
    r.step,
    r.status,
    r.signal ?? (r.exitCode ?? '-').toString(),
    r.durationMs?.toFixed(1) ?? '-',
    r.rusage?.userMs.toFixed(1) ?? '-',
    r.rusage?.sysMs.toFixed(1) ?? '-',
    r.rusage?.maxRssKiB?.toString() ?? '-',
    r.digest && r.digest !== 'directory' ? `${r.image} @${r.digest.slice(0, 19)}` : r.image,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  return [head, ...rows]
    .map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(width[i]))).join('  '))
    .join('\n');
}

async function main(): Promise<number> {
  if (opt.vobox !== undefined) {
    const port = Number(opt.vobox);
    if (!Number.isInteger(port) || port < 1 || port > 65535) usage(`--vobox must be a TCP port, not ${opt.vobox}`);
    return vobox(port);
  }
  if (positionals.length > 1) usage('at most one job file');
  const jobs = positionals.length ? loadJobs(positionals[0]) : await demoJobs();
  const parallel = Number(opt.parallel);
  if (!Number.isInteger(parallel) || parallel < 1) usage(`--parallel must be a positive integer, not ${opt.parallel}`);
  if (!statSync(opt['scratch-root']!, { throwIfNoEntry: false })?.isDirectory())
    usage(`--scratch-root ${opt['scratch-root']} is not a directory`);

  // /cvmfs read-only, recursively and with slave propagation (the library's
  // default for binds), so repositories automounted later appear inside.
  const binds: string[] = [];
  const cvmfs = opt.cvmfs ?? (existsSync('/cvmfs') ? '/cvmfs' : undefined);
  if (cvmfs) binds.push(`${resolve(cvmfs)}:/cvmfs:ro`);
  else process.stderr.write('pilot: no /cvmfs on this host and no --cvmfs stand-in: jobs run without it\n');

  const queue = [...jobs];
  const records: StepRecord[][] = [];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) records[jobs.indexOf(job)] = await runJob(job, binds);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, worker));

  const all = records.flat();
  process.stderr.write(`\n${table(all)}\n`);
  const failed = jobs.filter((_, i) => records[i].some((r) => r.status !== 'ok' && r.status !== 'skipped'));
  process.stderr.write(
    `${jobs.length - failed.length} of ${jobs.length} jobs succeeded${failed.length ? `; failed: ${failed.map((j) => j.id).join(', ')}` : ''}\n`,
  );
  if (stopping) return stopping === 'SIGINT' ? 130 : 143;
  return failed.length ? 1 : 0;
}

process.exitCode = await main();
