// README's "Differences from Apptainer" table kept true: each row's example
// runs as written (a shell command line, with `apptainer` on PATH being this
// checkout's CLI and IMAGE a directory image) and prints the row's output.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { repoRoot, scratch } from '../helpers/env.js';
import { installAs, jobEnv } from './apptainer-cli.js';
import { makeSandbox } from './fixtures.js';

const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
const section = /^## Differences from Apptainer\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? '';
/** A table cell's code span, with the table's escaped pipes as pipes. */
const code = (cell: string) => /^\s*`(.*)`\s*$/.exec(cell)?.[1]?.replace(/\\\|/g, '|');
const rows = section
  .split('\n')
  .filter((l) => l.startsWith('| ') && !l.startsWith('| What'))
  .map((l) => l.slice(2, -2).split(/ \| /));

t.test('the section and its table are there', async (t) => {
  t.ok(section, 'README has "## Differences from Apptainer"');
  t.ok(rows.length >= 8, `${rows.length} rows`);
  for (const r of rows) t.equal(r.length, 5, `five columns: ${r[0]}`);
});

t.test('each documented example prints what the table says', async (t) => {
  const cli = installAs(t, 'apptainer');
  const image = makeSandbox(t);
  const cwd = scratch(t, 'nodularity-readme-diff-');
  for (const [what, , , example, output] of rows) {
    const cmd = code(example),
      want = code(output);
    t.ok(cmd && want !== undefined, `${what}: an example and its output in code spans`);
    if (!cmd || want === undefined) continue;
    const r = spawnSync('/bin/sh', ['-c', cmd.replace(/\bIMAGE\b/g, image)], {
      cwd,
      encoding: 'utf8',
      timeout: 60_000,
      env: jobEnv({ PATH: `${dirname(cli)}:${process.env.PATH}` }),
    });
    t.equal(r.stdout.replace(/\n$/, ''), want, `${what}: ${cmd} (stderr: ${r.stderr})`);
  }
});
