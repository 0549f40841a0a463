// The optional trials of `nodularity bench`: the phases of one launch (from
// outside, under strace), the effect of the Node heap size (fresh
// processes), and a CPU-bound payload inside vs outside a container.
import { spawn as cpSpawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hrtime } from 'node:process';
import { fileURLToPath } from 'node:url';
import { nodularityArgs } from './drivers.js';
import { fmt, table } from './format.js';
import type { HeapTrialResult } from './heap-trial.js';
import type { ExtraContext, ExtraSection } from './section.js';
import { median, summarize } from './stats.js';
import { APT_PACKAGE, ensureDefaultRootfs, which } from './setup.js';

export type { ExtraContext };

/**
 * Path of a sibling entry script and the node flags to run it: the compiled
 * .js normally, the .ts under a TypeScript loader (tests run lib/ directly).
 */
function entry(name: string): { file: string; execArgv: string[] } {
  const self = fileURLToPath(import.meta.url);
  const ext = self.endsWith('.ts') ? '.ts' : '.js';
  return { file: join(self, '..', `${name}${ext}`), execArgv: ext === '.ts' ? process.execArgv : [] };
}

// ---- phases ----------------------------------------------------------------

/** One strace line: pid, time (s), syscall name and the rest. */
interface Ev {
  pid: number;
  t: number;
  name: string;
  rest: string;
  resumed: boolean;
}

const TRACED =
  'clone,clone3,execve,execveat,openat,write,sethostname,mount,mount_setattr,umount2,pivot_root,chdir,close_range,exit_group,wait4,waitid,access,faccessat,faccessat2';

/** Parse `strace -f -ttt` output into events. */
export function parseStrace(text: string): Ev[] {
  const evs: Ev[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(?:<\.\.\. (\w+) resumed>(.*)|(\w+)\((.*))$/.exec(line);
    if (!m) continue;
    evs.push(
      m[3]
        ? { pid: +m[1], t: +m[2], name: m[3], rest: m[4], resumed: true }
        : { pid: +m[1], t: +m[2], name: m[5], rest: m[6], resumed: false },
    );
  }
  return evs;
}

export const PHASES = [
  ['js', 'spawn() call -> clone (plan, worker hand-off)'],
  ['clone', 'clone -> child runs'],
  ['idmaps', 'id maps (setgroups, uid_map, gid_map)'],
  ['mounts', 'hostname, propagation, rootfs bind, mount ops'],
  ['pivot', 'pivot_root, old root detached'],
  ['creds', 'caps, ids, no_new_privs, fds'],
  ['exec', 'exec init, fork, exec payload'],
  ['payload', 'payload runs'],
  ['exitNotify', 'payload exit -> Node sees it (init reaps, pidfd, waitid)'],
] as const;

export type PhaseTimes = Record<(typeof PHASES)[number][0] | 'total', number>;

/**
 * Cut a trace into launches and phases. A launch is found by its container
 * clone (CLONE_NEWUSER or CLONE_NEWPID in the flags); its child pid comes
 * from the clone's return; times are the entries of the marking syscalls.
 */
export function phasesFromTrace(evs: Ev[]): PhaseTimes[] {
  const out: PhaseTimes[] = [];
  const marks = evs.filter(
    (e) => !e.resumed && /^(access|faccessat2?)$/.test(e.name) && e.rest.includes('nodularity-bench-phase-mark'),
  );
  const clones = evs.filter(
    (e) => !e.resumed && (e.name === 'clone' || e.name === 'clone3') && /CLONE_NEW(USER|PID)/.test(e.rest),
  );
  for (const c of clones) {
    // The clone's return value is on the same line, or on its "resumed" line in the same thread.
    const done = / = (\d+)$/.exec(c.rest)
      ? c
      : evs.find((e) => e.resumed && e.pid === c.pid && e.name === c.name && e.t >= c.t);
    const child = Number(/ = (\d+)$/.exec(done?.rest ?? '')?.[1]);
    if (!child) continue;
    const mine = evs.filter((e) => e.pid === child && !e.resumed);
    const at = (f: (e: Ev) => boolean, from = 0) => mine.slice(from).findIndex(f) + from;
    // Single-ID maps: the child opens and writes gid_map itself; with parent-written maps it does not, and the phase is empty.
    const iGidOpen = at((e) => e.name === 'openat' && e.rest.includes('/gid_map'));
    const iGid = iGidOpen >= 0 ? at((e) => e.name === 'write', iGidOpen) : -1;
    const iPivot = at((e) => e.name === 'pivot_root');
    const iUmount = at((e) => e.name === 'umount2', Math.max(0, iPivot));
    const iExec = at((e) => e.name === 'execveat' || e.name === 'execve');
    if (iPivot < 0 || iExec < 0 || iUmount < 0) continue;
    const tMapsDone = iGid >= 0 && mine[iGid + 1] ? mine[iGid + 1].t : mine[0].t;
    const tPivotDone = mine[iUmount + 1]?.t ?? mine[iUmount].t;
    // The payload: the first pid whose execve follows the init's exec (the init forks it).
    const tExec = mine[iExec].t;
    const payloadExec = evs.find((e) => !e.resumed && e.name === 'execve' && e.pid !== child && e.t > tExec);
    if (!payloadExec) continue;
    const payloadExit = evs.find((e) => e.pid === payloadExec.pid && e.name === 'exit_group' && e.t > payloadExec.t);
    const waitid = evs.find(
      (e) => !e.resumed && e.name === 'waitid' && e.rest.startsWith('P_PIDFD') && e.t > (payloadExit?.t ?? Infinity),
    );
    if (!payloadExit || !waitid) continue;
    const mark = [...marks].reverse().find((m) => m.t <= c.t);
    const ms = (a: number, b: number) => (b - a) * 1000;
    out.push({
      js: mark ? ms(mark.t, c.t) : NaN,
      clone: ms(c.t, mine[0].t),
      idmaps: ms(mine[0].t, tMapsDone),
      mounts: ms(tMapsDone, mine[iPivot].t),
      pivot: ms(mine[iPivot].t, tPivotDone),
      creds: ms(tPivotDone, tExec),
      exec: ms(tExec, payloadExec.t),
      payload: ms(payloadExec.t, payloadExit.t),
      exitNotify: ms(payloadExit.t, waitid.t),
      total: ms(mark ? mark.t : c.t, waitid.t),
    });
  }
  return out;
}

/**
 * The phases of one launch, timed from outside with strace: no change to
 * the child is needed, at a price: every traced syscall stops the process
 * (tens of µs here), so phases with many syscalls (mounts) are inflated
 * most. The untraced total from the main run is printed beside it.
 */
export async function phasesSection(x: ExtraContext, runs = 20, untracedP50?: number): Promise<ExtraSection> {
  const title = `Phases of one launch (median of ${runs}, under strace)`;
  const strace = which('strace');
  if (!strace) throw new Error(`--phases needs strace: apt-get install ${APT_PACKAGE.strace}`);
  const dir = mkdtempSync(join(x.out, 'phases-'));
  try {
    const { file, execArgv } = entry('phase-probe');
    const traceFile = join(dir, 'trace.txt');
    const r = spawnSync(
      strace,
      [
        '-f',
        '-ttt',
        '-qq',
        '--seccomp-bpf',
        '-e',
        `trace=${TRACED}`,
        '-o',
        traceFile,
        process.execPath,
        ...execArgv,
        file,
        '--rootfs',
        x.rootfs,
        '--runs',
        String(runs),
        '--network',
        x.network,
        '--args',
        JSON.stringify(x.args),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] },
    );
    if (r.status !== 0)
      throw new Error(`--phases: strace ${file} failed (${r.status ?? r.signal}): ${r.stderr.trim().slice(-500)}`);
    const launches = phasesFromTrace(parseStrace(readFileSync(traceFile, 'utf8')));
    if (!launches.length) throw new Error(`--phases: no launch recognised in the trace ${traceFile}`);
    const med = (k: keyof PhaseTimes) => median(launches.map((l) => l[k]));
    const total = med('total');
    const rows = PHASES.map(([k, what]) => [k, what, fmt(med(k)), `${fmt((med(k) / total) * 100, 1)} %`]);
    rows.push(['total', 'marker -> waitid, traced', fmt(total), '100 %']);
    if (untracedP50 !== undefined)
      rows.push(['untraced', 'spawn -> exit p50 of the main run, for scale', fmt(untracedP50), '']);
    const h = ['phase', 'from -> to', 'ms', 'share'];
    const foot =
      'strace stops the process at each traced syscall, so these times are inflated (most where syscalls are dense: mounts); read the shares, not the absolute values.';
    return {
      title,
      data: {
        runs,
        launches,
        median: Object.fromEntries([...PHASES.map(([k]) => k), 'total'].map((k) => [k, med(k as keyof PhaseTimes)])),
      },
      text: `${table(h, rows, { align: 'llrr' })}\n${foot}`,
      markdown: `${table(h, rows, { markdown: true, align: 'llrr' })}\n\n${foot}`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- heap ------------------------------------------------------------------

/**
 * Fresh processes holding ~0 and ~heapMib of JS heap, same node flags,
 * alternated in `rounds` pairs; the figure is the median pair, so a burst
 * of other load hitting one process cannot pass for a heap effect.
 */
export async function heapSection(x: ExtraContext, heapMib: number, runs: number, rounds = 3): Promise<ExtraSection> {
  const { file, execArgv } = entry('heap-trial');
  const flags = [`--max-old-space-size=${Math.max(2048, heapMib * 2)}`, '--expose-gc'];
  const trials: HeapTrialResult[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const mib of [0, heapMib]) {
      const p = spawnSync(
        process.execPath,
        [
          ...flags,
          ...execArgv,
          file,
          '--rootfs',
          x.rootfs,
          '--heap-mib',
          String(mib),
          '--runs',
          String(runs),
          '--network',
          x.network,
          '--args',
          JSON.stringify(x.args),
          ...(x.nodUrl ? ['--module', x.nodUrl] : []),
        ],
        { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      if (p.status !== 0)
        throw new Error(
          `--heap: trial process (${mib} MiB) failed: ${(p.stderr || String(p.error)).trim().slice(-500)}`,
        );
      const t = JSON.parse(p.stdout.trim().split('\n').pop()!) as HeapTrialResult;
      for (const s of [t.nodularity, t.child_process]) if (s.status !== 'ok') throw new Error(`--heap: ${s.detail}`);
      trials.push(t);
    }
  }
  const pct = (a: number, b: number) => ((b - a) / a) * 100;
  const pairs = [];
  for (let i = 0; i + 1 < trials.length; i += 2) {
    pairs.push({
      nodularity: pct(summarize(trials[i].nodularity.samples).p50, summarize(trials[i + 1].nodularity.samples).p50),
      host: pct(summarize(trials[i].child_process.samples).p50, summarize(trials[i + 1].child_process.samples).p50),
    });
  }
  const pool = (big: boolean, f: (t: HeapTrialResult) => number[]) =>
    summarize(trials.filter((t) => t.heapMib > 0 === big).flatMap(f));
  const line = (label: string, f: (t: HeapTrialResult) => number[]) => {
    const [s, b] = [pool(false, f), pool(true, f)];
    return [label, fmt(s.p50), fmt(b.p50), `${fmt(pct(s.p50, b.p50), 1)} %`];
  };
  const rows = [
    line('nodularity spawn -> exit', (t) => t.nodularity.samples),
    line('host child_process.spawn -> exit', (t) => t.child_process.samples),
    line('nodularity spawn() call (loop held)', (t) => t.nodularity.block),
  ];
  // Where the loop-held time goes, when the build reports it: the TS half
  // (prepareLaunch), the vfork window of clone(), and spawn() -> 'spawned'.
  for (const [label, f] of [
    ['  of which prepareLaunch() (TS)', (t: HeapTrialResult) => t.nodularity.plan],
    ['nodularity clone() vfork window (worker thread)', (t: HeapTrialResult) => t.nodularity.cloneWindow],
    ['nodularity spawn() -> spawned', (t: HeapTrialResult) => t.nodularity.toSpawned],
  ] as const)
    if (trials.every((t) => f(t).length)) rows.push(line(label, f));
  const big = trials.find((t) => t.heapMib > 0)!;
  const small = trials.find((t) => t.heapMib === 0)!;
  const h = ['ms, samples pooled', 'p50 small', 'p50 big', 'diff'];
  const foot = `p50 difference, median of ${pairs.length} pairs: nodularity ${fmt(median(pairs.map((p) => p.nodularity)), 1)} %, host child_process ${fmt(median(pairs.map((p) => p.host)), 1)} %`;
  return {
    title: `Node heap size: fresh processes with ~0 vs ${fmt(big.heapUsedMiB, 0)} MiB of JS heap (rss ${fmt(small.rssMiB, 0)} vs ${fmt(big.rssMiB, 0)} MiB), ${runs} launches each`,
    data: {
      heapMib,
      runs,
      rounds,
      pairs,
      /** p50 difference, % big over small, median pair (what the targets read). */
      medianPct: { nodularity: median(pairs.map((p) => p.nodularity)), host: median(pairs.map((p) => p.host)) },
      /** The spawn() call in the small-heap processes, pooled. */
      blockSmall: pool(false, (t) => t.nodularity.block),
      trials: trials.map((t) => ({
        heapMib: t.heapMib,
        heapUsedMiB: t.heapUsedMiB,
        rssMiB: t.rssMiB,
        nodularity: summarize(t.nodularity.samples),
        host: summarize(t.child_process.samples),
        block: summarize(t.nodularity.block),
      })),
    },
    text: `${table(h, rows)}\n${foot}`,
    markdown: `${table(h, rows, { markdown: true })}\n\n${foot}`,
  };
}

// ---- CPU-bound payload -----------------------------------------------------

/** A shell loop: pure CPU in one process, no I/O, no syscalls to speak of. */
export const CPU_LOOP = 'i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done';

function hostRun(file: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = hrtime.bigint();
    const c = cpSpawn(file, args, { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', (code) =>
      code === 0 ? resolve(Number(hrtime.bigint() - t0)) : reject(new Error(`${file}: exit ${code}`)),
    );
  });
}

/**
 * The same static busybox running the same loop on the host and in a
 * container, alternated; native performance means a ratio of 1. The default
 * busybox image is used whatever --image says, so both sides run the very
 * same binary (a dynamically linked one would need the image's libc).
 */
export async function cpuSection(x: ExtraContext, rounds = 7): Promise<ExtraSection> {
  const rootfs = await ensureDefaultRootfs(x.out);
  const ctx = {
    rootfs,
    args: ['/bin/busybox', 'sh', '-c', CPU_LOOP],
    network: x.network,
    uid: process.getuid!(),
    runtimes: {},
  };
  const { spec, options } = nodularityArgs(ctx, 'nodularity');
  const inside: number[] = [];
  const outside: number[] = [];
  for (let r = 0; r < rounds; r++) {
    outside.push(await hostRun(join(rootfs, 'bin', 'busybox'), ['sh', '-c', CPU_LOOP]));
    const t0 = hrtime.bigint();
    const res = await x.nod.run(spec, options);
    inside.push(Number(hrtime.bigint() - t0));
    if (res.exitCode !== 0) throw new Error(`--cpu: the loop in the container exited ${res.exitCode}`);
  }
  const [si, so] = [summarize(inside), summarize(outside)];
  const h = ['where', 'runs', 'p50 ms', 'min ms', 'max ms'];
  const rows = [
    ['host (busybox sh, child_process)', String(so.n), fmt(so.p50), fmt(so.min), fmt(so.max)],
    ['nodularity container', String(si.n), fmt(si.p50), fmt(si.min), fmt(si.max)],
  ];
  const foot = `inside / outside, p50: ${fmt(si.p50 / so.p50, 3)} (min: ${fmt(si.min / so.min, 3)}); includes the launch itself (~1-2 ms of the container's).`;
  return {
    title: `CPU-bound payload inside vs outside: \`busybox sh -c '${CPU_LOOP}'\`, ${rounds} alternated runs`,
    data: { loop: CPU_LOOP, inside: si, outside: so, ratioP50: si.p50 / so.p50, ratioMin: si.min / so.min },
    text: `${table(h, rows)}\n${foot}`,
    markdown: `${table(h, rows, { markdown: true })}\n\n${foot}`,
  };
}
