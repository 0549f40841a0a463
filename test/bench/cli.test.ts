// `nodularity bench` end to end through the installed command (bin/nodularity):
// the default image, nodularity and at least one other runtime, consistent
// figures, a chart naming every runtime, and errors naming the option. And the
// one runner behind both it and `npm run bench` (bench/index.mjs): variants,
// the optional sections and the targets, in one report format.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { haveCommand } from '../helpers/env.js';
import type { BenchResult } from '../../lib/bench/run.js';

const cli = fileURLToPath(new URL('../../bin/nodularity', import.meta.url));
const npmBench = fileURLToPath(new URL('../../bench/index.mjs', import.meta.url));
const CI = process.env.CI === 'true' || process.env.CI === '1';

function nodularity(args: string[], file = cli) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS; // tap's loader hooks are not the CLI's
  const [cmd, argv] = file === cli ? [cli, args] : [process.execPath, [file, ...args]];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 180_000, env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The one JSON result a run wrote into `out`. */
function resultIn(out: string): BenchResult {
  const json = readdirSync(out).filter((f) => /^bench-.*\.json$/.test(f));
  if (json.length !== 1) throw new Error(`expected one result JSON in ${out}, got ${json.join(', ')}`);
  return JSON.parse(readFileSync(join(out, json[0]), 'utf8')) as BenchResult;
}

function outDir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'nodularity-bench-test-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// Runtimes that can run unprivileged and as root on the CI machine (.ci/run installs them).
const others = ['bwrap', 'ch-run'].filter(haveCommand);

t.test(
  'runs end to end on the default image beside another runtime; figures consistent; chart names every runtime',
  async (t) => {
    if (!others.length) {
      if (CI) t.fail('neither bwrap nor ch-run is installed (apt-get install bubblewrap charliecloud-runtime)');
      else t.skip('neither bwrap nor ch-run is installed', () => {});
      return;
    }
    const out = outDir(t);
    const runs = 12;
    // apptainer is not installed on the CI machine: it must come back as missing, not vanish.
    const compare = [...others, 'host', 'apptainer'];
    const r = nodularity([
      'bench',
      '--runs',
      String(runs),
      '--block',
      '4',
      '--compare',
      compare.join(','),
      '--out',
      out,
    ]);
    t.equal(r.code, 0, r.stderr);
    const files = readdirSync(out);
    const json = files.find((f) => /^bench-.*\.json$/.test(f));
    const svgName = files.find((f) => /^bench-.*\.svg$/.test(f));
    const md = files.find((f) => /^bench-.*\.md$/.test(f));
    t.ok(json && svgName && md, `JSON, Markdown and SVG written (got ${files.join(', ')})`);
    const res = JSON.parse(readFileSync(join(out, json!), 'utf8')) as BenchResult;

    t.same(
      res.rows.map((x) => x.id),
      ['nodularity', ...compare],
      'one row per runtime asked for, in order',
    );
    const measured = res.rows.filter((x) => x.status === 'ok');
    t.ok(
      measured.find((x) => x.id === 'nodularity'),
      'nodularity measured',
    );
    t.ok(
      measured.filter((x) => x.id !== 'nodularity' && x.id !== 'host').length >= 1,
      `another runtime measured: ${JSON.stringify(res.rows.map((x) => [x.id, x.status, x.detail]))}`,
    );
    for (const row of measured) {
      t.equal(row.n, runs, `${row.id}: n equals --runs`);
      t.equal(res.latency.drivers.find((d) => d.id === row.id)!.samples.length, runs, `${row.id}: raw samples kept`);
      t.ok(
        row.min! <= row.p50! && row.p50! <= row.p90! && row.p90! <= row.p99! && row.p99! <= row.max!,
        `${row.id}: min <= p50 <= p90 <= p99 <= max (${row.min}, ${row.p50}, ${row.p90}, ${row.p99}, ${row.max})`,
      );
      t.ok(row.launchesPerSec! > 0 && Number.isFinite(row.launchesPerSec), `${row.id}: launches/s`);
      t.ok(Math.abs(row.ratioP50! - row.p50! / res.rows[0].p50!) < 1e-9, `${row.id}: ratio to nodularity`);
    }
    const app = res.rows.find((x) => x.id === 'apptainer')!;
    if (!haveCommand('apptainer')) {
      t.equal(app.status, 'missing', 'apptainer reported as missing');
      t.match(app.detail, /apptainer not found/);
    }

    // Terminal table and Markdown name every runtime, with the missing one.
    for (const row of res.rows) {
      t.match(r.stdout, new RegExp(`^${row.label.replace(/[()]/g, '\\$&')}\\s`, 'm'), `table row for ${row.label}`);
    }
    t.match(readFileSync(join(out, md!), 'utf8'), /\| apptainer .*\| missing/);

    // The chart: a well-formed SVG document naming every runtime.
    const svg = readFileSync(join(out, svgName!), 'utf8');
    t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" [^>]*viewBox="0 0 \d+ \d+"/);
    t.match(svg.trimEnd(), /<\/svg>$/);
    const tags = [...svg.matchAll(/<(\/?)([a-z]+)\b[^>]*?(\/?)>/g)];
    const stack: string[] = [];
    let balanced = true;
    for (const [, close, name, selfClose] of tags) {
      if (selfClose) continue;
      if (!close) stack.push(name);
      else if (stack.pop() !== name) balanced = false;
    }
    t.ok(balanced && stack.length === 0, 'every element closed in order');
    t.notMatch(svg.replace(/&(amp|lt|gt|quot|#39);/g, ''), /&/, 'no unescaped &');
    for (const row of res.rows) t.ok(svg.includes(`data-runtime="${row.label}"`), `chart row for ${row.label}`);
    const dots = svg.match(/<circle /g)?.length ?? 0;
    t.equal(dots, measured.length * runs, 'one dot per launch of every measured runtime');
    if (haveCommand('rsvg-convert')) {
      const png = files.find((f) => /^bench-.*\.png$/.test(f));
      t.ok(png, 'PNG written when rsvg-convert is present');
      t.same([...readFileSync(join(out, png!)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'PNG signature');
    }
  },
);

t.test('bad input names the option', async (t) => {
  const out = outDir(t);
  const cases: [string[], RegExp][] = [
    [['--runs', '0'], /--runs <n>.*'0' is invalid.*integer >= 1/],
    [['--runs', 'many'], /--runs <n>.*'many' is invalid/],
    [['--concurrency', '0'], /--concurrency <k>.*integer >= 1/],
    [['--compare', 'bwrap,podman'], /--compare <list>.*unknown runtime `podman`/],
    [['--variants', 'nodularity-netns,fast'], /--variants <list>.*unknown variant `fast`/],
    [['--throughput', '--inflight', '0'], /--inflight <n>.*integer >= 1/],
    [['--network', 'bridge'], /--network <mode>.*'bridge' is invalid.*host, none/],
    [['--image', join(out, 'no-such-dir')], /--image .*no-such-dir: no such directory/],
    [
      ['--image', out, '--', '/bin/nonexistent-payload'],
      /--image .*: the payload \/bin\/nonexistent-payload does not exist/,
    ],
  ];
  for (const [args, want] of cases) {
    const r = nodularity(['bench', '--out', out, '--compare', 'none', ...args]);
    t.not(r.code, 0, `${args.join(' ')}: fails`);
    t.match(r.stderr, want, `${args.join(' ')}: ${r.stderr.trim()}`);
    t.equal(readdirSync(out).filter((f) => f.startsWith('bench-')).length, 0, `${args.join(' ')}: no report written`);
  }
});

t.test('a failing payload is reported with its error, not dropped', async (t) => {
  const out = outDir(t);
  const r = nodularity(['bench', '--runs', '3', '--compare', 'host', '--out', out, '--', '/bin/sh', '-c', 'exit 3']);
  t.equal(r.code, 0, r.stderr);
  const res = JSON.parse(
    readFileSync(
      join(
        out,
        readdirSync(out).find((f) => f.endsWith('.json'))!,
      ),
      'utf8',
    ),
  ) as BenchResult;
  const nod = res.rows.find((x) => x.id === 'nodularity')!;
  t.equal(nod.status, 'failed');
  t.match(nod.detail, /exit code 3/);
  t.equal(res.rows.find((x) => x.id === 'host')!.status, 'failed');
  t.match(r.stdout, /nodularity: failed: .*exit code 3/);
});

t.test(
  'one runner: `nodularity bench` and `npm run bench` measure variants and sections with lib/bench/run.ts, one report format',
  async (t) => {
    if (!others.length) {
      if (CI) t.fail('neither bwrap nor ch-run is installed (apt-get install bubblewrap charliecloud-runtime)');
      else t.skip('neither bwrap nor ch-run is installed', () => {});
      return;
    }
    const runs = 6;
    const compare = ['host', others[0]];
    const sectionsOf = (r: BenchResult) => Object.keys(r.sections);
    const targetNames = [
      'nodularity p50 <= child_process.spawn p50',
      'nodularity p50 < 1.2 ms',
      /p50 < 1\.5 ms$/,
      '>= 4x faster than bwrap (p50)',
      '>= 2x faster than ch-run (p50)',
      '>= 8x faster than crun (p50)',
      /^nodularity p50 <= 1\.5x floor\.c in-process \(vfork\)$/,
      /p50 <= 1\.5x floor\.c in-process \(vfork\+netns\)$/,
      'nodularity, 2 in flight: >= 1500 containers/s (no netns)',
      /MiB heap adds < 5 %/,
      'spawn() holds the loop < 0.2 ms (p50), unprepared',
      'a prepared spawn() holds the loop < 0.1 ms (p50)',
      'a prepared spawn() holds the loop < 0.3 ms (p99)',
      /^CLI `nodularity exec DIR` whole process <= 1\.3x `node -e 0`/,
    ];
    type Target = { name: string; result: string; measured: string; why?: string };

    /** What both entry points must give: the rows asked for, the sections in order, targets read from them. */
    function checkResult(r: BenchResult, want: { rows: string[]; sections: string[]; heap: boolean }, what: string) {
      t.same(
        r.rows.map((x) => x.id),
        want.rows,
        `${what}: a row per driver: nodularity, the variants, the runtimes`,
      );
      for (const id of ['nodularity', 'nodularity-noinit', 'floor', 'host'])
        t.equal(r.rows.find((x) => x.id === id)?.n, runs, `${what}: ${id} measured ${runs} times`);
      t.same(sectionsOf(r), want.sections, `${what}: the sections, in the one order`);
      const tp = r.sections.throughput.data as {
        drivers: { id: string; status: string; launches: number; inflight: number }[];
      };
      t.same(
        tp.drivers.filter((d) => d.inflight === 2).map((d) => [d.id, d.status]),
        [
          ['nodularity', 'ok'],
          ['host', 'ok'],
        ],
        `${what}: throughput of nodularity and the host`,
      );
      t.ok(tp.drivers[0].launches >= 60, `${what}: throughput launches counted`);
      const floor = r.sections.floor.data as Record<string, { n?: number; error: string | null }>;
      for (const mode of ['vfork', 'fork', 'vfork+netns'])
        t.ok(floor[mode].n! > 0 && floor[mode].error === null, `${what}: floor ${mode} measured: ${floor[mode].error}`);
      const targets = r.sections.targets.data as Target[];
      t.equal(targets.length, targetNames.length, `${what}: every target reported`);
      targetNames.forEach((n, i) => t.match(targets[i]?.name, n, `${what}: target ${i}`));
      for (const x of targets) {
        t.ok(['PASS', 'MISS', 'N/A'].includes(x.result), `${what}: ${x.name}: ${x.result}`);
        if (x.result === 'N/A') t.ok(x.why, `${what}: ${x.name}: N/A says why`);
        else t.notOk(x.why, `${what}: ${x.name}: measured, no excuse`);
      }
      const byName = (re: RegExp) => targets.find((x) => re.test(x.name))!;
      t.not(byName(/child_process\.spawn/).result, 'N/A', `${what}: nodularity vs host judged`);
      t.not(byName(/containers\/s/).result, 'N/A', `${what}: throughput target read from the throughput section`);
      t.not(byName(/\(vfork\)$/).result, 'N/A', `${what}: nodularity against the floor section`);
      t.equal(byName(/MiB heap/).result === 'N/A', !want.heap, `${what}: the heap target follows the heap section`);
      t.equal(byName(/crun/).result, 'N/A', `${what}: crun not asked for: N/A`);
    }

    // The verb: nodularity + variants beside the runtimes, every section that is quick enough here.
    const out = outDir(t);
    const r = nodularity([
      'bench',
      '--runs',
      String(runs),
      '--compare',
      compare.join(','),
      '--variants',
      'nodularity-noinit,floor',
      '--throughput',
      '--heap',
      '--heap-mib',
      '8',
      '--floor',
      '--targets',
      '--out',
      out,
    ]);
    t.equal(r.code, 0, r.stderr);
    const verb = resultIn(out);
    checkResult(
      verb,
      {
        rows: ['nodularity', 'nodularity-noinit', 'floor', ...compare],
        sections: ['throughput', 'heap', 'floor', 'targets'],
        heap: true,
      },
      'nodularity bench',
    );
    for (const s of Object.values(verb.sections)) t.ok(r.stdout.includes(`\n${s.title}\n`), `table for ${s.title}`);
    const md = readFileSync(
      join(
        out,
        readdirSync(out).find((f) => /^bench-.*\.md$/.test(f))!,
      ),
      'utf8',
    );
    t.match(md, /^### Targets \(reported, not asserted\)$/m, 'the Markdown report has the sections too');

    // npm run bench: the same runner with its own defaults; --render prints exactly what the run printed.
    const out2 = outDir(t);
    const n = nodularity(
      [
        '--quick',
        '--runs',
        String(runs),
        '--only',
        'latency,throughput,floor',
        '--inflight',
        '2', // npm run bench's default adds 8 in flight: twice the launches, for the same checks
        '--drivers',
        ['nodularity', 'nodularity-noinit', 'floor', ...compare].join(','),
        '--out',
        out2,
      ],
      npmBench,
    );
    t.equal(n.code, 0, n.stderr);
    const npm = resultIn(out2);
    checkResult(
      npm,
      {
        rows: ['nodularity', 'nodularity-noinit', 'floor', ...compare],
        sections: ['throughput', 'floor', 'targets'],
        heap: false,
      },
      'npm run bench',
    );
    t.same(Object.keys(npm).sort(), Object.keys(verb).sort(), 'one result format');
    const json = join(
      out2,
      readdirSync(out2).find((f) => /^bench-.*\.json$/.test(f))!,
    );
    const again = nodularity(['--render', json], npmBench);
    t.equal(again.code, 0, again.stderr);
    t.equal(again.stdout, n.stdout, '--render prints the report the run printed');
    const headerOf = (s: string) => s.split('\n').find((l) => l.startsWith('runtime '));
    t.equal(headerOf(n.stdout), headerOf(r.stdout), 'the same latency table');
  },
);
