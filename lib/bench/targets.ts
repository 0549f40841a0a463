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

  const tp = sections.throughput?.data as { inflight: number; drivers: ThroughputDriver[] } | undefined;
  const tpNod = tp?.drivers.find((d) => d.id === 'nodularity');
  const tpName = `${tp?.inflight ?? 2} in flight: >= 1500 containers/s (no netns)`;
  if (tpNod?.status === 'ok' && tpNod.perSec) add(tpName, tpNod.perSec >= 1500, `${fmt(tpNod.perSec, 0)}/s`);
  else add(tpName, null, '-', tpNod ? `${tpNod.status}: ${tpNod.detail}` : 'throughput not measured');

  const heap = sections.heap?.data as
    { heapMib: number; medianPct: { nodularity: number }; blockSmall: Summary } | undefined;
  const heapName = `${heap?.heapMib ?? 1024} MiB heap adds < 10 % (p50, median pair)`;
  if (heap && Number.isFinite(heap.medianPct.nodularity))
    add(heapName, heap.medianPct.nodularity < 10, `${fmt(heap.medianPct.nodularity, 1)} %`);
  else add(heapName, null, '-', 'heap not measured');
  const blk = heap?.blockSmall;
  for (const q of ['p50', 'p99'] as const) {
    const name = `spawn() holds the loop < 0.2 ms (${q})`;
    if (blk?.n) add(name, blk[q] < 0.2, `${fmt(blk[q])} ms`);
    else add(name, null, '-', 'heap not measured (the loop hold is timed there)');
  }
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
