// run() with stdout/stderr collected as strings, for checks from inside.
import { run, type SpawnOptions, type Spec } from '../../lib/index.js';

export async function capture(s: Spec, opts: SpawnOptions & { input?: string | Buffer } = {}) {
  const r = await run(s, { stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], ...opts });
  return { ...r, out: r.stdout!.toString(), err: r.stderr!.toString() };
}
