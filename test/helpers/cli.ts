// The nodularity CLI as an executable, for tests that need a program path
// (HTCondor's SINGULARITY knob, Slurm's oci.conf): node with the TypeScript
// loader tap uses, on lib/cli/main.ts of this checkout (so no stale dist/),
// transpile-only as tap runs tests, without tap's NODE_OPTIONS hooks; `--`
// before the script as bin/nodularity has it (Node 20 reads an --env-file
// among the script's arguments otherwise, and the CLI refuses to run then).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './env.js';

export function writeCliWrapper(path: string): void {
  const loader = process.execArgv.find((a) => a.includes('@tapjs/typescript'));
  if (!loader) throw new Error(`no @tapjs/typescript loader in process.execArgv (${JSON.stringify(process.execArgv)}): run this file through tap`);
  writeFileSync(path, [
    '#!/bin/sh',
    'unset NODE_OPTIONS',
    `TS_NODE_TRANSPILE_ONLY=1 exec '${process.execPath}' '${loader}' -- '${join(repoRoot, 'lib', 'cli', 'main.ts')}' "$@"`,
    '',
  ].join('\n'), { mode: 0o755 });
}
