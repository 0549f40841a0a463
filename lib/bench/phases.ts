// The phases of a launch, timed from inside: nodularity's own clock reads
// (SpawnOptions.timing: the JS points, the addon's, the child's after each
// step of its table, the exit watch's) and floor.c's (--phases: the same
// points of its own launch), in the same run, so the gap between the two is
// visible phase by phase. Unlike strace, the clock reads cost a few tens of
// ns each and stop nothing.
import { execFileSync } from 'node:child_process';
import { hrtime } from 'node:process';
import type { Spec } from '../oci/spec.js';
import type { LaunchTiming, SpawnOptions } from '../container.js';
import { nodularityArgs } from './drivers.js';
import { fmt, table } from './format.js';
import type { ExtraContext, ExtraSection } from './section.js';
import { median } from './stats.js';

/** The phases, in launch order: key, what happens in it. */
export const PHASES = [
  ['plan', 'JS: validate and plan (spawn() -> plan made)'],
  ['setup', 'JS: the Container, its promises and callbacks -> the addon'],
  ['toC', 'main thread: the plan object converted to C'],
  ['addon', 'main thread in the addon: pipes, rootfs fd, handle'],
  ['hop', 'libuv pool hop: queued -> a worker thread takes it'],
  ['preclone', 'worker: child stack, signal mask -> clone'],
  ['clone', 'clone(2) -> the child runs'],
  ['idmaps', 'signals, stdio, setsid, setgroups, uid_map, gid_map'],
  ['mounts', 'keyring, hostname, propagation, rootfs bind, nodev, /dev /proc /sys ops'],
  ['pivot', 'pivot_root, old root detached, root read-only'],
  ['creds', 'rlimits, seccomp, caps, ids, chdir, no_new_privs, close fds'],
  ['exec', 'execve (init; floor: the payload) -> clone returns'],
  ['payload', 'init forks and execs the payload -> verdict read'],
  ['back', 'worker -> main thread -> JS spawn callback'],
  ['run', 'payload runs and exits, init reaps and exits -> exit seen'],
  ['deliver', 'exit seen -> JS exit callback'],
] as const;

export type PhaseKey = (typeof PHASES)[number][0] | 'total';
export type PhaseMs = Partial<Record<PhaseKey, number>>;

const ms = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined || !a || !b ? NaN : (b - a) / 1e6;

/** The end of the last run of a named child step. */
function stepEnd(t: LaunchTiming, step: string): number | undefined {
  let at: number | undefined;
  for (const s of t.childSteps) if (s.step === step) at = s.ns;
  return at;
}

/** A nodularity launch's timing cut into the phases (ms). A fork-style launch has no child steps: its clone phase runs to the exec. */
export function nodularityPhases(t: LaunchTiming): PhaseMs {
  const maps = stepEnd(t, 'setup-ids');
  const mounts = stepEnd(t, 'hooks');
  const pivot = stepEnd(t, 'root-readonly');
  const last = t.childSteps.length ? t.childSteps[t.childSteps.length - 1].ns : undefined;
  return {
    plan: ms(t.start, t.planned),
    setup: ms(t.planned, t.call),
    toC: ms(t.call, t.converted),
    addon: ms(t.converted, t.queued),
    hop: ms(t.queued, t.worker),
    preclone: ms(t.worker, t.clone),
    clone: t.childStart ? ms(t.clone, t.childStart) : ms(t.clone, t.cloneDone),
    idmaps: ms(t.childStart, maps),
    mounts: ms(maps, mounts),
    pivot: ms(mounts, pivot),
    creds: ms(pivot, last),
    exec: ms(last, t.cloneDone),
    payload: ms(t.cloneDone, t.verdict),
    back: ms(t.verdict, t.spawned),
    run: ms(t.spawned, t.exitSeen),
    deliver: ms(t.exitSeen, t.exited),
    total: ms(t.start, t.exited),
  };
}

/** floor.c --phases: clone, child start, maps done, mounts done, pivot done, clone returned, reaped. */
export function floorPhases(row: number[]): PhaseMs {
  const [clone, start, maps, mounts, pivot, cloneRet, reaped] = row;
  return {
    clone: ms(clone, start),
    idmaps: ms(start, maps),
    mounts: ms(maps, mounts),
    pivot: ms(mounts, pivot),
    exec: ms(pivot, cloneRet),
    run: ms(cloneRet, reaped),
    total: ms(clone, reaped),
  };
}

interface Column {
  label: string;
  launches: PhaseMs[];
  /** ms the spawn() call held the event loop (hrtime around the call). */
  hold: number[];
  error: string | null;
}

async function timedLaunch(
  launch: () => { exited: Promise<unknown>; timing?: unknown },
  col: Column,
): Promise<PhaseMs> {
  const t0 = hrtime.bigint();
  const c = launch();
  col.hold.push(Number(hrtime.bigint() - t0) / 1e6);
  await c.exited;
  if (!c.timing) throw new Error('this build does not time its launches (SpawnOptions.timing)');
  return nodularityPhases(c.timing as LaunchTiming);
}

/**
 * `runs` timed launches each of nodularity spawn(), a prepared container's
 * spawn() and floor.c (vfork mode), in 5 interleaved blocks; the figure per
 * phase is its median over the launches.
 */
export async function phasesSection(x: ExtraContext, runs = 100, untimedP50?: number): Promise<ExtraSection> {
  const { spec, options } = nodularityArgs(x.drivers, 'nodularity');
  const timed: SpawnOptions = { ...options, timing: true };
  const { stdio, ...planOptions } = options;
  const tpl = typeof x.nod.prepare === 'function' ? x.nod.prepare(spec, planOptions) : undefined;
  const cols: Column[] = [
    { label: 'nodularity', launches: [], hold: [], error: null },
    { label: 'prepared', launches: [], hold: [], error: tpl ? null : 'this build has no prepare()' },
    {
      label: 'floor.c',
      launches: [],
      hold: [],
      error: x.drivers.floor ? null : (x.drivers.floorError ?? 'not built'),
    },
  ];
  const blocks = 5;
  const per = Math.max(1, Math.ceil(runs / blocks));
  const spawnOf = x.nod.spawn as (s: Spec, o: SpawnOptions) => { exited: Promise<unknown>; timing?: unknown };
  for (let b = 0; b < blocks; b++) {
    for (const col of cols) {
      if (col.error) continue;
      try {
        if (col.label === 'floor.c') {
          const out = execFileSync(x.drivers.floor!, ['--loop', String(per), '--phases', x.rootfs, ...x.args], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          col.launches.push(...(JSON.parse(out) as { phases: number[][] }).phases.map(floorPhases));
        } else {
          for (let i = 0; i < per; i++)
            col.launches.push(
              await timedLaunch(
                () => (col.label === 'prepared' ? tpl!.spawn({ stdio, timing: true }) : spawnOf(spec, timed)),
                col,
              ),
            );
        }
      } catch (e) {
        const err = e as { stderr?: string; message?: string };
        col.error = (err.stderr || err.message || String(e)).trim().slice(0, 300);
      }
    }
  }
  const med = (col: Column, k: PhaseKey) => (col.error ? NaN : median(col.launches.map((l) => l[k] ?? NaN)));
  const [nod, prep, floor] = cols;
  const rows = [...PHASES, ['total', 'spawn() -> JS exit callback; floor: clone -> reaped'] as const].map(
    ([k, what]) => {
      const n = med(nod, k);
      const f = med(floor, k);
      const gap = Number.isNaN(n) ? NaN : n - (Number.isNaN(f) ? 0 : f);
      return [k, what, fmt(n), fmt(med(prep, k)), fmt(f), fmt(gap)];
    },
  );
  const q = (xs: number[], p: number) => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length ? v[Math.min(v.length - 1, Math.floor(p * v.length))] : NaN;
  };
  rows.push([
    'loop hold',
    'the spawn() call itself, p50 (p99); in the phases above: plan .. addon',
    `${fmt(q(nod.hold, 0.5))} (${fmt(q(nod.hold, 0.99))})`,
    `${fmt(q(prep.hold, 0.5))} (${fmt(q(prep.hold, 0.99))})`,
    '',
    '',
  ]);
  if (untimedP50 !== undefined)
    rows.push(['untimed', 'spawn -> exit p50 of the latency run, for scale', fmt(untimedP50), '', '', '']);
  const h = ['phase', 'what', 'nodularity ms', 'prepared ms', 'floor.c ms', 'gap ms'];
  const notes = cols.filter((c) => c.error).map((c) => `${c.label}: ${c.error}`);
  const foot = [
    `Medians per phase over ${runs} launches each (the total is its own median, not the sum). gap = nodularity - floor.c ('-' in floor.c: a phase the floor does not have).`,
    ...notes,
  ].join('\n');
  return {
    title: `Phases of a launch, timed from inside (nodularity, a prepared container and floor.c in the same run)`,
    data: Object.fromEntries(
      cols.map((c) => [
        c.label,
        {
          error: c.error,
          n: c.launches.length,
          holdP50: q(c.hold, 0.5),
          holdP99: q(c.hold, 0.99),
          median: Object.fromEntries([...PHASES.map(([k]) => k), 'total'].map((k) => [k, med(c, k as PhaseKey)])),
        },
      ]),
    ),
    text: `${table(h, rows, { align: 'llrrrr' })}\n${foot}`,
    markdown: `${table(h, rows, { markdown: true, align: 'llrrrr' })}\n\n${foot.split('\n').join('\n\n')}`,
  };
}
