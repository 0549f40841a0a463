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
// SIGTERM ignored (SIG_IGN survives the exec into sleep), and "ready" once it
// is: a SIGTERM that came earlier (the shell starting) would still kill it.
const DEAF = ['/bin/sh', '-c', "trap '' TERM; echo ready; exec /bin/sleep 300"];
// Ends with status 3 when it gets SIGTERM (once "ready").
const POLITE = ['/bin/sh', '-c', "trap 'exit 3' TERM; echo ready; /bin/sleep 300 & wait"];
// Upper bound on any wait for a container to end; a failure, never a pass.
const BOUND = 60_000;

/** The container's exit, or a failure (and SIGKILL to it, by pid) after BOUND ms. */
async function exitWithin(t: { fail(msg: string): void }, c: Container, ms = BOUND): Promise<ExitResult | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((res) => {
    timer = setTimeout(() => res(null), ms);
  });
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

/** Start a DEAF/POLITE payload (stdout piped); `ready` resolves at its "ready" line. */
function startReady(
  args: string[],
  o: SpawnOptions = {},
): { c: Container; ready: Promise<boolean>; isReady: () => boolean } {
  const c = spawn(spec(args), { stdio: ['ignore', 'pipe', 'ignore'], ...o });
  let out = '';
  const ready = new Promise<boolean>((res) => {
    c.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('ready\n')) res(true);
    });
    c.stdout!.once('close', () => res(out.includes('ready\n')));
  });
  return { c, ready, isReady: () => out.includes('ready\n') };
}

/**
 * A timeout on a DEAF payload. The timeout may fire before the shell has set
 * its trap (a slow machine): the payload then dies of that SIGTERM without
 * saying "ready", and the run is repeated with a longer timeout. A payload
 * that said "ready" had ignored SIGTERM when the timeout's signal came.
 */
async function deafTimeout(
  t: { fail(msg: string): void; comment(msg: string): void },
  o: SpawnOptions,
): Promise<ExitResult | null> {
  for (let timeout = o.timeout!; timeout <= 16 * o.timeout!; timeout *= 2) {
    const { c, ready } = startReady(DEAF, { ...o, timeout });
    const r = await exitWithin(t, c);
    if (!r) return null;
    if (await ready) return r;
    t.comment(`not ready within a ${timeout} ms timeout (${r.signal}): again, longer`);
  }
  t.fail('the payload never got ready before its timeout');
  return null;
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

t.test(
  'timeout ends a PID 1 payload (init: false) that never sees SIGTERM: SIGKILL after the grace period',
  async (t) => {
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
      t.equal(r.rusage.maxRSS, null, "no init, no figure of the payload's own");
    }
    t.same(zombieChildren(), []);
  },
);

t.test('timeout with init: a payload ignoring SIGTERM gets SIGKILL after the grace period', async (t) => {
  const r = await deafTimeout(t, { timeout: 500, forceKillAfterDelay: 1000 });
  if (!r) return;
  const pid = r.pid;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.exitCode, 137);
  t.equal(r.timedOut, true);
  t.equal(r.initDied, true, "the SIGKILL went to the init: the payload's status is unknown");
  t.equal(r.rusage.maxRSS, null);
  t.equal(procState(pid), null, 'the init is gone (reaped)');
});

t.test('the default grace period ends a payload ignoring SIGTERM too', async (t) => {
  // Default 10 s: bounded by BOUND, not timed.
  const r = await deafTimeout(t, { timeout: 500 });
  if (!r) return;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.timedOut, true);
});

t.test('a payload that ends on SIGTERM within the grace period is not escalated', async (t) => {
  // The timeout's signal must come after the trap: wait for "ready", then abort
  // (the same stop as the timeout's), with a timeout far off for timedOut.
  const ac = new AbortController();
  const { c, ready } = startReady(POLITE, { signal: ac.signal, forceKillAfterDelay: 60_000 });
  t.equal(await ready, true, 'trap set');
  ac.abort();
  const polite = await exitWithin(t, c);
  if (polite) t.match(polite, { exitCode: 3, signal: null, timedOut: false, initDied: false });
  t.ok(polite && polite.rusage.maxRSS! > 0, "the init reported the payload's peak RSS");
  const plain = await exitWithin(t, start(SLEEP, { timeout: 300, forceKillAfterDelay: 60_000 }));
  if (plain) t.match(plain, { exitCode: 143, signal: 'SIGTERM', timedOut: true, initDied: false });
});

t.test('forceKillAfterDelay: false never escalates; bad values are refused', async (t) => {
  const ac = new AbortController();
  const { c, ready } = startReady(DEAF, { signal: ac.signal, timeout: 60_000, forceKillAfterDelay: false });
  t.equal(await ready, true, 'trap set');
  ac.abort();
  // Bounded wait past the abort: still running (the SIGTERM was ignored).
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(c.exitCode, null, 'still running');
  t.ok(c.kill('SIGKILL'));
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', timedOut: false });
  for (const bad of [-1, NaN, Infinity, '10' as unknown as number, true as unknown as number])
    t.throws(
      () => start(SLEEP, { forceKillAfterDelay: bad }),
      /options\.forceKillAfterDelay must be a number of ms \(0 or more\) or false/,
    );
});

t.test('AbortSignal escalates as the timeout does, and rejects run()', async (t) => {
  const ac = new AbortController();
  const { c, ready } = startReady(DEAF, { signal: ac.signal, forceKillAfterDelay: 1000 });
  t.equal(await ready, true, 'trap set');
  ac.abort();
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGKILL', timedOut: false, initDied: true });
  // run() (no Container to kill by hand here): a bounded wait, failing when late.
  const ac2 = new AbortController();
  const p = run(spec(SLEEP, {}), { stdio: 'ignore', init: false, signal: ac2.signal, forceKillAfterDelay: 500 });
  setTimeout(() => ac2.abort(), 200);
  let guard: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    p.then(
      () => 'resolved',
      (e: Error) => e.name,
    ),
    new Promise((res) => {
      guard = setTimeout(() => res(`still running after ${BOUND / 1000} s`), BOUND);
    }),
  ]);
  clearTimeout(guard);
  t.equal(outcome, 'AbortError', 'run() rejects once the PID 1 payload is gone');
  t.same(zombieChildren(), []);
});

t.test('kill() sends only what it asks: no escalation', async (t) => {
  const { c, ready } = startReady(DEAF, { forceKillAfterDelay: 200 });
  t.equal(await ready, true, 'trap set');
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
  await c.spawned; // not cancelled: the payload was exec'd, then got the signal
  const r = await exitWithin(t, c);
  if (r) t.match(r, { signal: 'SIGTERM', exitCode: 143, timedOut: false, initDied: false });

  // An abort before 'spawn' (synchronously after spawn()) is the same. Without
  // init the queued SIGTERM is dropped by the kernel (PID 1), and the
  // escalation, armed once the SIGTERM went out, ends it.
  const ac3 = new AbortController();
  const e = start(SLEEP, { init: false, signal: ac3.signal, forceKillAfterDelay: 500 });
  ac3.abort();
  const re = await exitWithin(t, e);
  if (re) t.match(re, { signal: 'SIGKILL', initDied: false });
});

t.test('the init killed by another process: SIGKILL, initDied, maxRSS unknown, not timed out', async (t) => {
  const c = start(SLEEP, { timeout: 30_000 });
  await c.spawned;
  process.kill(c.pid!, 'SIGKILL'); // the init, by pid (as a cleanup by uid would)
  const r = await exitWithin(t, c);
  if (!r) return;
  t.equal(r.signal, 'SIGKILL');
  t.equal(r.exitCode, 137);
  t.equal(r.initDied, true);
  t.equal(r.rusage.maxRSS, null, "unknown, not the figure that includes Node's memory");
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
  while ((procState(pid) !== 'Z' || Date.now() - started < 1200) && Date.now() < until) {
    /* block the loop */
  }
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
