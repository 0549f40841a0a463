// Plain-text and Markdown tables for the bench reports.

/** Fixed-width number for tables; '-' for missing values. */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === undefined || x === null || Number.isNaN(x)) return '-';
  if (Math.abs(x) >= 1000) return x.toFixed(0);
  if (Math.abs(x) >= 100) return x.toFixed(1);
  return x.toFixed(digits);
}

export interface TableOptions {
  markdown?: boolean;
  /** One letter per column, l or r; default: first column left, the rest right. */
  align?: string;
}

/** Render rows (arrays of strings) as an aligned plain-text or Markdown table. */
export function table(header: string[], rows: string[][], { markdown = false, align }: TableOptions = {}): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c] ?? '').length)));
  const left = (c: number) => (align ? align[c] === 'l' : c === 0);
  const line = (r: string[]) =>
    r.map((cell, c) => (left(c) ? String(cell ?? '').padEnd(widths[c]) : String(cell ?? '').padStart(widths[c])));
  if (markdown) {
    const out = [
      `| ${line(header).join(' | ')} |`,
      `|${widths.map((w, c) => (left(c) ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|')}|`,
    ];
    for (const r of rows) out.push(`| ${line(r).join(' | ')} |`);
    return out.join('\n');
  }
  return [line(header).join('  '), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map((r) => line(r).join('  '))]
    .map((l) => l.trimEnd())
    .join('\n');
}
