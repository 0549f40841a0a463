// PID 1, signals and exit statuses.
import t from 'tap';
import { spawn } from '../../lib/index.js';
import { spec } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

t.test('PID 1 is the init and host pids are invisible', async (t) => {
  const r = await capture(
    spec([
      '/bin/sh',
      '-c',
      'cat /proc/1/cmdline | tr "\\0" " "; echo; echo self=$$; ls /proc | grep -E "^[0-9]+$" | sort -n | tr "\\n" " "',
    ]),
  );
  t.equal(r.exitCode, 0, r.err);
  const [cmdline, self, pids] = r.out.split('\n');
  t.match(cmdline, /^nodularity-init \d+ \/bin\/sh \/bin\/sh -c /, 'pid 1 is our init');
  t.equal(self, 'self=2', 'the payload is pid 2');
  const visible = pids.trim().split(' ').map(Number);
  t.ok(
    visible.every((p) => p < 10),
    `only the container's own pids are visible: ${pids}`,
  );
  t.notOk(visible.includes(process.pid), 'the Node process is not visible');
});

t.test('with init off the payload is PID 1', async (t) => {
  const r = await capture(spec(['/bin/sh', '-c', 'echo $$']), { init: false });
  t.equal(r.out, '1\n');
});

t.test('exit codes pass through', async (t) => {
  for (const code of [0, 1, 37, 255]) {
    const r = await capture(spec(['/payload', 'exit', String(code)]));
    t.equal(r.exitCode, code, `exit ${code}`);
    t.equal(r.signal, null);
  }
});

t.test('death by signal is 128+N and names the signal', async (t) => {
  const k = await capture(spec(['/payload', 'kill-self', '9']));
  t.equal(k.exitCode, 137);
  t.equal(k.signal, 'SIGKILL');
  // Without init the payload is PID 1, which cannot signal itself to death: kill it from outside.
  const c = spawn(spec(['/bin/sleep', '60']), { stdio: 'ignore', init: false });
  await c.spawned;
  c.kill('SIGKILL');
  const x = await c.exited;
  t.equal(x.exitCode, 137, 'init=false');
  t.equal(x.signal, 'SIGKILL', 'init=false');
  const r = await capture(spec(['/payload', 'kill-self', '15']));
  t.equal(r.exitCode, 143);
  t.equal(r.signal, 'SIGTERM');
});

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1'] as const) {
  t.test(`${sig} is forwarded by the init to the payload`, async (t) => {
    const c = spawn(spec(['/payload', 'trap']), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    await new Promise<void>((res) =>
      c.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('ready')) res();
      }),
    );
    t.ok(c.kill(sig));
    const r = await c.exited;
    const n = { SIGTERM: 15, SIGINT: 2, SIGHUP: 1, SIGUSR1: 10 }[sig];
    t.match(out, `caught ${n}`, 'the payload caught it');
    t.equal(r.exitCode, 40 + n, 'and exited with its own status');
    t.equal(r.signal, null);
  });
}

t.test('the init reaps orphans and exits with the payload', async (t) => {
  // The shell leaves a background sleep (reparented to the init) behind.
  const started = Date.now();
  const r = await capture(
    spec(['/bin/sh', '-c', '(sleep 30 &) ; (true &); sleep 0.2; ps -o stat,comm | grep -c Z; exit 5']),
  );
  t.equal(r.exitCode, 5);
  t.equal(r.out.trim(), '0', 'no zombie inside');
  t.ok(Date.now() - started < 10000, 'the orphaned sleep did not keep the container alive');
});

t.test('kill() with SIGKILL ends the whole container', async (t) => {
  const c = spawn(spec(['/bin/sleep', '60']), { stdio: 'ignore' });
  await c.spawned;
  t.ok(c.kill('SIGKILL'));
  const r = await c.exited;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.exitCode, 137);
  t.notOk(c.kill('SIGTERM'), 'kill after exit returns false');
});
