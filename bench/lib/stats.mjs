// Summary statistics for latency samples. Samples are nanoseconds (numbers);
// summaries are milliseconds, which is the unit every table prints.

/** Nearest-rank percentile of an ascending array; p in [0, 100]. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** {n, p50, p90, p99, mean, min, max, perSec} in ms from ns samples. */
export function summarize(samplesNs) {
  const ms = samplesNs.map((ns) => ns / 1e6).sort((a, b) => a - b);
  const n = ms.length;
  const mean = n ? ms.reduce((a, b) => a + b, 0) / n : NaN;
  return {
    n,
    p50: percentile(ms, 50),
    p90: percentile(ms, 90),
    p99: percentile(ms, 99),
    mean,
    min: ms[0] ?? NaN,
    max: ms[n - 1] ?? NaN,
    // Sequential launches: one after the other, so rate is the inverse of the mean.
    perSec: n ? 1000 / mean : NaN,
  };
}

/** Fixed-width number for tables; '-' for missing values. */
export function fmt(x, digits = 3) {
  if (x === undefined || x === null || Number.isNaN(x)) return '-';
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 100) return x.toFixed(1);
  return x.toFixed(digits);
}

/**
 * Render rows (arrays of strings) as an aligned plain-text or Markdown table.
 * `align` has one letter per column, l or r; by default the first column is
 * left-aligned (names) and the rest right-aligned (numbers).
 */
export function table(header, rows, { markdown = false, align } = {}) {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c] ?? '').length)));
  const left = (c) => (align ? align[c] === 'l' : c === 0);
  const line = (r) =>
    r.map((cell, c) => (left(c) ? String(cell ?? '').padEnd(widths[c]) : String(cell ?? '').padStart(widths[c])));
  if (markdown) {
    const out = [`| ${line(header).join(' | ')} |`, `|${widths.map((w, c) => (left(c) ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|')}|`];
    for (const r of rows) out.push(`| ${line(r).join(' | ')} |`);
    return out.join('\n');
  }
  return [line(header).join('  '), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => line(r).join('  '))]
    .map((l) => l.trimEnd())
    .join('\n');
}
