// Figures and tables of a latency run: one row per driver with p50, p90,
// p99, min, max, mean, launches/s and the ratio to nodularity; drivers that
// did not run keep their row with the reason.
import { fmt, table } from './format.js';
import type { DriverResult, LatencyResult } from './latency.js';
import { summarize, type Summary } from './stats.js';

export interface DriverRow extends Partial<Summary> {
  id: string;
  label: string;
  status: 'ok' | 'missing' | 'failed';
  detail: string | null;
  note: string | null;
  version: string | null;
  /** Launches over the wall time of the driver's turns (with K in flight, the rate it sustained). */
  launchesPerSec?: number;
  /** p50 and mean relative to the baseline driver's (nodularity). */
  ratioP50?: number;
  ratioMean?: number;
  stride: number;
}

/** One row per driver, ratios against `baseline` when it ran. */
export function driverRows(lat: LatencyResult, baseline = 'nodularity'): DriverRow[] {
  const rows: DriverRow[] = lat.drivers.map((d: DriverResult) => {
    const row: DriverRow = {
      id: d.id,
      label: d.label,
      status: d.status,
      detail: d.detail,
      note: d.note ?? null,
      version: d.version ?? null,
      stride: d.stride,
    };
    if (d.samples.length)
      Object.assign(row, summarize(d.samples), {
        launchesPerSec: d.wallNs ? d.samples.length / (d.wallNs / 1e9) : NaN,
      });
    return row;
  });
  const base = rows.find((r) => r.id === baseline && r.n);
  for (const r of rows) {
    if (base && r.n) {
      r.ratioP50 = r.p50! / base.p50!;
      r.ratioMean = r.mean! / base.mean!;
    }
  }
  return rows;
}

const HEADER = [
  'runtime',
  'n',
  'p50 ms',
  'p90 ms',
  'p99 ms',
  'min ms',
  'max ms',
  'mean ms',
  'launch/s',
  'x p50',
  'status',
];
const ALIGN = 'lrrrrrrrrrl';

function cells(r: DriverRow): string[] {
  if (!r.n) return [r.label, '0', '-', '-', '-', '-', '-', '-', '-', '-', r.status === 'ok' ? 'not run' : r.status];
  const status =
    r.status !== 'ok' ? `${r.status} after ${r.n}` : r.stride > 1 ? `1 round in ${r.stride}` : r.note ? 'see note' : '';
  return [
    r.label,
    String(r.n),
    fmt(r.p50),
    fmt(r.p90),
    fmt(r.p99),
    fmt(r.min),
    fmt(r.max),
    fmt(r.mean),
    fmt(r.launchesPerSec, 0),
    fmt(r.ratioP50, 2),
    status,
  ];
}

/** Notes for the rows: why a runtime is missing or failed, and what differs in its container. */
export function rowNotes(rows: DriverRow[]): string[] {
  const notes: string[] = [];
  for (const r of rows) {
    if (r.status !== 'ok') notes.push(`${r.label}: ${r.status}: ${r.detail ?? 'no reason given'}`);
    else if (r.note) notes.push(`${r.label}: ${r.note}`);
  }
  return notes;
}

/** The latency table as aligned text (terminal) or Markdown. */
export function latencyTable(rows: DriverRow[], markdown = false): string {
  return table(HEADER, rows.map(cells), { markdown, align: ALIGN });
}
