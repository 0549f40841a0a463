// How the CLI ends: with the payload's own status, or RUNTIME_FAILURE when the
// runtime itself failed. Batch systems (HTCondor, Slurm) read these.
import type { Container } from '../container.js';

/** Exit status for failures of the runtime itself (not of the payload), as Apptainer uses 255. */
export const RUNTIME_FAILURE = 255;

/** Forward the usual terminal/batch signals to the container, then exit with its status. */
export async function runAndExit(c: Container): Promise<never> {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => c.kill(sig));
  const r = await c.exited;
  process.exit(r.exitCode);
}
