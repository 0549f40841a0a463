// How the CLI ends: with the payload's own status, or RUNTIME_FAILURE when the
// runtime itself failed. Batch systems (HTCondor, Slurm) read these.
import { once } from 'node:events';
import type { Container } from '../container.js';
import { loadBinding } from '../native.js';

/** Exit status for failures of the runtime itself (not of the payload), as Apptainer uses 255. */
export const RUNTIME_FAILURE = 255;

/**
 * Whether the CLI runs at a terminal on all three streams: then the payload
 * gets a terminal of its own (a pty in the container) and the CLI relays it,
 * as ssh, `docker run -it` and `podman run -it` do. With any stream
 * redirected it does not: output through a pty would gain carriage returns.
 */
export function interactiveTerminal(): { rows: number; columns: number } | false {
  if (!process.stdin.isTTY || !process.stdout.isTTY || !process.stderr.isTTY) return false;
  return { rows: process.stdout.rows || 24, columns: process.stdout.columns || 80 };
}

const closes = new WeakMap<Container, Promise<unknown>>();
/**
 * The container's 'close', listened to from the first call on: a caller that
 * does other work between spawn and runAndExit (the OCI verbs run hooks) calls
 * this right after spawn, so a container that ends meanwhile is not waited
 * for forever (once() after the event never resolves, and the loop would
 * empty: exit 0).
 */
export function closedPromise(c: Container): Promise<unknown> {
  let p = closes.get(c);
  if (!p) {
    p = once(c, 'close');
    p.catch(() => {});
    closes.set(c, p);
  }
  return p;
}

/**
 * Forward the usual batch signals to the container, relay its terminal if it
 * has one, then exit with its status. The container runs in a session of its
 * own, so a Ctrl-C or a signal to our process group reaches it exactly once:
 * through us, or (with a terminal, ours in raw mode) as a keystroke its own
 * terminal turns into SIGINT for its foreground job.
 */
export async function runAndExit(c: Container, after?: () => Promise<void>): Promise<never> {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const)
    process.on(sig, () => c.kill(sig));
  const closed = closedPromise(c);
  let restore = () => {};
  await c.spawned; // the terminal exists from 'spawn' on
  if (c.terminal) restore = relayTerminal(c);
  const r = await c.exited;
  await closed.catch(() => {});
  restore();
  // The image's cache hold (exec of a cached image) is released on exit;
  // let that finish, or a --force-parked root waits for the next clean.
  await (c as { image?: { hold?: { release(): Promise<void> | void } } }).image?.hold?.release();
  // `nodularity-oci run`: the container's state goes, and its poststop hooks run.
  await after?.();
  process.exit(r.exitCode);
}

function relayTerminal(c: Container): () => void {
  const term = c.terminal!;
  const stdin = process.stdin;
  // Raw, output processing included (setRawMode keeps ONLCR: \r\r\n).
  const saved = loadBinding().makeRaw(0);
  stdin.on('data', (d) => term.write(d));
  stdin.resume();
  term.on('data', (d) => process.stdout.write(d));
  const onResize = () => {
    try {
      c.resize(process.stdout.columns, process.stdout.rows);
    } catch {
      /* gone */
    }
  };
  process.stdout.on('resize', onResize);
  return () => {
    process.stdout.off('resize', onResize);
    if (typeof saved !== 'number') loadBinding().restoreTerminal(0, saved);
    stdin.pause();
  };
}
