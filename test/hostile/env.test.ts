// An image's environment scripts (/.singularity.d/env/*.sh) are the image's
// code run before the payload: one printing without end must not grow the
// runtime (8 GB within the 10 s bound on main), and a signal to the CLI
// while they run must leave nothing in $TMPDIR nor any process behind.
import t from 'tap';
import { spawn as spawnChild } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../../lib/index.js';
import { scratch } from '../helpers/env.js';
import { makeSandbox } from '../singularity/fixtures.js';
import { bare, binPath, cli, requireBuiltCli } from './fixtures.js';

t.before(() => requireBuiltCli());

const tag = () => `${Date.now() % 100000}${Math.floor(Math.random() * 1e6)}`;

/** Pids whose command line contains `tag`. */
function tagged(tagText: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(tagText)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

async function gone(tagText: string, ms = 5000): Promise<number[]> {
  const until = Date.now() + ms;
  let left = tagged(tagText);
  while (left.length && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    left = tagged(tagText);
  }
  return left;
}

t.test(
  "an env script printing without end: an error naming the image's env dir and the cap, memory bounded, nothing left running",
  async (t) => {
    const id = `nodularity-flood-${tag()}`;
    const image = makeSandbox(t, { env: { '90-flood.sh': `yes ${id}\n` } });
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    try {
      await t.rejects(
        exec(image, ['/bin/true'], { stdio: 'ignore' }),
        new RegExp(
          `^${image}:/\\.singularity\\.d/env: the environment scripts' output \\(stderr\\) exceeded 1 MiB, the cap on what is kept of it`,
        ),
      );
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    t.ok(
      peak - rssBefore < 128 << 20,
      `the runtime grew by ${Math.round((peak - rssBefore) / 2 ** 20)} MiB (bound: 128 MiB)`,
    );
    t.same(await gone(id), [], 'the evaluation container was killed, no process left');

    // The same through the CLI: one line, status 255.
    const r = cli(['exec', image, '/bin/true']);
    t.equal(r.code, 255, r.err);
    t.match(r.err, new RegExp(`^FATAL: {3}${image}:/\\.singularity\\.d/env: .*exceeded 1 MiB, the cap`));
    t.same(await gone(id), [], 'no process left after the CLI either');
  },
);

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  t.test(
    `${sig} to the CLI while env scripts run: $TMPDIR left empty, the CLI dies of ${sig}, no process left`,
    async (t) => {
      const id = tag();
      const image = makeSandbox(t, { env: { '50-slow.sh': `sleep 7${id}\n` } });
      const tmp = scratch(t, 'nodularity-tmpdir-');
      const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
      delete env.NODE_OPTIONS;
      const child = spawnChild(...bare([binPath, 'exec', image, '/bin/true']), {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr!.on('data', (d) => (err += d));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
        child.once('exit', (code, signal) => res({ code, signal })),
      );
      t.teardown(() => {
        child.kill('SIGKILL');
      });
      // Wait until the scripts run (their sleep is up) and the session files exist.
      const until = Date.now() + 30_000;
      while (Date.now() < until && !(tagged(`7${id}`).length && readdirSync(tmp).length))
        await new Promise((r) => setTimeout(r, 50));
      t.ok(tagged(`7${id}`).length > 0, 'the env script is running');
      t.match(readdirSync(tmp), [/^nodularity-session-/], 'the session files are in $TMPDIR');
      child.kill(sig);
      const r = await exited;
      t.equal(r.signal, sig, `the CLI died of ${sig} (${JSON.stringify(r)}, stderr: ${err})`);
      t.same(readdirSync(tmp), [], '$TMPDIR is empty');
      t.same(await gone(`7${id}`), [], 'the evaluation container is gone');
      t.equal(err, '', 'no error message for a signal');
    },
  );
}

t.test('a signal after the payload started is still forwarded to it (unchanged)', async (t) => {
  const image = makeSandbox(t, { env: { '50-ok.sh': 'export FROM_SCRIPT=1\n' } });
  const tmp = scratch(t, 'nodularity-tmpdir-');
  const out = join(scratch(t), 'trap');
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
  delete env.NODE_OPTIONS;
  const child = spawnChild(
    ...bare([
      binPath,
      'exec',
      '-B',
      join(out, '..'),
      image,
      '/bin/sh',
      '-c',
      `trap 'echo got-term > ${out}; exit 7' TERM; echo ready > ${out}.ready; while :; do sleep 0.1; done`,
    ]),
    { env, stdio: 'ignore' },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once('exit', (code, signal) => res({ code, signal })),
  );
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const until = Date.now() + 30_000;
  while (Date.now() < until && !existsSync(`${out}.ready`)) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGTERM');
  const r = await exited;
  t.same(r, { code: 7, signal: null }, "the payload got SIGTERM and its status is the CLI's");
  t.equal(readFileSync(out, 'utf8'), 'got-term\n');
  t.same(readdirSync(tmp), [], 'session files removed');
});
