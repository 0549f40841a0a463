// Whether the CLI forwards signals to a running payload (runAndExit). Until
// then main.ts's handler ends the CLI on SIGINT/SIGTERM/SIGHUP. Inferring it
// from "a listener that was not there at start" was wrong: signal-exit
// (proper-lockfile's) adds its listeners when the cache takes its first lock,
// and a SIGTERM during a pull was then swallowed by both (the pull finished,
// exit 0).
import type { Container } from '../container.js';
import { runAndExit } from './payload-exit.js';

let forwarding = false;

export function payloadForwarding(): boolean {
  return forwarding;
}

/** runAndExit, after telling main.ts's signal handler to step aside. */
export function forwardAndExit(c: Container, after?: () => Promise<void>): Promise<never> {
  forwarding = true;
  return runAndExit(c, after);
}
