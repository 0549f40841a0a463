// Summary statistics of latency samples. Samples are nanoseconds (what
// process.hrtime.bigint() differences give); summaries are milliseconds,
// the unit every table and chart prints. Quantiles come from
// simple-statistics (zero dependencies, well kept) rather than a home-made
// percentile, so the definition is a documented one.
import { quantileSorted, mean as ssMean } from 'simple-statistics';

export interface Summary {
  /** Number of samples. */
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
  /** Sequential launches per second, 1000 / mean; see launchesPerSecond for concurrent runs. */
  perSec: number;
}

/** Quantile p in [0, 1] of an ascending array (simple-statistics' quantileSorted); NaN when empty. */
export function quantile(sortedMs: number[], p: number): number {
  return sortedMs.length ? quantileSorted(sortedMs, p) : NaN;
}

/** Ascending copy of ns samples, in ms. */
export function sortedMs(samplesNs: readonly number[]): number[] {
  return samplesNs.map((ns) => ns / 1e6).sort((a, b) => a - b);
}

/** {n, p50, p90, p99, mean, min, max, perSec} in ms from ns samples. */
export function summarize(samplesNs: readonly number[]): Summary {
  const ms = sortedMs(samplesNs);
  const n = ms.length;
  const mean = n ? ssMean(ms) : NaN;
  return {
    n,
    p50: quantile(ms, 0.5),
    p90: quantile(ms, 0.9),
    p99: quantile(ms, 0.99),
    mean,
    min: n ? ms[0] : NaN,
    max: n ? ms[n - 1] : NaN,
    perSec: n ? 1000 / mean : NaN,
  };
}

/** Median of finite numbers (NaN when none): for per-pair figures. */
export function median(xs: readonly number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? quantileSorted(v, 0.5) : NaN;
}
