// The project's speed targets, reported as PASS / MISS / N/A beside the
// figures they are read from: never asserted (a bench exits 0 whenever it
// ran), and N/A with the reason when a figure was not measured in this run.
import { fmt, table } from './format.js';
import type { DriverRow } from './report.js';
import type { ExtraContext, ExtraSection } from './section.js';
import type { Summary } from './stats.js';
import type { ThroughputDriver } from './throughput.js';

export interface Target {
  name: string;
  result: 'PASS' | 'MISS' | 'N/A';
  measured: string;
  why?: string;
}

/** The targets of a run: from the latency rows and the throughput and heap sections when they ran. */
export function targets(rows: DriverRow[], sections: Record<string, ExtraSection>): Target[] {
  const out: Target[] = [];
  const add = (name: string, pass: boolean | null, measured: string, why?: string) =>
    out.push({ name, result: pass === null ? 'N/A' : pass ? 'PASS' : 'MISS', measured, ...(why ? { why } : {}) });
  const row = (id: string) => rows.find((r) => r.id === id);
  const ran = (r: DriverRow | undefined): r is DriverRow & Summary => !!r && r.status === 'ok' && !!r.n;
  const why = (id: string) => {
    const r = row(id);
    return r ? `${r.label} ${r.status}${r.detail ? `: ${r.detail}` : ' (no samples)'}` : `${id} not measured`;
  };
  const nod = row('nodularity');
  const both = (name: string, other: string, f: (a: Summary, b: Summary) => [boolean, string]) => {
    const b = row(other);
    if (!ran(nod)) return add(name, null, '-', why('nodularity'));
    if (!ran(b)) return add(name, null, '-', why(other));
    add(name, ...f(nod, b));
  };
  both('nodularity p50 <= child_process.spawn p50', 'host', (a, b) => [
    a.p50 <= b.p50,
    `${fmt(a.p50)} vs ${fmt(b.p50)} ms`,
  ]);
  for (const [id, limit] of [
    ['nodularity', 1.2],
    ['nodularity-netns', 1.5],
  ] as const) {
    const r = row(id);
    const name = `${r?.label ?? id} p50 < ${limit} ms`;
    if (ran(r)) add(name, r.p50 < limit, `${fmt(r.p50)} ms`);
    else add(name, null, '-', why(id));
  }
  for (const [id, k] of [
    ['bwrap', 4],
    ['ch-run', 2],
    ['crun', 8],
  ] as const)
    both(`>= ${k}x faster than ${id} (p50)`, id, (a, b) => [b.p50 / a.p50 >= k, `${fmt(b.p50 / a.p50, 2)}x`]);

  // Issue 19: against the C floor in the same run.
  const floor = sections.floor?.data as Record<string, { error: string | null; p50?: number }> | undefined;
  for (const [id, mode] of [
    ['nodularity', 'vfork'],
    ['nodularity-netns', 'vfork+netns'],
  ] as const) {
    const r = row(id);
    const f = floor?.[mode];
    const name = `${r?.label ?? id} p50 <= 1.5x floor.c in-process (${mode})`;
    if (!ran(r)) add(name, null, '-', why(id));
    else if (!f?.p50) add(name, null, '-', floor ? `floor ${mode}: ${f?.error ?? 'no samples'}` : 'floor not measured');
    else add(name, r.p50 <= 1.5 * f.p50, `${fmt(r.p50 / f.p50, 2)}x (${fmt(r.p50)} vs ${fmt(f.p50)} ms)`);
  }

  const tp = sections.throughput?.data as { inflight: number; drivers: ThroughputDriver[] } | undefined;
  for (const id of ['nodularity', 'nodularity-prepared']) {
    const d = tp?.drivers.find((x) => x.id === id && (x.inflight ?? tp.inflight) === 2);
    const name = `${d?.label ?? id}, 2 in flight: >= 1500 containers/s (no netns)`;
    if (d?.status === 'ok' && d.perSec) add(name, d.perSec >= 1500, `${fmt(d.perSec, 0)}/s`);
    else if (id === 'nodularity' || d)
      add(name, null, '-', d ? `${d.status}: ${d.detail}` : 'throughput at 2 in flight not measured');
  }

  const heap = sections.heap?.data as
    { heapMib: number; medianPct: { nodularity: number }; blockSmall: Summary } | undefined;
  const heapName = `${heap?.heapMib ?? 1024} MiB heap adds < 5 % (p50, median pair)`;
  if (heap && Number.isFinite(heap.medianPct.nodularity))
    add(heapName, heap.medianPct.nodularity < 5, `${fmt(heap.medianPct.nodularity, 1)} %`);
  else add(heapName, null, '-', 'heap not measured');
  const blk = heap?.blockSmall;
  const holdName = 'spawn() holds the loop < 0.2 ms (p50), unprepared';
  if (blk?.n) add(holdName, blk.p50 < 0.2, `${fmt(blk.p50)} ms`);
  else add(holdName, null, '-', 'heap not measured (the loop hold is timed there)');
  const ph = sections.phases?.data as { prepared?: { error: string | null; holdP50?: number; holdP99?: number } };
  for (const [k, limit, q] of [
    ['holdP50', 0.1, 'p50'],
    ['holdP99', 0.3, 'p99'],
  ] as const) {
    const name = `a prepared spawn() holds the loop < ${limit} ms (${q})`;
    const v = ph?.prepared?.[k];
    if (v !== undefined && Number.isFinite(v)) add(name, v < limit, `${fmt(v)} ms`);
    else add(name, null, '-', ph?.prepared?.error ?? 'phases not measured (the prepared hold is timed there)');
  }

  const proc = sections.process?.data as
    { id: string; error: string | null; xNodeWall: number; xNodeCpu: number }[] | undefined;
  const cli = proc?.find((p) => p.id === 'nodularity-exec');
  const cliName = 'CLI `nodularity exec DIR` whole process <= 1.3x `node -e 0` (wall p50)';
  if (cli && !cli.error && Number.isFinite(cli.xNodeWall))
    add(cliName, cli.xNodeWall <= 1.3, `${fmt(cli.xNodeWall, 2)}x wall, ${fmt(cli.xNodeCpu, 2)}x CPU`);
  else add(cliName, null, '-', cli?.error ?? 'process not measured');
  return out;
}

/** The targets as a report section (run last: it reads the sections before it). */
export function targetsSection(x: ExtraContext): Promise<ExtraSection> {
  const list = targets(x.rows, x.before);
  const h = ['result', 'target', 'measured', 'note'];
  const rows = list.map((t) => [t.result, t.name, t.measured, t.why ?? '']);
  return Promise.resolve({
    title: 'Targets (reported, not asserted)',
    data: list,
    text: table(h, rows, { align: 'llrl' }),
    markdown: table(h, rows, { markdown: true, align: 'llrl' }),
  });
}
