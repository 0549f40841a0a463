// Pull and unpack progress on stderr, shared by `pull` and the verbs that
// pull an image on first use (exec, run, shell, test).
import type cliProgressModule from 'cli-progress';
import { createRequire } from 'node:module';
import type { PullProgress } from '../image/index.js';

type CliProgress = typeof cliProgressModule;

export function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/**
 * Progress display: one bar per layer (bytes, speed) on a TTY; on anything
 * else one plain line per finished layer, so logs stay readable (`lines`;
 * without it, nothing: exec and run keep a non-terminal stderr the payload's).
 * The bars end at `done` or `cached`, before the payload writes anything.
 */
export function progressReporter(
  quiet: boolean,
  lines = true,
): { onProgress: (e: PullProgress) => void; stop: () => void } {
  if (quiet) return { onProgress: () => undefined, stop: () => undefined };
  if (!process.stderr.isTTY) {
    if (!lines) return { onProgress: () => undefined, stop: () => undefined };
    return {
      onProgress: (e) => {
        if (e.type === 'resolved')
          process.stderr.write(
            `manifest ${e.manifestDigest}: ${e.layers.length} layers, ${human(e.layers.reduce((a, l) => a + l.size, 0))}\n`,
          );
        else if (e.type === 'layer-done') process.stderr.write(`layer ${e.index + 1} ${e.digest} unpacked\n`);
        else if (e.type === 'cached') process.stderr.write(`cached ${e.manifestDigest}\n`);
      },
      stop: () => undefined,
    };
  }
  // The bars (and the cli-progress module) are made at the first event: an
  // exec of a directory or of a cached image never loads it.
  let multi: InstanceType<CliProgress['MultiBar']> | undefined;
  const multiBar = (): InstanceType<CliProgress['MultiBar']> => {
    if (multi) return multi;
    const cliProgress = createRequire(import.meta.url)('cli-progress') as CliProgress;
    multi = new cliProgress.MultiBar(
      {
        stream: process.stderr,
        format: ' {phase} {digest} [{bar}] {percentage}% {done}/{size} {speed}',
        hideCursor: true,
        clearOnComplete: false,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    );
    return multi;
  };
  let stopped = false;
  const stop = (): void => {
    if (!stopped) {
      stopped = true;
      multi?.stop();
    }
  };
  const bars = new Map<number, { bar: cliProgressModule.SingleBar; started: number }>();
  const update = (index: number, digest: string, phase: string, bytes: number, total: number): void => {
    if (stopped) return;
    let b = bars.get(index);
    if (!b) {
      b = {
        bar: multiBar().create(total, 0, {
          digest: digest.slice(7, 19),
          phase,
          done: human(0),
          size: human(total),
          speed: '',
        }),
        started: Date.now(),
      };
      bars.set(index, b);
    }
    const secs = Math.max(0.001, (Date.now() - b.started) / 1000);
    b.bar.setTotal(Math.max(total, bytes));
    b.bar.update(bytes, { phase, done: human(bytes), size: human(total), speed: `${human(bytes / secs)}/s` });
  };
  return {
    onProgress: (e) => {
      if (e.type === 'download') update(e.index, e.digest, 'fetch ', e.bytes, e.total);
      else if (e.type === 'unpack') update(e.index, e.digest, 'unpack', e.bytes, e.total);
      else if (e.type === 'layer-done') {
        const b = bars.get(e.index);
        if (b) b.bar.update(b.bar.getTotal(), { phase: 'done  ' });
      } else if (e.type === 'done' || e.type === 'cached') stop();
    },
    stop,
  };
}
