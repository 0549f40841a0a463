#!/usr/bin/env node
// nodularity launch benchmark: `npm run bench` (or `node bench/index.mjs`).
//
// Prepares a busybox rootfs, the C floor and OCI bundles, probes the other
// runtimes installed here, then runs each kind of trial in a fresh Node
// process (better-sqlite3's runner style) and prints one report: latency
// side by side, throughput, heap independence, event-loop hold, the C floor,
// and the project's speed targets as PASS/MISS. Targets are reported, never
// asserted: the exit status is 0 whenever the bench itself ran.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { prepare, machineInfo, buildStaleness, BENCH_DIR } from './lib/setup.mjs';
import { LABELS, DRIVER_IDS, BASELINE_ID, loadNodularity, nodularityArgs } from './lib/drivers.mjs';
import { runTrialProcess } from './lib/trial-io.mjs';
import { summarize, fmt, table } from './lib/stats.mjs';

const USAGE = `usage: node bench/index.mjs [options]
  --runs N          latency launches per driver; other trials scale with it (default 1000)
  --block N         latency launches of one driver in a row before the next driver's turn (default 5; 1 = strict alternation)
  --quick           --runs 150 and shorter trials, for a smoke run
  --only LIST       comma list of: latency,throughput,heap,floor (default all)
  --drivers LIST    latency drivers (default all: ${DRIVER_IDS.join(',')})
  --heap-mib N      JS heap retained by the big-heap process (default 1024)
  --heap-rounds N   small/big heap process pairs (default 5; the median pair is the figure)
  --inflight N      launches in flight for the throughput trial (default 2)
  --out DIR         where to build the rootfs and write results (default bench/out/launch, else a temp dir)
  --dist FILE       the library entry to measure (default dist/index.js; e.g. another checkout's build)
  --baseline FILE   also measure this build's default container (driver nodularity-baseline) in the same
                    interleaved latency run, e.g. main's dist/index.js before a change
  --update-results  rewrite the launch section of bench/RESULTS.md (root or user, by who ran it) from this run
  --render FILE     print the report of a saved results JSON instead of measuring (with --update-results: paste it)
  -h, --help`;

const { values: opt } = (() => {
  try {
    return parseArgs({
      options: {
        runs: { type: 'string' },
        block: { type: 'string' },
        quick: { type: 'boolean' },
        only: { type: 'string' },
        drivers: { type: 'string' },
        'heap-mib': { type: 'string' },
        'heap-rounds': { type: 'string' },
        inflight: { type: 'string' },
        out: { type: 'string' },
        dist: { type: 'string' },
        baseline: { type: 'string' },
        render: { type: 'string' },
        'update-results': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
  } catch (e) {
    console.error(`${e.message}\n${USAGE}`);
    process.exit(2);
  }
})();
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}

function intOpt(name, dflt, min = 1) {
  if (opt[name] === undefined) return dflt;
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${JSON.stringify(opt[name])}`);
    process.exit(2);
  }
  return n;
}

const runs = intOpt('runs', opt.quick ? 150 : 1000);
const block = intOpt('block', 5);
const heapMib = intOpt('heap-mib', 1024);
const heapRounds = intOpt('heap-rounds', opt.quick ? 1 : 5);
const inflight = intOpt('inflight', 2);
const only = new Set((opt.only ?? 'latency,throughput,heap,floor').split(','));
for (const t of only)
  if (!['latency', 'throughput', 'heap', 'floor'].includes(t)) {
    console.error(`--only: unknown trial ${t}\n${USAGE}`);
    process.exit(2);
  }
const knownDrivers = opt.baseline ? [BASELINE_ID, ...DRIVER_IDS] : DRIVER_IDS;
const latencyDrivers = opt.drivers ? opt.drivers.split(',') : knownDrivers;
for (const d of latencyDrivers)
  if (!knownDrivers.includes(d)) {
    console.error(`--drivers: unknown driver ${d} (known: ${DRIVER_IDS.join(', ')})`);
    process.exit(2);
  }

const say = (...a) => console.error(...a);
const command = `node bench/index.mjs${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
const started = Date.now();

// ---- setup and trials ----------------------------------------------------

/** Prepare, probe and run the trials; returns the raw results. */
async function measure() {
  const machine = machineInfo();
  say(
    `nodularity bench: ${machine.kernel}, ${machine.nproc} CPU (${machine.cpu ?? '?'}), Node ${machine.node}, uid ${machine.uid}`,
  );
  let context, contextPath;
  try {
    ({ context, contextPath } = await prepare({
      outDir: opt.out,
      dist: opt.dist,
      baseline: opt.baseline,
      log: (m) => say(`setup: ${m}`),
    }));
  } catch (e) {
    console.error(`bench setup failed: ${e.message}`);
    process.exit(1);
  }

  // One launch here first, so a broken build is reported once, clearly, rather
  // than as a missing row in every table.
  const nodularity = await (async () => {
    const nod = await loadNodularity(context);
    if (nod.error) return { status: 'missing', detail: nod.error };
    try {
      const { spec, options } = nodularityArgs(context, 'nodularity');
      const res = await nod.mod.run(spec, options);
      if (res.exitCode !== 0)
        return {
          status: 'failed',
          detail: `/bin/true in the default container exited ${res.exitCode} (signal ${res.signal})`,
        };
      return { status: 'ok', detail: null };
    } catch (e) {
      return { status: 'failed', detail: `run() threw: ${e?.message ?? e}` };
    }
  })();
  say(`setup: nodularity: ${nodularity.status}${nodularity.detail ? ' - ' + nodularity.detail : ''}`);
  nodularity.warnings = buildStaleness(context.dist);
  for (const w of nodularity.warnings) say(`setup: WARNING: ${w}`);
  for (const rt of Object.values(context.runtimes))
    say(
      `setup: ${rt.name}: ${rt.status}${rt.version ? ` (${rt.version})` : ''}${rt.detail ? ' - ' + rt.detail : ''}${rt.note ? ' - ' + rt.note : ''}`,
    );

  // ---- trials --------------------------------------------------------------
  const results = {
    machine,
    command,
    uid: context.uid,
    options: { runs, block, heapMib, heapRounds, inflight },
    context: { outDir: context.outDir, rootfs: context.rootfs, runtimes: context.runtimes },
    nodularity,
  };

  if (only.has('latency')) {
    say(
      `\nlatency: ${runs} launches of each of ${latencyDrivers.length} drivers, interleaved in blocks of ${block} (fresh node process)`,
    );
    results.latency = runTrialProcess('latency', contextPath, {
      runs,
      block,
      warmup: opt.quick ? 5 : 20,
      drivers: latencyDrivers.join(','),
    });
  }
  if (only.has('throughput')) {
    const count = Math.max(300, Math.round(runs * 1.5));
    say(`\nthroughput: ${count} launches per driver, ${inflight} in flight (fresh node process)`);
    results.throughput = runTrialProcess('throughput', contextPath, { inflight, count, blocks: 3 });
  }
  if (only.has('heap')) {
    // Same flags for both sizes, so the only difference is the retained heap;
    // small and big alternate so drift hits both.
    const flags = [`--max-old-space-size=${Math.max(2048, heapMib * 2)}`, '--expose-gc'];
    // Several short pairs rather than two long ones: the figure is the median
    // pair, so a burst of other work on the machine that hits one process
    // cannot pass for a heap effect.
    const heapRuns = Math.max(100, Math.round(runs / 4));
    results.heap = [];
    for (let r = 0; r < heapRounds; r++) {
      for (const mib of [0, heapMib]) {
        say(
          `\nheap: round ${r + 1}/${heapRounds}, ${mib} MiB retained, ${heapRuns} launches each (fresh node process)`,
        );
        results.heap.push(runTrialProcess('heap', contextPath, { 'heap-mib': mib, runs: heapRuns }, flags));
      }
    }
  }
  if (only.has('floor')) {
    // The floor loops in C, without Node: what the kernel work alone costs.
    const loops = Math.max(200, Math.round(runs / 2));
    const modes = [
      ['vfork', []],
      ['fork', ['--fork']],
      ['vfork+netns', ['--net']],
    ];
    results.floor = Object.fromEntries(modes.map(([m]) => [m, { samples: [], error: null }]));
    say(`\nfloor: ${loops} in-process launches per mode, in 2 alternating blocks`);
    for (let block = 0; block < 2; block++) {
      for (const [mode, args] of modes) {
        const f = results.floor[mode];
        if (f.error) continue;
        try {
          const out = execFileSync(context.floor, [...args, '--loop', String(Math.ceil(loops / 2)), context.rootfs], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          f.samples.push(...JSON.parse(out).ns);
        } catch (e) {
          f.error = `${context.floor} ${args.join(' ')}: ${(e.stderr || e.message || '').trim()}`;
        }
      }
    }
  }
  results.elapsedSeconds = (Date.now() - started) / 1000;
  results.loadavgAtEnd = loadavg();
  return results;
}

// ---- report --------------------------------------------------------------
// --render re-renders a saved results JSON (e.g. from an unprivileged run
// that could not write bench/RESULTS.md) without measuring anything.
const results = opt.render ? JSON.parse(readFileSync(opt.render, 'utf8')) : await measure();
const report = buildReport(results);
console.log(report.text);
if (!opt.render) {
  const stamp = results.machine.date.replace(/[:.]/g, '-');
  const jsonPath = join(results.context.outDir, `results-${stamp}.json`);
  writeFileSync(jsonPath, JSON.stringify({ ...results, summary: report.summary }, null, 1));
  writeFileSync(
    join(results.context.outDir, 'results-latest.json'),
    JSON.stringify({ ...results, summary: report.summary }, null, 1),
  );
  writeFileSync(join(results.context.outDir, 'results-latest.md'), report.markdown);
  say(
    `\nraw samples and summary: ${jsonPath}\nmarkdown: ${join(results.context.outDir, 'results-latest.md')}\ntook ${results.elapsedSeconds.toFixed(0)} s`,
  );
}
if (opt['update-results']) updateResultsMd(report.markdown, results.uid);

// ---- helpers -------------------------------------------------------------

/** Build tables, targets and a JSON summary from the trials' raw results. */
function buildReport(res) {
  const text = [];
  const md = [];
  const summary = { latency: {}, throughput: {}, heap: null, block: null, floor: {}, targets: [] };
  const ok = (x) => x && !x.error;

  // Latency table: every driver, plus the floor's in-process rows.
  const rows = [];
  const notes = (res.nodularity.warnings ?? []).map((w) => `WARNING: ${w}`);
  const busiest = Math.max(res.machine.loadavg?.[0] ?? 0, res.loadavgAtEnd?.[0] ?? 0);
  if (busiest > res.machine.nproc / 2)
    notes.push(
      `WARNING: other work kept the machine busy (1-min load average up to ${busiest.toFixed(2)} on ${res.machine.nproc} CPUs): absolute times are inflated and noisier; ratios within one table suffer less`,
    );
  let base = null;
  if (ok(res.latency)) {
    for (const d of res.latency.drivers) {
      const s = d.status === 'ok' || d.samples.length ? summarize(d.samples) : null;
      summary.latency[d.id] = {
        status: d.status,
        detail: d.detail,
        version: d.version ?? null,
        stride: d.stride,
        ...(s ?? {}),
      };
      if (d.id === 'nodularity' && d.status === 'ok') base = s;
    }
  } else if (res.latency) {
    notes.push(`latency trial failed: ${res.latency.error}`);
  }
  for (const [mode, f] of Object.entries(res.floor ?? {})) {
    summary.floor[mode] = f.error ? { status: 'failed', detail: f.error } : { status: 'ok', ...summarize(f.samples) };
  }
  const ratio = (x, key) => (base && x && Number.isFinite(x[key]) ? x[key] / base[key] : NaN);
  const pushRow = (label, s, note) => {
    if (s.status !== 'ok' || !s.n) {
      rows.push([label, '-', '-', '-', '-', '-', '-', '-', '-', s.status ?? 'not run']);
      if (s.detail) notes.push(`${label}: ${s.status}: ${s.detail}`);
      return;
    }
    rows.push([
      label,
      String(s.n),
      fmt(s.p50),
      fmt(s.p90),
      fmt(s.p99),
      fmt(s.mean),
      fmt(s.perSec, 0),
      fmt(ratio(s, 'p50'), 2),
      fmt(ratio(s, 'mean'), 2),
      note ?? '',
    ]);
  };
  for (const [id, s] of Object.entries(summary.latency)) {
    const rt = res.context.runtimes[id];
    pushRow(LABELS[id] ?? id, s, rt?.note ? 'see note' : s.stride > 1 ? `1 round in ${s.stride}` : '');
    if (rt?.note && s.status === 'ok') notes.push(`${LABELS[id] ?? id}: ${rt.note}`);
  }
  for (const [mode, s] of Object.entries(summary.floor)) pushRow(`floor.c in-process (${mode})`, s, 'no Node');
  const header = [
    'launcher (/bin/true)',
    'n',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'mean ms',
    'launch/s',
    'x p50',
    'x mean',
    'note',
  ];
  if (rows.length) {
    const title = `Spawn -> exit latency, sequential, drivers interleaved in blocks of ${res.latency.block} (x = time relative to nodularity run())`;
    text.push(`\n${title}\n${table(header, rows, { align: 'lrrrrrrrrl' })}`);
    md.push(`### ${title}\n\n${table(header, rows, { markdown: true, align: 'lrrrrrrrrl' })}`);
  }

  // Throughput.
  if (ok(res.throughput)) {
    const trows = res.throughput.drivers.map((d) => {
      summary.throughput[d.id] = {
        status: d.status,
        detail: d.detail,
        perSec: d.perSec,
        launches: d.launches,
        minBlockPerSec: d.minBlockPerSec,
        maxBlockPerSec: d.maxBlockPerSec,
      };
      if (d.status !== 'ok') notes.push(`throughput ${d.id}: ${d.status}: ${d.detail}`);
      const range = d.launches ? `${fmt(d.minBlockPerSec, 0)}-${fmt(d.maxBlockPerSec, 0)}` : d.status;
      return [LABELS[d.id] ?? d.id, String(d.launches), fmt(d.perSec, 0), range];
    });
    const title = `Throughput, ${res.throughput.inflight} launches in flight`;
    const th = ['launcher', 'launches', 'containers/s', 'range over blocks'];
    text.push(`\n${title}\n${table(th, trows)}`);
    md.push(`### ${title}\n\n${table(th, trows, { markdown: true })}`);
  } else if (res.throughput) notes.push(`throughput trial failed: ${res.throughput.error}`);

  // Heap independence and event-loop hold, pooled over the heap rounds.
  if (res.heap) {
    const pool = (mibFilter) => {
      const runsOf = res.heap.filter((h) => ok(h) && mibFilter(h.heapMib));
      const pick = (k, f) => runsOf.flatMap((h) => (h[k].status === 'ok' ? h[k][f] : []));
      const failed = runsOf.flatMap((h) =>
        ['nodularity', 'child_process'].filter((k) => h[k].status !== 'ok').map((k) => `${k}: ${h[k].detail}`),
      );
      return {
        heapUsedMiB: runsOf.length ? Math.max(...runsOf.map((h) => h.heapUsedMiB)) : NaN,
        rssMiB: runsOf.length ? Math.max(...runsOf.map((h) => h.rssMiB)) : NaN,
        nodularity: summarize(pick('nodularity', 'samples')),
        block: summarize(pick('nodularity', 'block')),
        toSpawned: summarize(pick('nodularity', 'toSpawned')),
        cloneWindow: summarize(pick('nodularity', 'cloneWindow')),
        plan: summarize(pick('nodularity', 'plan')),
        child_process: summarize(pick('child_process', 'samples')),
        failed: [...new Set(failed)],
      };
    };
    for (const h of res.heap) if (!ok(h)) notes.push(`heap trial failed: ${h.error}`);
    const small = pool((m) => m === 0);
    const big = pool((m) => m > 0);
    const pct = (a, b) => ((b - a) / a) * 100;
    // Per small/big pair as well: a burst of other load on the machine hits
    // one pair, and the spread across pairs shows it.
    const pairs = [];
    for (let i = 0; i + 1 < res.heap.length; i += 2) {
      const [a, b] = [res.heap[i], res.heap[i + 1]];
      if (!ok(a) || !ok(b) || !a.nodularity.samples.length || !b.nodularity.samples.length) continue;
      pairs.push({
        nodularityPct: pct(summarize(a.nodularity.samples).p50, summarize(b.nodularity.samples).p50),
        childProcessPct: pct(summarize(a.child_process.samples).p50, summarize(b.child_process.samples).p50),
      });
    }
    const median = (xs) => {
      const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
      if (!v.length) return NaN;
      return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    };
    summary.heap = {
      small,
      big,
      pairs,
      pooledNodularityPct: pct(small.nodularity.p50, big.nodularity.p50),
      pooledChildProcessPct: pct(small.child_process.p50, big.child_process.p50),
      nodularityPct: median(pairs.map((p) => p.nodularityPct)),
      childProcessPct: median(pairs.map((p) => p.childProcessPct)),
    };
    summary.block = { small: small.block, big: big.block };
    for (const f of [...small.failed, ...big.failed]) notes.push(`heap trial ${f}`);
    const hrows = [
      [
        'nodularity spawn()+exit',
        fmt(small.nodularity.p50),
        fmt(big.nodularity.p50),
        `${fmt(summary.heap.pooledNodularityPct, 1)} %`,
        fmt(small.nodularity.p99),
        fmt(big.nodularity.p99),
      ],
      [
        'child_process.spawn',
        fmt(small.child_process.p50),
        fmt(big.child_process.p50),
        `${fmt(summary.heap.pooledChildProcessPct, 1)} %`,
        fmt(small.child_process.p99),
        fmt(big.child_process.p99),
      ],
      [
        'nodularity spawn() call alone',
        fmt(small.block.p50),
        fmt(big.block.p50),
        `${fmt(pct(small.block.p50, big.block.p50), 1)} %`,
        fmt(small.block.p99),
        fmt(big.block.p99),
      ],
    ];
    if (small.plan.n)
      hrows.push([
        '  of which prepareLaunch() (TS)',
        fmt(small.plan.p50),
        fmt(big.plan.p50),
        `${fmt(pct(small.plan.p50, big.plan.p50), 1)} %`,
        fmt(small.plan.p99),
        fmt(big.plan.p99),
      ]);
    if (small.cloneWindow.n)
      hrows.push([
        'nodularity clone() vfork window',
        fmt(small.cloneWindow.p50),
        fmt(big.cloneWindow.p50),
        `${fmt(pct(small.cloneWindow.p50, big.cloneWindow.p50), 1)} %`,
        fmt(small.cloneWindow.p99),
        fmt(big.cloneWindow.p99),
      ]);
    if (small.toSpawned.n)
      hrows.push([
        'nodularity spawn() -> spawned',
        fmt(small.toSpawned.p50),
        fmt(big.toSpawned.p50),
        `${fmt(pct(small.toSpawned.p50, big.toSpawned.p50), 1)} %`,
        fmt(small.toSpawned.p99),
        fmt(big.toSpawned.p99),
      ]);
    const title = `Heap independence: fresh processes with ~0 vs ${fmt(big.heapUsedMiB, 0)} MiB JS heap (rss ${fmt(small.rssMiB, 0)} vs ${fmt(big.rssMiB, 0)} MiB), ${pairs.length} alternated pairs, samples pooled`;
    const hh = ['ms', 'p50 small', 'p50 big', 'diff', 'p99 small', 'p99 big'];
    const perPair = pairs.length
      ? `p50 difference, median pair: nodularity ${fmt(summary.heap.nodularityPct, 1)} %, child_process ${fmt(summary.heap.childProcessPct, 1)} % ` +
        `(each pair: nodularity ${pairs.map((p) => `${fmt(p.nodularityPct, 1)}`).join(', ')}; child_process ${pairs.map((p) => `${fmt(p.childProcessPct, 1)}`).join(', ')})`
      : '';
    text.push(`\n${title}\n${table(hh, hrows)}\n${perPair}`);
    md.push(`### ${title}\n\n${table(hh, hrows, { markdown: true })}\n\n${perPair}`);
  }

  // Targets.
  const T = summary.targets;
  const L = summary.latency;
  const target = (name, pass, measured, why) =>
    T.push({ name, result: pass === null ? 'N/A' : pass ? 'PASS' : 'MISS', measured, ...(why ? { why } : {}) });
  const have = (s) => s && s.status === 'ok' && s.n > 0;
  const nod = L.nodularity;
  const why = (s, id) =>
    s?.detail ? `${LABELS[id] ?? id} ${s.status}: ${s.detail}` : `${LABELS[id] ?? id} not measured`;
  const cmp = (name, [a, aId], [b, bId], f, fmtMeasured) => {
    if (!have(a)) return target(name, null, '-', why(a, aId));
    if (!have(b)) return target(name, null, '-', why(b, bId));
    const v = f(a, b);
    target(name, v.pass, fmtMeasured(v));
  };
  cmp(
    'run() p50 <= child_process.spawn p50',
    [nod, 'nodularity'],
    [L.host, 'host'],
    (a, b) => ({ pass: a.p50 <= b.p50, a: a.p50, b: b.p50 }),
    (v) => `${fmt(v.a)} vs ${fmt(v.b)} ms`,
  );
  for (const [id, limit] of [
    ['nodularity', 1.2],
    ['nodularity-netns', 1.5],
  ]) {
    const s = L[id];
    if (!have(s)) target(`${LABELS[id]} p50 < ${limit} ms`, null, '-', why(s, id));
    else target(`${LABELS[id]} p50 < ${limit} ms`, s.p50 < limit, `${fmt(s.p50)} ms`);
  }
  for (const [id, k] of [
    ['bwrap', 4],
    ['ch-run', 2],
    ['crun', 8],
  ]) {
    cmp(
      `>= ${k}x faster than ${id} (p50)`,
      [nod, 'nodularity'],
      [L[id], id],
      (a, b) => ({ pass: b.p50 / a.p50 >= k, r: b.p50 / a.p50 }),
      (v) => `${fmt(v.r, 2)}x`,
    );
  }
  const tp = summary.throughput.nodularity;
  if (tp && tp.status === 'ok')
    target(
      `${res.throughput.inflight} in flight: >= 1500 containers/s (no netns)`,
      tp.perSec >= 1500,
      `${fmt(tp.perSec, 0)}/s`,
    );
  else
    target(
      `${res.options?.inflight ?? 2} in flight: >= 1500 containers/s (no netns)`,
      null,
      '-',
      why(tp, 'nodularity'),
    );
  if (summary.heap && summary.heap.small.nodularity.n && summary.heap.big.nodularity.n) {
    target(
      `${res.options?.heapMib ?? 1024} MiB heap adds < 10 % (p50, median pair)`,
      summary.heap.nodularityPct < 10,
      `${fmt(summary.heap.nodularityPct, 1)} %`,
    );
  } else target('1 GiB heap adds < 10 %', null, '-', 'not measured');
  const blk = summary.block?.small;
  if (blk && blk.n) {
    target('spawn() holds the loop < 0.2 ms (p50)', blk.p50 < 0.2, `${fmt(blk.p50)} ms`);
    target('spawn() holds the loop < 0.2 ms (p99)', blk.p99 < 0.2, `${fmt(blk.p99)} ms`);
  } else target('spawn() holds the loop < 0.2 ms', null, '-', 'not measured');

  const trows = T.map((t) => [t.result, t.name, t.measured, t.why ?? '']);
  text.push(
    `\nTargets (reported, not asserted)\n${table(['result', 'target', 'measured', 'note'], trows, { align: 'llrl' })}`,
  );
  md.push(
    `### Targets\n\n${table(['result', 'target', 'measured', 'note'], trows, { markdown: true, align: 'llrl' })}`,
  );
  if (notes.length) {
    notes.splice(0, notes.length, ...new Set(notes));
    text.push(`\nNotes\n${notes.map((n) => `- ${n}`).join('\n')}`);
    md.push(`### Notes\n\n${notes.map((n) => `- ${n}`).join('\n')}`);
  }
  const head = [
    `Machine: ${res.machine.nproc} CPU (${res.machine.cpu ?? 'unknown CPU'}), ${res.machine.kernel}, ${res.machine.os ?? ''}, Node ${res.machine.node}`,
    `Date: ${res.machine.date}; run as uid ${res.uid}; took ${res.elapsedSeconds.toFixed(0)} s; load average ${res.machine.loadavg.map((x) => x.toFixed(2)).join(' ')} before, ${res.loadavgAtEnd.map((x) => x.toFixed(2)).join(' ')} after`,
    `Command: \`${res.command}\`; tree: ${res.machine.git ?? 'unknown'}`,
  ];
  const versions = Object.values(res.context.runtimes)
    .map((r) => `${r.name} ${r.status === 'ok' ? r.version : `(${r.status})`}`)
    .join(', ');
  head.push(`Runtimes: ${versions}`);
  return {
    text: text.join('\n'),
    markdown: `${head.map((h) => `${h}  `).join('\n')}\n\n${md.join('\n\n')}\n`,
    summary,
  };
}

/**
 * Replace the text between the launch markers in bench/RESULTS.md, leaving
 * every other section (the image-unpack one belongs to another bench) alone.
 */
function updateResultsMd(markdown, uid) {
  const path = join(BENCH_DIR, 'RESULTS.md');
  const begin = `<!-- launch-results:${uid === 0 ? 'root' : 'user'}:begin -->`;
  const end = begin.replace(':begin', ':end');
  if (!existsSync(path)) return say(`--update-results: ${path} does not exist`);
  const doc = readFileSync(path, 'utf8');
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) return say(`--update-results: markers ${begin} ... ${end} not found in ${path}`);
  writeFileSync(path, doc.slice(0, i + begin.length) + '\n' + markdown + doc.slice(j));
  say(`updated ${path}`);
}
