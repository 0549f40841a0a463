// --pwd that does not exist in the container: Apptainer's warning and home,
// never a directory made for it (issue 12 item 12), through the built CLI.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, scratch } from '../helpers/env.js';
import { makeSandbox } from './fixtures.js';

const CLI = join(repoRoot, 'dist', 'cli', 'main.js');

t.test('--pwd to a missing directory warns and starts in home; an existing one is used', async (t) => {
  const image = makeSandbox(t);
  const home = join(scratch(t, 'nodularity-home-'), 'h');
  mkdirSync(home);
  const env = { ...process.env, HOME: home };
  const r = spawnSync(process.execPath, [CLI, 'exec', '--pwd', '/nonexistent/dir', image, 'pwd'], {
    encoding: 'utf8',
    env,
    cwd: '/',
  });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `${home}\n`);
  t.equal(r.stderr, `WARNING: --pwd /nonexistent/dir is not a directory in the container: starting in ${home}\n`);
  t.notOk(existsSync(join(image, 'nonexistent')), 'nothing made in the image');
  const q = spawnSync(process.execPath, [CLI, '-q', 'exec', '--pwd', '/nonexistent', image, 'pwd'], {
    encoding: 'utf8',
    env,
    cwd: '/',
  });
  t.equal(q.stderr, '', '-q silences the warning');
  const ok = spawnSync(process.execPath, [CLI, 'exec', '--pwd', '/etc', image, 'pwd'], {
    encoding: 'utf8',
    env,
    cwd: '/',
  });
  t.equal(ok.stdout, '/etc\n');
  t.equal(ok.stderr, '');
  // A directory that exists only through a bind is a directory in the container too.
  const data = scratch(t, 'nodularity-data-');
  mkdirSync(join(data, 'sub'));
  const b = spawnSync(process.execPath, [CLI, 'exec', '-B', `${data}:/data`, '--pwd', '/data/sub', image, 'pwd'], {
    encoding: 'utf8',
    env,
    cwd: '/',
  });
  t.equal(b.stdout, '/data/sub\n', b.stderr);
});
