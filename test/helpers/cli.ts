// The nodularity CLI as an executable, for tests that need a program path
// (HTCondor's SINGULARITY knob, Slurm's oci.conf): the installed command,
// bin/nodularity (`node -- dist/cli/main.js`), as users run it, not the TS
// loader (which hides what only the compiled program does, and costs a
// transpile per call). Refuses a dist/ older than its sources.
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './env.js';

/** Throw unless every lib/**.ts has a dist/**.js at least as new. */
export function requireFreshDist(): void {
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(repoRoot, 'lib', rel), { withFileTypes: true })) {
      const r = join(rel, e.name);
      if (e.isDirectory()) {
        walk(r);
        continue;
      }
      if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) continue;
      const js = join(repoRoot, 'dist', r.replace(/\.ts$/, '.js'));
      if (!existsSync(js) || statSync(js).mtimeMs < statSync(join(repoRoot, 'lib', r)).mtimeMs)
        throw new Error(`${js} is missing or older than lib/${r}: run \`npm run build\``);
    }
  };
  walk('');
}

export function writeCliWrapper(path: string): void {
  requireFreshDist();
  writeFileSync(
    path,
    ['#!/bin/sh', 'unset NODE_OPTIONS', `exec '${join(repoRoot, 'bin', 'nodularity')}' "$@"`, ''].join('\n'),
    { mode: 0o755 },
  );
}
