// The CLI installed under Apptainer's names, as a site drops it in: a
// symlink named `apptainer` (or `singularity`) to bin/nodularity, run with
// a clean environment (no tap loader in NODE_OPTIONS, no stray APPTAINER_*
// or SINGULARITY_* from the machine running the tests).
import { spawnSync } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { requireFreshDist } from '../helpers/cli.js';
import { repoRoot, scratch } from '../helpers/env.js';

type T = Parameters<typeof scratch>[0];

export interface Ran {
  code: number | null;
  out: string;
  err: string;
}

/** A directory holding `name` -> bin/nodularity; its path. */
export function installAs(t: T, name: 'apptainer' | 'singularity' | 'nodularity' = 'apptainer'): string {
  requireFreshDist();
  const dir = scratch(t, 'nodularity-bin-');
  symlinkSync(join(repoRoot, 'bin', 'nodularity'), join(dir, name));
  return join(dir, name);
}

/** The environment a job starts with: ours, less the loader and any Apptainer settings, plus `env`. */
export function jobEnv(env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^(APPTAINER|SINGULARITY)(ENV)?_/.test(k) && k !== 'NODE_OPTIONS') clean[k] = v;
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete clean[k];
    else clean[k] = v;
  }
  return clean;
}

export function run(
  cli: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  o: { cwd?: string; input?: string } = {},
): Ran {
  const r = spawnSync(cli, args, {
    encoding: 'utf8',
    env: jobEnv(env),
    cwd: o.cwd ?? '/',
    input: o.input,
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
