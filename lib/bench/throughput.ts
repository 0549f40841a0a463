// Containers per second with a fixed number of launches in flight: a pilot
// runs job steps back to back and several at once, so this is the figure it
// feels. Drivers take turns in blocks (interleaved, as in the latency run)
// and the rate is total launches over total time across a driver's blocks.
import { hrtime } from 'node:process';
import { makeDrivers } from './drivers.js';
import { fmt, table } from './format.js';
import type { ExtraContext, ExtraSection } from './section.js';

export interface ThroughputOptions {
  /** Launches in flight: one level, or several (each a row per driver). */
  inflight: number | number[];
  /** Recorded launches per driver, over all blocks. */
  count: number;
  blocks?: number;
  /** Driver ids; default nodularity, the +netns variant when it was measured, and host when probed. */
  ids?: string[];
}

export interface ThroughputDriver {
  id: string;
  label: string;
  status: 'ok' | 'missing' | 'failed';
  detail: string | null;
  inflight: number;
  launches: number;
  perSec: number | null;
  minBlockPerSec: number | null;
  maxBlockPerSec: number | null;
}

/** Run `total` launches keeping `inflight` outstanding; resolves to elapsed ns, rejects on the first failure. */
function pump(launch: () => Promise<void>, total: number, inflight: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let started = 0;
    let done = 0;
    let failed = false;
    const t0 = hrtime.bigint();
    const startOne = () => {
      started++;
      launch().then(
        () => {
          if (failed) return;
          done++;
          if (done === total) resolve(Number(hrtime.bigint() - t0));
          else if (started < total) startOne();
        },
        (e: unknown) => {
          if (!failed) reject(e instanceof Error ? e : new Error(String(e)));
          failed = true;
        },
      );
    };
    for (let i = 0; i < Math.min(inflight, total); i++) startOne();
  });
}

/** The throughput section: a row per driver, a failing driver kept with its reason. */
export async function throughputSection(x: ExtraContext, o: ThroughputOptions): Promise<ExtraSection> {
  const blocks = o.blocks ?? 3;
  const levels = Array.isArray(o.inflight) ? o.inflight : [o.inflight];
  const ids = o.ids ?? [
    'nodularity',
    ...x.rows.filter((r) => r.id === 'nodularity-prepared' || r.id === 'nodularity-netns').map((r) => r.id),
    ...(x.drivers.runtimes.host ? ['host'] : []),
  ];
  const drivers = makeDrivers(x.drivers, ids, x.nod);
  const perBlock = Math.max(1, Math.ceil(o.count / blocks));
  const key = (id: string, level: number) => `${id}@${level}`;
  const spans = new Map<string, { n: number; ns: number }[]>();
  const fail = (d: (typeof drivers)[number], e: unknown) =>
    Object.assign(d, { status: 'failed', detail: e instanceof Error ? e.message : String(e) });
  for (const d of drivers) {
    if (d.status !== 'ok' || !d.launch) continue;
    try {
      await pump(d.launch, Math.min(50, perBlock), levels[0]); // warm-up
    } catch (e) {
      fail(d, e);
    }
  }
  for (let b = 0; b < blocks; b++) {
    for (const level of levels)
      for (const d of drivers) {
        if (d.status !== 'ok' || !d.launch) continue;
        try {
          const ns = await pump(d.launch, perBlock, level);
          spans.set(key(d.id, level), [...(spans.get(key(d.id, level)) ?? []), { n: perBlock, ns }]);
        } catch (e) {
          fail(d, e);
        }
      }
  }
  const results: ThroughputDriver[] = levels.flatMap((level) =>
    drivers.map((d) => {
      const s = spans.get(key(d.id, level)) ?? [];
      const n = s.reduce((a, v) => a + v.n, 0);
      const ns = s.reduce((a, v) => a + v.ns, 0);
      const rates = s.map((v) => v.n / (v.ns / 1e9));
      return {
        id: d.id,
        label: d.label,
        status: d.status,
        detail: d.detail,
        inflight: level,
        launches: n,
        perSec: n ? n / (ns / 1e9) : null,
        minBlockPerSec: rates.length ? Math.min(...rates) : null,
        maxBlockPerSec: rates.length ? Math.max(...rates) : null,
      };
    }),
  );
  const rows = results.map((d) => [
    d.label,
    String(d.inflight),
    String(d.launches),
    fmt(d.perSec, 0),
    d.launches ? `${fmt(d.minBlockPerSec, 0)}-${fmt(d.maxBlockPerSec, 0)}` : '-',
    d.status === 'ok' ? '' : `${d.status}: ${d.detail ?? ''}`,
  ]);
  const h = ['runtime', 'in flight', 'launches', 'containers/s', 'range over blocks', 'status'];
  return {
    title: `Throughput, ${levels.join(' and ')} launches in flight, ${blocks} blocks per runtime and level, interleaved`,
    data: { inflight: levels[0], levels, blocks, drivers: results },
    text: table(h, rows, { align: 'lrrrrl' }),
    markdown: table(h, rows, { markdown: true, align: 'lrrrrl' }),
  };
}
