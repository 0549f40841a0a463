#!/usr/bin/env node
// nodularity launch benchmark: `npm run bench` (or `node bench/index.mjs`).
//
// The runner and the report are the library's (lib/bench/run.ts, built into
// dist/bench): the very code `nodularity bench` runs. This script only picks
// the fuller defaults of the project's own benchmark (every nodularity
// variant, every installed runtime, throughput, the Node heap effect, the C
// floor, the speed targets as PASS/MISS), can measure another checkout's
// build (--dist, --baseline), and pastes the Markdown report into
// bench/RESULTS.md (--update-results). Targets are reported, never asserted:
// the exit status is 0 whenever the bench itself ran.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_DIR = dirname(BENCH_DIR);
const DIST_INDEX = join(REPO_DIR, 'dist', 'index.js');
const DIST_RUN = join(REPO_DIR, 'dist', 'bench', 'run.js');

const COMPARE = ['host', 'bwrap', 'ch-run', 'crun', 'runc'];
const SECTIONS = ['latency', 'throughput', 'pilot', 'heap', 'floor', 'cpu', 'phases', 'process'];
const DEFAULT_ONLY = 'latency,throughput,pilot,heap,floor,phases,process';

const USAGE = `usage: node bench/index.mjs [options]
  --runs N          latency launches per driver; other trials scale with it (default 1000)
  --block N         latency launches of one driver in a row before the next driver's turn (default 5; 1 = strict alternation)
  --quick           --runs 150 and shorter trials, for a smoke run
  --only LIST       comma list of: ${SECTIONS.join(',')} (default ${DEFAULT_ONLY}; latency always runs)
  --drivers LIST    latency drivers (default all: nodularity, its variants, floor, ${COMPARE.join(', ')})
  --heap-mib N      JS heap retained by the big-heap process (default 1024)
  --heap-rounds N   small/big heap process pairs (default 5; the median pair is the figure)
  --inflight LIST   launches in flight for the throughput and pilot trials, comma list (default 2,8)
  --out DIR         where to build the rootfs and write results (default bench/out/launch, else a temp dir)
  --dist FILE       the library entry to measure (default dist/index.js; e.g. another checkout's build)
  --baseline FILE   also measure this build's default container (driver nodularity-baseline) in the same
                    interleaved latency run, e.g. main's dist/index.js before a change
  --update-results  rewrite the launch section of bench/RESULTS.md (root or user, by who ran it) from this run
  --render FILE     print the report of a saved results JSON instead of measuring (with --update-results: paste it)
  -h, --help`;

function usage(msg) {
  console.error(`${msg}\n${USAGE}`);
  process.exit(2);
}

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
    return usage(e.message);
  }
})();
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}

function intOpt(name, dflt, min = 1) {
  if (opt[name] === undefined) return dflt;
  const n = Number(opt[name]);
  if (!Number.isInteger(n) || n < min)
    usage(`--${name} must be an integer >= ${min}, got ${JSON.stringify(opt[name])}`);
  return n;
}

if (!existsSync(DIST_RUN)) {
  console.error(`${DIST_RUN} is missing: build the library first (\`npm run build\`, or \`npm run build:ts\`)`);
  process.exit(1);
}
const bench = await import(pathToFileURL(DIST_RUN).href);

const runs = intOpt('runs', opt.quick ? 150 : 1000);
const block = intOpt('block', 5);
const heapMib = intOpt('heap-mib', 1024);
const heapRounds = intOpt('heap-rounds', opt.quick ? 1 : 5);
const inflight = (opt.inflight ?? '2,8').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1)
    usage(`--inflight must be a comma list of integers >= 1, got ${JSON.stringify(opt.inflight)}`);
  return n;
});
const only = new Set((opt.only ?? DEFAULT_ONLY).split(','));
for (const s of only) if (!SECTIONS.includes(s)) usage(`--only: unknown trial ${s}`);
const known = ['nodularity', ...(opt.baseline ? ['nodularity-baseline'] : []), ...bench.VARIANT_IDS, ...COMPARE];
const drivers = opt.drivers ? opt.drivers.split(',') : known;
for (const d of drivers) if (!known.includes(d)) usage(`--drivers: unknown driver ${d} (known: ${known.join(', ')})`);

const say = (m) => process.stderr.write(`${m}\n`);

/**
 * bench/out/launch when we may write there; otherwise (an unprivileged user
 * running a checkout owned by someone else) a per-user temp dir, so the
 * rootfs is owned by the user who launches the containers.
 */
function chooseOutDir(requested) {
  const { writableDir } = bench;
  if (requested) return requested; // the runner says so when it is not writable
  const inRepo = join(BENCH_DIR, 'out', 'launch');
  if (writableDir(inRepo)) return inRepo;
  return join(tmpdir(), `nodularity-bench-${process.getuid()}`);
}

/** Import a nodularity build: the module, or {error} saying what to do. */
async function loadNodularity(file) {
  if (!existsSync(file)) return { error: `${file} does not exist: build it with \`npm run build\`` };
  try {
    const mod = await import(pathToFileURL(file).href);
    if (typeof mod.run !== 'function' || typeof mod.spawn !== 'function')
      return { error: `${file} exports no run()/spawn() (found: ${Object.keys(mod).join(', ') || 'nothing'})` };
    return mod;
  } catch (e) {
    return { error: `importing ${file} failed: ${e?.message ?? e}` };
  }
}

/**
 * Warnings when the build being measured is older than its sources: figures
 * from a stale dist/ or addon would be credited to code that is not in it.
 * Per file, so the warning names what is stale.
 */
function buildStaleness(dist) {
  if (dist !== DIST_INDEX) return []; // another checkout: its owner knows
  const newest = (dir, test) => {
    const found = [];
    const walk = (d) => {
      let entries;
      try {
        entries = readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (test(e.name)) found.push([p, statSync(p).mtimeMs]);
      }
    };
    walk(dir);
    return found;
  };
  const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);
  const stale = newest(join(REPO_DIR, 'lib'), (n) => n.endsWith('.ts') && !n.endsWith('.d.ts'))
    .filter(
      ([p, t]) => t > mtime(join(REPO_DIR, 'dist', p.slice(join(REPO_DIR, 'lib').length + 1).replace(/\.ts$/, '.js'))),
    )
    .map(([p]) => p.slice(REPO_DIR.length + 1));
  const warnings = [];
  if (stale.length)
    warnings.push(`dist/ is older than ${stale.join(', ')}: run \`npm run build:ts\` to measure the current code`);
  const max = (xs) => Math.max(0, ...xs.map(([, t]) => t));
  const native = max(newest(join(REPO_DIR, 'native'), (n) => /\.(cc|c|h)$/.test(n)));
  const addon = max(newest(join(REPO_DIR, 'build', 'Release'), (n) => n.endsWith('.node')));
  if (native && addon && native > addon)
    warnings.push(
      'the addon in build/Release is older than native/: run `npx node-gyp rebuild` to measure the current code',
    );
  return warnings;
}

/** Run the bench: the library's runner with this script's defaults. */
async function measure() {
  const dist = resolve(opt.dist ?? DIST_INDEX);
  const nod = await loadNodularity(dist);
  const baseline = opt.baseline ? await loadNodularity(resolve(opt.baseline)) : undefined;
  const notes = buildStaleness(dist).map((w) => `WARNING: ${w}`);
  for (const n of notes) say(`setup: ${n}`);
  let lastTenth = -1;
  return bench.runBench(
    {
      runs,
      block,
      concurrency: 1,
      warmup: opt.quick ? 5 : 20,
      network: 'host',
      compare: COMPARE.filter((id) => drivers.includes(id)),
      variants: bench.VARIANT_IDS.filter((id) => drivers.includes(id)),
      ...(baseline && drivers.includes('nodularity-baseline') ? { baseline } : {}),
      nodUrl: dist === DIST_INDEX ? undefined : pathToFileURL(dist).href,
      // A very slow runtime (runc) is sampled one round in k so it does not stretch the whole run.
      budgetMs: 20_000,
      out: chooseOutDir(opt.out),
      args: ['/bin/true'],
      command: `node bench/index.mjs${process.argv.length > 2 ? ' ' + process.argv.slice(2).join(' ') : ''}`,
      notes,
      log: (m) => say(`bench: ${m}`),
      onProgress: (done, total) => {
        const tenth = Math.floor((done / Math.max(1, total)) * 10);
        if (tenth !== lastTenth) say(`bench: latency ${done}/${total} launches`);
        lastTenth = tenth;
      },
      sections: bench.benchSections({
        phases: only.has('phases') ? { runs: Math.max(50, Math.round(runs / 5)) } : undefined,
        throughput: only.has('throughput') ? { inflight, count: Math.max(300, Math.round(runs * 1.5)) } : undefined,
        pilot: only.has('pilot') ? { levels: inflight, count: Math.max(150, Math.round(runs / 2)) } : undefined,
        process: only.has('process') ? { runs: Math.max(20, Math.round(runs / 20)) } : undefined,
        heap: only.has('heap')
          ? { mib: heapMib, runs: Math.max(100, Math.round(runs / 4)), rounds: heapRounds }
          : undefined,
        cpu: only.has('cpu'),
        floor: only.has('floor') ? { loops: Math.max(200, Math.round(runs / 2)) } : undefined,
        targets: true,
      }),
    },
    nod,
  );
}

// --render re-renders a saved results JSON (e.g. from an unprivileged run
// that could not write bench/RESULTS.md) without measuring anything.
let result;
try {
  result = opt.render ? JSON.parse(readFileSync(opt.render, 'utf8')) : await measure();
} catch (e) {
  if (e?.name !== 'BenchUsageError') throw e;
  console.error(`bench: ${e.message}`);
  process.exit(2);
}
console.log(bench.renderText(result));
if (opt['update-results']) updateResultsMd(bench.renderMarkdown(result), result.machine.uid);

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
