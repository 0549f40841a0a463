// Finding a host program: one PATH search for the library (newuidmap and
// newgidmap) and the CLI (bench's peer runtimes).
import { accessSync, constants as fsc, statSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PATH } from './oci/defaults.js';

/**
 * Absolute path of executable CMD: the absolute directories of $PATH first,
 * then the default PATH's (the sbin directories an unprivileged PATH often
 * lacks). Relative entries are skipped: what they find depends on the working
 * directory, and the id-map helpers found here are setuid-root.
 */
export function which(cmd: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), ...DEFAULT_PATH.split(':')];
  for (const d of new Set(dirs)) {
    if (!d.startsWith('/')) continue;
    const p = join(d, cmd);
    try {
      accessSync(p, fsc.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}
