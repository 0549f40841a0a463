// The latency chart: one row per runtime, spawn->exit on a logarithmic ms
// axis (runtimes here span 1 to 50 ms, and a log axis keeps the fast ones
// readable next to runc), each row showing the whole distribution at a
// glance: a dot per sample (evenly spaced quantiles when there are many),
// a box from p25 to p75, whiskers from p10 to p90, a bar at p50 and a
// diamond at p99, with p50 and the ratio to nodularity written beside it.
// Runtimes that are missing or failed get a row saying so, so a chart never
// silently drops one.
//
// Written as a small SVG emitter rather than with a charting library: the
// server-side candidates (vega + vega-lite, or d3 with jsdom) would add some
// fifty packages to a container runtime's dependency tree for five drawing
// primitives, and their text layout without a browser is approximate anyway.
import { quantile, sortedMs } from './stats.js';

export interface ChartRow {
  label: string;
  /** Spawn->exit samples in ns; empty when the runtime did not run. */
  samples: number[];
  /** Shown instead of a distribution when there are no samples (e.g. "missing: crun not found"). */
  status?: string;
  /** Drawn in the accent colour (nodularity). */
  highlight?: boolean;
}

export interface ChartOptions {
  title: string;
  subtitle?: string;
  /** Label of the row ratios are taken against; default the first highlighted row. */
  baseline?: string;
  /** At most this many dots per row. */
  maxDots?: number;
}

const W = 860;
const ROW_H = 46;
const LEFT = 210;
const RIGHT = 170;
const TOP = 74;
const AXIS_H = 46;
const ACCENT = '#1565c0';
const OTHER = '#546e7a';

/** Escape text for SVG content and attribute values. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const num = (x: number) => (Math.round(x * 10) / 10).toString();

/** Ticks of a log axis in a 1-2-5 sequence covering [lo, hi]. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

/** Tick label: 0.5, 1, 2, 20 (ms). */
function tickLabel(v: number): string {
  return v >= 1 ? String(Math.round(v)) : String(Number(v.toPrecision(1)));
}

/** Deterministic jitter in [-1, 1] for dot i, so a chart is the same from the same samples. */
function jitter(i: number): number {
  const x = Math.sin(i * 12.9898 + 78.233) * 43758.5453;
  return (x - Math.floor(x)) * 2 - 1;
}

/** The SVG document. */
export function latencyChartSvg(rows: ChartRow[], o: ChartOptions): string {
  const maxDots = o.maxDots ?? 300;
  const sorted = rows.map((r) => sortedMs(r.samples));
  const all = sorted.flat();
  const lo = all.length ? Math.min(...sorted.filter((s) => s.length).map((s) => s[0])) : 0.1;
  const hi = all.length ? Math.max(...sorted.filter((s) => s.length).map((s) => s[s.length - 1])) : 10;
  // Round the domain out to 1-2-5 steps so the axis starts and ends on a tick.
  const steps = logTicks(1e-3, 1e5);
  const dLo = [...steps].reverse().find((v) => v <= lo) ?? lo;
  const dHi = steps.find((v) => v >= hi) ?? hi;
  const plotW = W - LEFT - RIGHT;
  const x = (ms: number) =>
    LEFT + ((Math.log10(ms) - Math.log10(dLo)) / (Math.log10(dHi) - Math.log10(dLo) || 1)) * plotW;
  const H = TOP + rows.length * ROW_H + AXIS_H + 22;
  const baseIdx = o.baseline ? rows.findIndex((r) => r.label === o.baseline) : rows.findIndex((r) => r.highlight);
  const baseP50 = baseIdx >= 0 && sorted[baseIdx].length ? quantile(sorted[baseIdx], 0.5) : NaN;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">`,
  );
  out.push(`<title>${esc(o.title)}</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="16" y="26" font-size="17" font-weight="bold" fill="#212121">${esc(o.title)}</text>`);
  if (o.subtitle) out.push(`<text x="16" y="46" font-size="12" fill="#616161">${esc(o.subtitle)}</text>`);
  out.push(
    `<text x="16" y="64" font-size="11" fill="#757575">${esc('dots: launches; box: p25–p75; whiskers: p10–p90; bar: p50; ◆: p99. Log scale.')}</text>`,
  );

  // Grid and axis.
  const axisY = TOP + rows.length * ROW_H + 6;
  out.push('<g class="grid" stroke="#e0e0e0" stroke-width="1">');
  for (const t of logTicks(dLo, dHi))
    out.push(`<line x1="${num(x(t))}" y1="${TOP - 6}" x2="${num(x(t))}" y2="${axisY}"/>`);
  out.push('</g>');
  out.push(`<g class="axis" fill="#424242" text-anchor="middle" font-size="12">`);
  out.push(`<line x1="${LEFT}" y1="${axisY}" x2="${LEFT + plotW}" y2="${axisY}" stroke="#9e9e9e"/>`);
  for (const t of logTicks(dLo, dHi)) out.push(`<text x="${num(x(t))}" y="${axisY + 18}">${tickLabel(t)}</text>`);
  out.push(`<text x="${LEFT + plotW / 2}" y="${axisY + 38}" font-size="13">spawn → exit, ms</text>`);
  out.push('</g>');

  rows.forEach((r, i) => {
    const s = sorted[i];
    const cy = TOP + i * ROW_H + ROW_H / 2;
    const colour = r.highlight ? ACCENT : OTHER;
    if (i % 2 === 1) out.push(`<rect x="0" y="${TOP + i * ROW_H}" width="${W}" height="${ROW_H}" fill="#fafafa"/>`);
    out.push(`<g class="row" data-runtime="${esc(r.label)}">`);
    out.push(
      `<text x="${LEFT - 12}" y="${cy + 4}" text-anchor="end" fill="#212121"${r.highlight ? ' font-weight="bold"' : ''}>${esc(r.label)}</text>`,
    );
    if (!s.length) {
      out.push(
        `<text x="${LEFT + 8}" y="${cy + 4}" fill="#9e9e9e" font-style="italic">${esc(r.status ?? 'no samples')}</text>`,
      );
      out.push('</g>');
      return;
    }
    const q = (p: number) => quantile(s, p);
    // Dots: evenly spaced quantiles keep the shape without thousands of nodes.
    const n = Math.min(maxDots, s.length);
    const dots: string[] = [];
    for (let k = 0; k < n; k++) {
      const v = s[n === s.length ? k : Math.round((k * (s.length - 1)) / (n - 1 || 1))];
      dots.push(`<circle cx="${num(x(v))}" cy="${num(cy + jitter(k) * ROW_H * 0.3)}" r="1.8"/>`);
    }
    out.push(`<g fill="${colour}" fill-opacity="0.22">${dots.join('')}</g>`);
    const [p10, p25, p50, p75, p90, p99] = [0.1, 0.25, 0.5, 0.75, 0.9, 0.99].map(q);
    const bh = ROW_H * 0.42;
    out.push(
      `<line x1="${num(x(p10))}" y1="${cy}" x2="${num(x(p90))}" y2="${cy}" stroke="${colour}" stroke-width="1.5"/>`,
    );
    for (const w of [p10, p90])
      out.push(
        `<line x1="${num(x(w))}" y1="${num(cy - bh / 4)}" x2="${num(x(w))}" y2="${num(cy + bh / 4)}" stroke="${colour}" stroke-width="1.5"/>`,
      );
    out.push(
      `<rect x="${num(x(p25))}" y="${num(cy - bh / 2)}" width="${num(Math.max(1, x(p75) - x(p25)))}" height="${num(bh)}" fill="${colour}" fill-opacity="0.18" stroke="${colour}" stroke-width="1.5"/>`,
    );
    out.push(
      `<line x1="${num(x(p50))}" y1="${num(cy - bh / 2 - 3)}" x2="${num(x(p50))}" y2="${num(cy + bh / 2 + 3)}" stroke="${colour}" stroke-width="3"/>`,
    );
    const d = x(p99);
    out.push(
      `<path d="M${num(d)} ${num(cy - 5)} L${num(d + 5)} ${cy} L${num(d)} ${num(cy + 5)} L${num(d - 5)} ${cy} Z" fill="${colour}"/>`,
    );
    const ratio = !Number.isFinite(baseP50) ? '' : i === baseIdx ? 'baseline' : `${(p50 / baseP50).toFixed(2)}×`;
    out.push(
      `<text x="${LEFT + plotW + 12}" y="${cy + 4}" fill="#212121">p50 ${p50.toFixed(2)} ms<tspan dx="8" fill="#757575">${esc(ratio)}</tspan></text>`,
    );
    out.push('</g>');
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
