// Many launches: no fd, zombie or memory growth; concurrency; abort, timeout, parent death.
import t from 'tap';
import { spawn as spawnNode } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { exec, run, spawn } from '../../lib/index.js';
import { openFds, repoRoot, scratch, spec, testRootfs, zombieChildren } from '../helpers/env.js';
import { makeSandbox } from '../singularity/fixtures.js';

t.test('1000 sequential launches leak no fd, zombie or memory', async (t) => {
  const s = spec(['/bin/true']);
  for (let i = 0; i < 50; i++) await run(s, { stdio: 'ignore' }); // warm up
  global.gc?.();
  const fds = openFds().length;
  const rss = process.memoryUsage().rss;
  let failures = 0;
  for (let i = 0; i < 1000; i++) {
    const r = await run(s, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.exitCode !== 0) failures++;
  }
  global.gc?.();
  t.equal(failures, 0, 'every launch exited 0');
  t.equal(openFds().length, fds, 'no fd leaked');
  t.same(zombieChildren(), [], 'no zombie children');
  const growth = (process.memoryUsage().rss - rss) / 1024 / 1024;
  t.ok(growth < 40, `RSS grew ${growth.toFixed(1)} MiB over 1000 launches`);
});

t.test('50 concurrent launches', async (t) => {
  const fds = openFds().length;
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      run(spec(['/bin/sh', '-c', `echo ${i}; exit $((${i} % 7))`]), { stdio: ['ignore', 'pipe', 'ignore'] }),
    ),
  );
  results.forEach((r, i) => {
    t.equal(r.exitCode, i % 7);
    t.equal(r.stdout!.toString(), `${i}\n`);
  });
  t.equal(new Set(results.map((r) => r.pid)).size, 50, '50 distinct containers');
  t.equal(openFds().length, fds, 'no fd leaked');
  t.same(zombieChildren(), []);
});

t.test('timeout kills the container', async (t) => {
  const r = await run(spec(['/bin/sleep', '30']), { stdio: 'ignore', timeout: 300 });
  // initDied: another process SIGKILLed the init first (kill.test.ts covers that case).
  t.equal(r.initDied, false, "the init reported the payload's status");
  t.equal(r.timedOut, true);
  t.equal(r.signal, 'SIGTERM');
});

t.test('AbortSignal kills the container and rejects run()', async (t) => {
  const ac = new AbortController();
  const p = run(spec(['/bin/sleep', '30']), { stdio: 'ignore', signal: ac.signal });
  setTimeout(() => ac.abort(), 200);
  await t.rejects(p, { name: 'AbortError' });
  t.same(zombieChildren(), []);
});

/** A process by pid and start time (field 22 of /proc/PID/stat): a reused pid is another process. */
function procId(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return `${pid}@${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;
  } catch {
    return null;
  }
}
const alive = (id: string) => procId(Number(id.split('@')[0])) === id;

t.test('when the Node process dies, its containers die', async (t) => {
  // A child Node process starts a long container and prints the container's
  // pid; we SIGKILL the Node process. The payload runs under the init (a
  // sleep of its own), so both the init and the payload must go: only the
  // parent-death signal set in the child ends them (nothing else is told).
  for (const init of [true, false]) {
    const script = `
      import { spawn, createSpec } from ${JSON.stringify(repoRoot + '/lib/index.ts')};
      const c = spawn(createSpec({ rootfs: ${JSON.stringify(testRootfs())}, args: ['/bin/sleep', '60'] }), { stdio: 'ignore', init: ${init} });
      await c.spawned;
      console.log(c.pid);
      setInterval(() => {}, 1000);
    `;
    const child = spawnNode(process.execPath, [...process.execArgv, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pid = await new Promise<number>((res) => child.stdout!.once('data', (d) => res(Number(String(d).trim()))));
    // The payload: the init's one child, or the process itself without an init.
    let payload = pid;
    for (let i = 0; init && i < 50 && payload === pid; i++) {
      const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
      if (kids.length) payload = kids[0];
      else await new Promise((r) => setTimeout(r, 100));
    }
    t.equal(
      readFileSync(`/proc/${payload}/cmdline`, 'utf8'),
      '/bin/sleep\x0060\x00',
      `init: ${init}: the payload runs`,
    );
    const ids = [procId(pid), procId(payload)] as string[];
    t.ok(ids.every(Boolean), 'both seen');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    for (let i = 0; i < 50 && ids.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    t.same(
      ids.filter(alive),
      [],
      `init: ${init}: the container (${init ? 'init and payload' : 'payload'}) went with it`,
    );
    for (const id of ids.filter(alive))
      try {
        process.kill(Number(id.split('@')[0]), 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
  }
});

t.test('detached containers outlive the caller', async (t) => {
  const c = spawn(spec(['/bin/sleep', '60']), { stdio: 'ignore', detached: true });
  await c.spawned;
  c.unref();
  t.ok(existsSync(`/proc/${c.pid}`));
  c.ref(); // keep the loop alive for the exit we wait for
  c.kill('SIGKILL');
  await c.exited;
});

t.test("rusage.maxRSS is the payload's peak, not the Node process's", async (t) => {
  const ballast = Buffer.alloc(256 * 1024 * 1024, 1); // Node's RSS well above any payload's
  const small = await run(spec(['/bin/true']), { stdio: 'ignore' });
  const big = await run(spec(['/bin/sh', '-c', 'x=$(head -c 40000000 /dev/zero | tr "\\0" a); echo ${#x}']), {
    stdio: 'ignore',
  });
  const nodeKiB = process.memoryUsage().rss / 1024;
  t.same([small.initDied, big.initDied], [false, false], 'both inits reported (else maxRSS is null)');
  t.ok(small.rusage.maxRSS! > 0 && small.rusage.maxRSS! < 32 * 1024, `/bin/true: ${small.rusage.maxRSS} KiB`);
  t.ok(
    big.rusage.maxRSS! > 40000 && big.rusage.maxRSS! < nodeKiB,
    `a 40 MB shell string: ${big.rusage.maxRSS} KiB (Node: ${Math.round(nodeKiB)} KiB)`,
  );
  // Without an init nothing measures the payload alone: the kernel's figure
  // for the process we clone includes Node's memory. Unknown, not wrong.
  const bare = await run(spec(['/bin/true']), { stdio: 'ignore', init: false });
  t.equal(bare.exitCode, 0);
  t.equal(bare.rusage.maxRSS, null, 'init: false: maxRSS unknown');
  t.equal(bare.initDied, false);
  t.equal(ballast[0], 1);
});

t.test('exec() resolves once the payload runs: c.pid is set', async (t) => {
  const hostEnv = { HOME: scratch(t), PATH: '/host/bin' };
  const c = await exec(testRootfs(), ['/bin/sleep', '300'], { stdio: 'ignore', hostEnv, hostCwd: '/' });
  t.type(c.pid, 'number', 'pid set when exec() resolves');
  t.ok(existsSync(`/proc/${c.pid}`), "and it is the running container's init");
  t.equal(c.exitCode, null);
  t.ok(c.kill('SIGKILL'));
  const r = await c.exited;
  t.equal(r.pid, c.pid);
  t.equal(r.signal, 'SIGKILL');
  // A launch that fails rejects exec() itself (here: the payload's execve,
  // ENOEXEC for an executable file that is no program and has no #!).
  const image = makeSandbox(t, { files: { 'not-a-program': 'plain text\n' } });
  await t.rejects(exec(image, ['/not-a-program'], { stdio: 'ignore', hostEnv, hostCwd: '/' }), { code: 'ENOEXEC' });
});
