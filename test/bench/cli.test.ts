// `nodularity bench` end to end through the installed command (bin/nodularity):
// the default image, nodularity and at least one other runtime, consistent
// figures, a chart naming every runtime, and errors naming the option.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { haveCommand } from '../helpers/env.js';
import type { BenchResult } from '../../lib/bench/run.js';

const cli = fileURLToPath(new URL('../../bin/nodularity', import.meta.url));
const CI = process.env.CI === 'true' || process.env.CI === '1';

function nodularity(args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_OPTIONS; // tap's loader hooks are not the CLI's
  const r = spawnSync(cli, args, { encoding: 'utf8', timeout: 120_000, env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
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
