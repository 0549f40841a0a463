// The optional trials of `nodularity bench`: the effect of the Node heap
// size (fresh processes), and a CPU-bound payload inside vs outside a
// container. The phases of a launch are in phases.ts.
import { spawn as cpSpawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { hrtime } from 'node:process';
import { fileURLToPath } from 'node:url';
import { nodularityArgs } from './drivers.js';
import { fmt, table } from './format.js';
import type { HeapTrialResult } from './heap-trial.js';
import type { ExtraContext, ExtraSection } from './section.js';
import { median, summarize } from './stats.js';
import { ensureDefaultRootfs } from './setup.js';

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
