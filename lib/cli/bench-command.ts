// `nodularity bench`: container start latency as a feature. Measures
// nodularity in this process side by side with the other runtimes installed
// here and writes a table, JSON, Markdown and a chart. The runner and the
// report are lib/bench/run.ts, the same that `npm run bench` (bench/index.mjs)
// uses; this file is the command line only.
import cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';
import * as nodularity from '../index.js';
import {
  benchSections,
  BenchUsageError,
  renderText,
  runBench,
  VARIANT_IDS,
  type BenchOptions,
  type VariantId,
} from '../bench/run.js';
import { COMPARE_IDS, type CompareId } from '../bench/setup.js';

/** Commander parser for an integer option with a lower bound; the error names the option. */
function intAtLeast(min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`must be an integer >= ${min}.`);
    return n;
  };
}

/** Commander parser for --compare: a comma list of known runtimes, or `none`. */
function compareList(v: string): CompareId[] {
  if (v.trim() === 'none') return [];
  const ids = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of ids) {
    if (!(COMPARE_IDS as readonly string[]).includes(id))
      throw new InvalidArgumentError(`unknown runtime \`${id}\` (known: ${COMPARE_IDS.join(', ')}, or none).`);
  }
  return [...new Set(ids)] as CompareId[];
}

/** Commander parser for --variants: a comma list of nodularity variants (and floor). */
function variantList(v: string): VariantId[] {
  const ids = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of ids) {
    if (!(VARIANT_IDS as readonly string[]).includes(id))
      throw new InvalidArgumentError(`unknown variant \`${id}\` (known: ${VARIANT_IDS.join(', ')}).`);
  }
  return [...new Set(ids)] as VariantId[];
}

/**
 * Progress on stderr: a bar on a terminal; otherwise a plain line every
 * tenth of the run, so logs of a CI job stay readable.
 */
function progress(): { onProgress: (done: number, total: number) => void; stop: () => void } {
  if (!process.stderr.isTTY) {
    let lastTenth = -1;
    return {
      onProgress: (done, total) => {
        const tenth = Math.floor((done / Math.max(1, total)) * 10);
        if (tenth !== lastTenth) {
          lastTenth = tenth;
          process.stderr.write(`launches: ${done}/${total}\n`);
        }
      },
      stop: () => undefined,
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'launches [{bar}] {value}/{total} {percentage}% | {duration_formatted}',
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress: (done, total) => {
      if (!started) {
        bar.start(total, done);
        started = true;
      }
      bar.setTotal(total);
      bar.update(done);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'measure container start latency (spawn -> exit) of nodularity and of the other runtimes installed here, side by side',
    )
    .argument('[command...]', 'payload to launch (default /bin/true); put it after --')
    .addOption(new Option('--runs <n>', 'launches per runtime').argParser(intAtLeast(1)).default(200))
    .addOption(new Option('--concurrency <k>', 'launches in flight per runtime').argParser(intAtLeast(1)).default(1))
    .addOption(
      new Option('--network <mode>', 'host network, or a new network namespace with only lo')
        .choices(['host', 'none'])
        .default('host'),
    )
    .addOption(
      new Option('--compare <list>', `other runtimes, comma-separated (${COMPARE_IDS.join(',')}), or none`)
        .argParser(compareList)
        .default([...COMPARE_IDS], COMPARE_IDS.join(',')),
    )
    .addOption(
      new Option(
        '--variants <list>',
        `also measure these beside the default container, comma-separated (${VARIANT_IDS.join(',')})`,
      )
        .argParser(variantList)
        .default([], 'none'),
    )
    .option('--image <dir>', 'unpacked root file system (default: a busybox rootfs built offline in --out)')
    .option('--out <dir>', 'where the image, JSON, Markdown and chart go', 'nodularity-bench')
    .addOption(
      new Option('--block <n>', "launches of one runtime in a row before the next one's turn")
        .argParser(intAtLeast(1))
        .default(5),
    )
    .addOption(new Option('--warmup <n>', 'unrecorded launches per runtime first').argParser(intAtLeast(0)))
    .option(
      '--phases',
      'also time the phases of a launch from inside (JS, addon, worker, each child step, exit watch) for spawn(), a prepared container and floor.c',
    )
    .option('--heap', 'also compare launches from a Node process holding ~1 GiB of heap with one holding none')
    .addOption(new Option('--heap-mib <n>', 'heap retained for --heap').argParser(intAtLeast(1)).default(1024))
    .option('--cpu', 'also run a CPU-bound payload inside and outside a container (native-performance ratio)')
    .option('--throughput', 'also measure containers per second with --inflight launches in flight')
    .addOption(new Option('--inflight <n>', 'launches in flight for --throughput').argParser(intAtLeast(1)).default(2))
    .option('--floor', 'also time bench/floor/floor.c launching in a loop without Node (from a checkout)')
    .option('--targets', "also report the project's speed targets as PASS/MISS (never asserted)")
    .option('--json', 'print the JSON result on stdout instead of the table')
    .action(async (command: string[], o) => {
      const args = command.length ? command : ['/bin/true'];
      const out = resolve(o.out as string);
      const bar = o.json ? { onProgress: () => undefined, stop: () => undefined } : progress();
      const mod = nodularity as unknown as Parameters<typeof runBench>[1];
      const options: BenchOptions = {
        runs: o.runs,
        concurrency: o.concurrency,
        network: o.network,
        compare: o.compare,
        image: o.image,
        out,
        args,
        block: o.block,
        warmup: o.warmup,
        command: `nodularity ${process.argv.slice(2).join(' ')}`,
        onProgress: bar.onProgress,
        log: (m) => process.stderr.write(`bench: ${m}\n`),
        variants: o.variants,
        sections: benchSections({
          phases: o.phases ? { runs: 20 } : undefined,
          throughput: o.throughput
            ? { inflight: o.inflight, count: Math.max(60, Math.round(o.runs * 1.5)) }
            : undefined,
          heap: o.heap ? { mib: o.heapMib, runs: Math.max(20, Math.round(o.runs / 2)) } : undefined,
          cpu: !!o.cpu,
          floor: o.floor ? { loops: Math.max(20, Math.round(o.runs / 2)) } : undefined,
          targets: !!o.targets,
        }),
      };
      try {
        const r = await runBench(options, mod);
        bar.stop();
        process.stdout.write(o.json ? JSON.stringify(r, null, 1) + '\n' : renderText(r) + '\n');
      } catch (e) {
        bar.stop();
        if (e instanceof BenchUsageError) {
          process.stderr.write(`nodularity bench: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
    });
}
