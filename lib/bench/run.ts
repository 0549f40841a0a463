// The one bench runner, behind both `nodularity bench` (lib/cli/bench-command.ts)
// and `npm run bench` (bench/index.mjs, which only chooses other defaults):
// prepares the image and the runtimes, measures nodularity in this process
// side by side with its variants and every other runtime asked for
// (interleaved), then the optional sections in a fixed order (the phases of
// one launch, throughput, the Node heap effect, a CPU-bound payload, the C
// floor, the targets), and writes one report in one format: JSON, Markdown,
// an SVG chart and, where rsvg-convert is installed, a PNG.
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { latencyChartSvg } from './chart.js';
import { makeDrivers, type Driver, type DriverContext, type NodularityModule } from './drivers.js';
import { cpuSection, heapSection } from './extras.js';
import { phasesSection } from './phases.js';
import { pilotSection, type PilotOptions } from './pilot.js';
import { processSection, type ProcessOptions } from './process.js';
import { floorBinary, floorSection } from './floor.js';
import { runLatency, type LatencyResult } from './latency.js';
import { driverRows, latencyTable, rowNotes, type DriverRow } from './report.js';
import {
  ensureDefaultRootfs,
  machineInfo,
  probeRuntimes,
  which,
  writableDir,
  type CompareId,
  type MachineInfo,
  type Network,
  type RuntimeProbe,
} from './setup.js';
import type { ExtraSection, SectionRunner } from './section.js';
import { targetsSection } from './targets.js';
import { throughputSection, type ThroughputOptions } from './throughput.js';

export type { ExtraSection, SectionRunner };
export { writableDir };

/** nodularity variants a run may measure beside the default container, and the C floor through child_process. */
export const VARIANT_IDS = [
  'nodularity-prepared',
  'nodularity-seccomp',
  'nodularity-netns',
  'nodularity-noinit',
  'nodularity-parentmaps',
  'floor',
] as const;
export type VariantId = (typeof VARIANT_IDS)[number];

/** Raised for bad input; the message names the option at fault. */
export class BenchUsageError extends Error {
  override name = 'BenchUsageError';
}

export interface BenchOptions {
  runs: number;
  concurrency: number;
  network: Network;
  compare: CompareId[];
  /** Unpacked root file system; default: a busybox rootfs built offline under `out`. */
  image?: string;
  out: string;
  /** Payload and arguments; default /bin/true. */
  args: string[];
  block?: number;
  warmup?: number;
  /** The command line, for the reports. */
  command?: string;
  onProgress?: (done: number, total: number) => void;
  log?: (msg: string) => void;
  /** Other latency drivers: nodularity variants, the C floor; after nodularity, before `compare`. */
  variants?: VariantId[];
  /** Another build's module (e.g. main's dist/index.js): its default container as driver nodularity-baseline. */
  baseline?: NodularityModule | { error: string };
  /** File URL of the module measured when it is not this build (sections in fresh processes load it). */
  nodUrl?: string;
  /** A driver whose warm-up says it would take longer than this (ms) is sampled one round in k. */
  budgetMs?: number;
  /** Notes to put first (e.g. a stale build). */
  notes?: string[];
  /** Sections after the latency run, in report order (benchSections makes them). */
  sections?: Record<string, SectionRunner | undefined>;
}

/** Which optional sections to run, with their sizes. */
export interface SectionChoice {
  phases?: { runs: number };
  throughput?: ThroughputOptions;
  pilot?: PilotOptions;
  heap?: { mib: number; runs: number; rounds?: number };
  cpu?: boolean;
  floor?: { loops: number };
  process?: ProcessOptions;
  targets?: boolean;
}

/** The optional sections, in the one order every report has. */
export function benchSections(c: SectionChoice): Record<string, SectionRunner> {
  const out: Record<string, SectionRunner> = {};
  if (c.phases) {
    const runs = c.phases.runs;
    out.phases = (x) => phasesSection(x, runs, x.rows.find((r) => r.id === 'nodularity')?.p50);
  }
  if (c.throughput) {
    const t = c.throughput;
    out.throughput = (x) => throughputSection(x, t);
  }
  if (c.pilot) {
    const p = c.pilot;
    out.pilot = (x) => pilotSection(x, p);
  }
  if (c.heap) {
    const h = c.heap;
    out.heap = (x) => heapSection(x, h.mib, h.runs, h.rounds);
  }
  if (c.cpu) out.cpu = (x) => cpuSection(x);
  if (c.floor) {
    const loops = c.floor.loops;
    out.floor = (x) => floorSection(x, loops);
  }
  if (c.process) {
    const p = c.process;
    out.process = (x) => processSection(x, p);
  }
  if (c.targets) out.targets = (x) => targetsSection(x);
  return out;
}

export interface BenchResult {
  machine: MachineInfo;
  command: string;
  options: {
    runs: number;
    concurrency: number;
    network: Network;
    compare: string[];
    image: string;
    args: string[];
    block: number;
    warmup: number;
    variants: string[];
  };
  runtimes: Record<string, RuntimeProbe>;
  latency: LatencyResult;
  rows: DriverRow[];
  notes: string[];
  sections: Record<string, ExtraSection>;
  elapsedSeconds: number;
  loadavgAtEnd: number[];
  files: { json: string; markdown: string; svg: string; png: string | null };
}

/** Check the image option and the payload in it; returns the rootfs path. */
export async function resolveImage(image: string | undefined, out: string, args: string[]): Promise<string> {
  let rootfs: string;
  if (image === undefined) {
    rootfs = await ensureDefaultRootfs(out);
  } else {
    rootfs = resolve(image);
    let st;
    try {
      st = statSync(rootfs);
    } catch {
      throw new BenchUsageError(`--image ${image}: no such directory`);
    }
    if (!st.isDirectory())
      throw new BenchUsageError(`--image ${image}: not a directory (an unpacked root file system is expected)`);
  }
  if (isAbsolute(args[0])) {
    try {
      lstatSync(join(rootfs, args[0]));
    } catch {
      throw new BenchUsageError(
        `${image === undefined ? 'the default image' : `--image ${image}`}: the payload ${args[0]} does not exist in ${rootfs}`,
      );
    }
  }
  return rootfs;
}

/** Run the whole bench; throws BenchUsageError for bad input, Error when the bench itself cannot run. */
export async function runBench(o: BenchOptions, nod: NodularityModule | { error: string }): Promise<BenchResult> {
  const started = Date.now();
  const log = o.log ?? (() => {});
  const machine = machineInfo();
  const out = resolve(o.out);
  if (!writableDir(out))
    throw new BenchUsageError(`--out ${o.out}: cannot create or write this directory as uid ${process.getuid!()}`);
  const rootfs = await resolveImage(o.image, out, o.args);
  const workDir = join(out, 'work');
  mkdirSync(workDir, { recursive: true });

  log(`probing ${o.compare.join(', ') || 'no other runtimes'}`);
  const runtimes = probeRuntimes({ rootfs, workDir, args: o.args, network: o.network, ids: o.compare });
  for (const rt of Object.values(runtimes))
    log(`${rt.name}: ${rt.status}${rt.version ? ` (${rt.version})` : ''}${rt.detail ? ` - ${rt.detail}` : ''}`);

  const variants = o.variants ?? [];
  const ctx: DriverContext = { rootfs, args: o.args, network: o.network, uid: process.getuid!(), runtimes };
  if (variants.includes('floor') || o.sections?.floor || o.sections?.phases || o.sections?.process) {
    const f = floorBinary(workDir);
    if ('bin' in f) ctx.floor = f.bin;
    else ctx.floorError = f.error;
  }
  const drivers: Driver[] = makeDrivers(ctx, ['nodularity', ...variants, ...o.compare], nod);
  if (o.baseline) drivers.splice(1, 0, ...makeDrivers(ctx, ['nodularity-baseline'], o.baseline));
  const block = o.block ?? 5;
  const warmup = o.warmup ?? Math.min(10, o.runs);
  const latency = await runLatency(drivers, {
    runs: o.runs,
    block,
    warmup,
    concurrency: o.concurrency,
    budgetMs: o.budgetMs,
    onProgress: o.onProgress,
    log,
  });
  const rows = driverRows(latency);
  const notes = [...(o.notes ?? []), ...rowNotes(rows)];
  const busiest = Math.max(machine.loadavg[0] ?? 0, loadavg()[0] ?? 0);
  if (busiest > machine.nproc / 2)
    notes.push(
      `other work kept the machine busy (1-min load average up to ${busiest.toFixed(2)} on ${machine.nproc} CPUs): absolute times are inflated; ratios within one run suffer less`,
    );

  const sections: Record<string, ExtraSection> = {};
  for (const [name, fn] of Object.entries(o.sections ?? {})) {
    if (!fn) continue;
    log(`${name} trial`);
    if ('error' in nod) throw new Error(`${name}: ${nod.error}`);
    sections[name] = await fn({
      rootfs,
      out,
      args: o.args,
      network: o.network,
      nod,
      nodUrl: o.nodUrl,
      drivers: ctx,
      rows,
      before: { ...sections },
    });
  }

  const stamp = machine.date.replace(/[:.]/g, '-');
  const files = {
    json: join(out, `bench-${stamp}.json`),
    markdown: join(out, `bench-${stamp}.md`),
    svg: join(out, `bench-${stamp}.svg`),
    png: null as string | null,
  };
  const result: BenchResult = {
    machine,
    command: o.command ?? 'nodularity bench',
    options: {
      runs: o.runs,
      concurrency: o.concurrency,
      network: o.network,
      compare: o.compare,
      image: rootfs,
      args: o.args,
      block,
      warmup,
      variants,
    },
    runtimes,
    latency,
    rows,
    notes,
    sections,
    elapsedSeconds: (Date.now() - started) / 1000,
    loadavgAtEnd: loadavg(),
    files,
  };
  writeFileSync(files.svg, chartOf(result));
  files.png = toPng(files.svg);
  writeFileSync(files.markdown, renderMarkdown(result));
  writeFileSync(files.json, JSON.stringify(result, null, 1));
  return result;
}

/** The SVG chart of a run. */
export function chartOf(r: BenchResult): string {
  const o = r.options;
  return latencyChartSvg(
    r.rows.map((row, i) => ({
      label: row.label,
      samples: r.latency.drivers[i].samples,
      highlight: row.id === 'nodularity',
      status: row.n ? undefined : `${row.status}: ${shorten(row.detail ?? '', 70)}`,
    })),
    {
      title: `Container start latency: ${o.args.join(' ')}, ${o.runs} launches each`,
      subtitle:
        `${r.machine.nproc} CPU ${r.machine.cpu ?? ''}, ${r.machine.kernel}, Node ${r.machine.node}, uid ${r.machine.uid}, ` +
        `network ${o.network}, ${o.concurrency} in flight, ${r.machine.date.slice(0, 10)}`,
    },
  );
}

function shorten(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** SVG -> PNG with rsvg-convert (Debian: librsvg2-bin) when installed; null otherwise. */
export function toPng(svg: string): string | null {
  const conv = which('rsvg-convert');
  if (!conv) return null;
  const png = svg.replace(/\.svg$/, '.png');
  const r = spawnSync(conv, ['--zoom', '1.5', '--background-color', 'white', '-o', png, svg], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${conv} ${svg}: ${r.stderr || r.error}`);
  return png;
}

function header(r: BenchResult): string[] {
  const m = r.machine;
  return [
    `Machine: ${m.nproc} CPU (${m.cpu ?? 'unknown CPU'}), ${m.kernel}, ${m.os ?? ''}, Node ${m.node}`,
    `Date: ${m.date}; run as uid ${m.uid}; took ${r.elapsedSeconds.toFixed(0)} s; load average ${m.loadavg.map((x) => x.toFixed(2)).join(' ')} before, ${r.loadavgAtEnd.map((x) => x.toFixed(2)).join(' ')} after`,
    `Command: \`${r.command}\`${m.git ? `; tree: ${m.git}` : ''}`,
    `Payload: \`${r.options.args.join(' ')}\` in ${r.options.image}; network ${r.options.network}; ${r.options.concurrency} in flight; blocks of ${r.options.block} launches per runtime, interleaved`,
  ];
}

function latencyTitle(r: BenchResult): string {
  return `Spawn -> exit latency, ${r.options.runs} launches per runtime (x p50 = p50 relative to nodularity)`;
}

/** The terminal report. */
export function renderText(r: BenchResult): string {
  const parts = [header(r).join('\n'), `\n${latencyTitle(r)}\n${latencyTable(r.rows)}`];
  if (r.notes.length) parts.push(`\nNotes\n${r.notes.map((n) => `- ${n}`).join('\n')}`);
  for (const e of Object.values(r.sections)) parts.push(`\n${e.title}\n${e.text}`);
  parts.push(`\nwrote ${[r.files.json, r.files.markdown, r.files.svg, r.files.png].filter(Boolean).join(', ')}`);
  if (!r.files.png) parts.push('(no PNG: rsvg-convert not found; Debian package librsvg2-bin)');
  return parts.join('\n');
}

/** The Markdown report. */
export function renderMarkdown(r: BenchResult): string {
  const parts = [
    header(r)
      .map((h) => `${h}  `)
      .join('\n'),
    `### ${latencyTitle(r)}\n\n${latencyTable(r.rows, true)}`,
  ];
  if (r.notes.length) parts.push(`### Notes\n\n${r.notes.map((n) => `- ${n}`).join('\n')}`);
  for (const e of Object.values(r.sections)) parts.push(`### ${e.title}\n\n${e.markdown}`);
  parts.push(`![latency chart](${r.files.svg.split('/').pop()})`);
  return parts.join('\n\n') + '\n';
}
