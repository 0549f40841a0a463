// The contract between the runner and a trial: a trial is a script run in a
// fresh Node process (so heap size, JIT state and leftover children of one
// trial cannot colour another), reading `--context FILE` and `--key value`
// options, writing progress to stderr and exactly one JSON document to stdout.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_DIR, readContext } from './setup.mjs';

/** Parse a trial's argv; numbers are converted, every option is a string otherwise. */
export function trialArgs(names) {
  const options = { context: { type: 'string' } };
  for (const n of names) options[n] = { type: 'string' };
  const { values } = parseArgs({ options, strict: true });
  if (!values.context) throw new Error('a trial needs --context FILE (written by bench/index.mjs)');
  const out = { ctx: readContext(values.context) };
  for (const n of names) {
    const v = values[n];
    out[n] = v === undefined ? undefined : /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
  }
  return out;
}

/** Print the trial's result and make sure nothing else reaches stdout. */
export function emit(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

/** Entry point wrapper: a trial that throws still emits JSON, with the error. */
export async function runTrial(main) {
  let code = 0;
  try {
    emit(await main());
  } catch (e) {
    emit({ error: e?.stack ?? String(e) });
    code = 1;
  }
  // A hung container left behind by a failed driver must not keep the trial
  // alive; stdout to a pipe is written synchronously, so exiting loses nothing.
  process.exit(code);
}

export const log = (...a) => process.stderr.write(a.join(' ') + '\n');

/**
 * Run bench/trials/NAME.mjs in a fresh node process and return its JSON. A
 * trial that crashes returns {error} rather than throwing, so one broken
 * trial does not hide the others' figures.
 */
export function runTrialProcess(name, contextPath, opts = {}, nodeFlags = []) {
  const script = join(BENCH_DIR, 'trials', `${name}.mjs`);
  const args = [...nodeFlags, script, '--context', contextPath];
  for (const [k, v] of Object.entries(opts)) if (v !== undefined) args.push(`--${k}`, String(v));
  let stdout;
  try {
    stdout = execFileSync(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
      encoding: 'utf8',
      maxBuffer: 512 << 20,
    });
  } catch (e) {
    stdout = e.stdout ?? '';
    if (!stdout.trim()) return { error: `trial ${name} exited with ${e.status ?? e.signal}: ${e.message}` };
  }
  const last = stdout.trim().split('\n').pop();
  try {
    return JSON.parse(last);
  } catch {
    return { error: `trial ${name} printed no JSON result (last line: ${last?.slice(0, 200)})` };
  }
}
