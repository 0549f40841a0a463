// Ending containers: the timeout and the AbortSignal escalate to SIGKILL, an
// explicit kill() sends only what it asks, kills asked for before the launch
// completes are delivered at 'spawn', and the result stays truthful when
// something else (here: the test, by pid) kills the container's init.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { spawn, run, type Container, type ExitResult, type SpawnOptions } from '../../lib/index.js';
import { spec, zombieChildren } from '../helpers/env.js';

// Payloads far longer than any bound below: ending early proves the kill.
const SLEEP = ['/bin/sleep', '300'];
// SIGTERM ignored (SIG_IGN survives the exec into sleep).
const DEAF = ['/bin/sh', '-c', "trap '' TERM; exec /bin/sleep 300"];
// Ends with status 3 when it gets SIGTERM.
const POLITE = ['/bin/sh', '-c', "trap 'exit 3' TERM; /bin/sleep 300 & wait"];
// Upper bound on any wait for a container to end; a failure, never a pass.
const BOUND = 60_000;

/** The container's exit, or a failure (and SIGKILL to it, by pid) after BOUND ms. */
async function exitWithin(t: { fail(msg: string): void }, c: Container, ms = BOUND): Promise<ExitResult | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((res) => { timer = setTimeout(() => res(null), ms); });
  const r = await Promise.race([c.exited, late]);
  clearTimeout(timer);
  if (r === null) {
    t.fail(`the container (pid ${c.pid}) was still running after ${ms / 1000} s`);
    c.kill('SIGKILL');
    await c.exited.catch(() => {});
  }
  return r;
}

function start(args: string[], o: SpawnOptions = {}): Container {
  return spawn(spec(args), { stdio: 'ignore', ...o });
}

/** State letter of /proc/PID/stat ('Z' zombie), or null when gone. */
function procState(pid: number): string | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

t.test('timeout ends a PID 1 payload (init: false) that never sees SIGTERM: SIGKILL after the grace period', async (t) => {
  // The case: the kernel drops SIGTERM to a pid namespace's init
  // without a handler, so only the escalation ends it.
  for (const args of [SLEEP, DEAF]) {
    const c = start(args, { init: false, timeout: 300, forceKillAfterDelay: 1000 });
    const r = await exitWithin(t, c);
    if (!r) continue;
    t.equal(r.signal, 'SIGKILL', `${args.join(' ')}: ended by SIGKILL`);
    t.equal(r.exitCode, 137);
    t.equal(r.timedOut, true);
    t.equal(r.initDied, false, 'there is no init');
    t.equal(r.rusage.maxRSS, null, 'no init, no figure of the payload\'s own');
  }
  t.same(zombieChildren(), []);
});

t.test('timeout with init: a payload ignoring SIGTERM gets SIGKILL after the grace period', async (t) => {
  const c = start(DEAF, { timeout: 300, forceKillAfterDelay: 1000 });
  await c.spawned;
  const pid = c.pid!;
  const r = await exitWithin(t, c);
  if (!r) return;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.exitCode, 137);
  t.equal(r.timedOut, true);
  t.equal(r.initDied, true, 'the SIGKILL went to the init: the payload\'s status is unknown');
  t.equal(r.rusage.maxRSS, null);
  t.equal(procState(pid), null, 'the init is gone (reaped)');
});

t.test('the default grace period ends a payload ignoring SIGTERM too', async (t) => {
  // Default 10 s: bounded by BOUND, not timed.
  const r = await exitWithin(t, start(DEAF, { timeout: 200 }));
  if (!r) return;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.timedOut, true);
});

t.test('a payload that ends on SIGTERM within the grace period is not escalated', async (t) => {
  const polite = await exitWithin(t, start(POLITE, { timeout: 300, forceKillAfterDelay: 60_000 }));
  if (polite) t.match(polite, { exitCode: 3, signal: null, timedOut: true, initDied: false });
  t.ok(polite && polite.rusage.maxRSS! > 0, 'the init reported the payload\'s peak RSS');
  const plain = await exitWithin(t, start(SLEEP, { timeout: 300, forceKillAfterDelay: 60_000 }));
  if (plain) t.match(plain, { exitCode: 143, signal: 'SIGTERM', timedOut: true, initDied: false });
});

t.test('forceKillAfterDelay: false never escalates; bad values are refused', async (t) => {
  const c = start(DEAF, { timeout: 200, forceKillAfterDelay: false });
  await c.spawned;
  // Bounded wait past the timeout: still running (the SIGTERM was ignored).
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(c.exitCode, null, 'still running');
  t.ok(c.kill('SIGKILL'));
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', timedOut: true });
  for (const bad of [-1, NaN, Infinity, '10' as unknown as number, true as unknown as number])
    t.throws(() => start(SLEEP, { forceKillAfterDelay: bad }), /options\.forceKillAfterDelay must be a number of ms \(0 or more\) or false/);
});

t.test('AbortSignal escalates as the timeout does, and rejects run()', async (t) => {
  const ac = new AbortController();
  const c = start(DEAF, { signal: ac.signal, forceKillAfterDelay: 1000 });
  await c.spawned;
  ac.abort();
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', timedOut: false, initDied: true });
  const ac2 = new AbortController();
  const p = run(spec(SLEEP, {}), { stdio: 'ignore', init: false, signal: ac2.signal, forceKillAfterDelay: 500 });
  setTimeout(() => ac2.abort(), 200);
  await t.rejects(p, { name: 'AbortError' }, 'run() rejects once the PID 1 payload is gone');
  t.same(zombieChildren(), []);
});

t.test('kill() sends only what it asks: no escalation', async (t) => {
  const c = start(DEAF, { forceKillAfterDelay: 200 });
  await c.spawned;
  t.ok(c.kill('SIGTERM'));
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(c.exitCode, null, 'SIGTERM ignored, and no SIGKILL followed');
  t.ok(existsSync(`/proc/${c.pid}`));
  t.ok(c.kill('SIGKILL'));
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', timedOut: false, initDied: true });
  t.notOk(c.kill('SIGTERM'), 'false once exited');
});

t.test('a kill asked for before the launch completes is delivered once the payload runs', async (t) => {
  // kill() right after spawn(): the launch is still on the worker thread.
  const c = start(SLEEP);
  t.equal(c.pid, undefined, 'no pid yet');
  t.ok(c.kill('SIGTERM'));
  await c.spawned;  // not cancelled: the payload was exec'd, then got the signal
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGTERM', exitCode: 143, timedOut: false, initDied: false });

  // An abort before 'spawn' (synchronously after spawn()) is the same, escalation included.
  const ac = new AbortController();
  const d = start(DEAF, { signal: ac.signal, forceKillAfterDelay: 500 });
  ac.abort();
  await d.spawned;
  const rd = await exitWithin(t, d);
  if (rd) t.match(rd, { signal: 'SIGKILL', timedOut: false });

  // Without init the queued SIGTERM is dropped by the kernel (PID 1), the escalation is not.
  const ac3 = new AbortController();
  const e = start(SLEEP, { init: false, signal: ac3.signal, forceKillAfterDelay: 500 });
  ac3.abort();
  const re = await exitWithin(t, e);
  if (re) t.match(re, { signal: 'SIGKILL', initDied: false });
});

t.test('the init killed by another process: SIGKILL, initDied, maxRSS unknown, not timed out', async (t) => {
  const c = start(SLEEP, { timeout: 30_000 });
  await c.spawned;
  process.kill(c.pid!, 'SIGKILL');  // the init, by pid (as a cleanup by uid would)
  const r = await exitWithin(t, c);
  if (!r) return;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.exitCode, 137);
  t.equal(r.initDied, true);
  t.equal(r.rusage.maxRSS, null, 'unknown, not the figure that includes Node\'s memory');
  t.equal(r.timedOut, false);
  t.ok(r.rusage.userCPUTime >= 0 && r.rusage.minorPageFault > 0, 'the rest of rusage is still there');
});

t.test('the init dies just before the timeout fires: timedOut stays false, signal stays SIGKILL', async (t) => {
  // Make the timer and the death land in the same loop turn: kill the init,
  // then block the loop until it is a zombie and the deadline has passed.
  // libuv runs due timers before it polls for I/O, so the timeout's callback
  // runs before the exit is noticed; the kill it sends must not count.
  const started = Date.now();
  const c = start(SLEEP, { timeout: 1000, forceKillAfterDelay: 100 });
  await c.spawned;
  const pid = c.pid!;
  process.kill(pid, 'SIGKILL');
  const until = Date.now() + BOUND;
  while ((procState(pid) !== 'Z' || Date.now() - started < 1200) && Date.now() < until) { /* block the loop */ }
  t.equal(procState(pid), 'Z', 'the init is dead, not yet reaped');
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', timedOut: false, initDied: true });
});

t.test('a payload killed by another process (init: false): SIGKILL, not timed out', async (t) => {
  const c = start(SLEEP, { init: false, timeout: 30_000 });
  await c.spawned;
  process.kill(c.pid!, 'SIGKILL');
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', exitCode: 137, timedOut: false, initDied: false, rusage: { maxRSS: null } });
});
