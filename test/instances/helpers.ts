// Shared by the instance tests: a store of the test's own, a busybox image
// with a startscript, the host checks (processes by pid, mounts by path).
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '../../scripts/busybox-rootfs.mjs';
import { scratch, type Tap } from '../helpers/env.js';
import { cli, type CliResult } from '../hostile/fixtures.js';

/** A store base of the test's own (the CLI and the library read $NODULARITY_INSTANCE_DIR). */
export function storeBase(t: Tap): string {
  const base = join(scratch(t, 'nodularity-instances-'), 'store');
  mkdirSync(base, { mode: 0o755 });
  chmodSync(join(base, '..'), 0o755);
  return base;
}

/** The caller's store under base, as lib/singularity/instance-store.ts lays it out. */
export function userStore(base: string, user = userInfo().username): string {
  return join(base, hostname(), user);
}

/** The instance directories recorded under base (the logs directory aside). */
export function recorded(base: string): string[] {
  try {
    return readdirSync(userStore(base)).filter((n) => n !== 'logs');
  } catch {
    return [];
  }
}

/** The CLI with the test's store. */
export function icli(base: string, args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000): CliResult {
  return cli(args, { NODULARITY_INSTANCE_DIR: base, ...env }, timeout);
}

/** A busybox image whose /.singularity.d/startscript is `script`; /www/index.html says `page`. */
export function imageWithStartscript(t: Tap, script: string, page = 'hello from the instance\n'): string {
  const dir = join(scratch(t, 'nodularity-instance-image-'), 'rootfs');
  mkdirSync(dir);
  makeBusyboxRootfs(dir);
  mkdirSync(join(dir, '.singularity.d'), { recursive: true });
  writeFileSync(join(dir, '.singularity.d', 'startscript'), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  mkdirSync(join(dir, 'www'));
  writeFileSync(join(dir, 'www', 'index.html'), page);
  chmodSync(join(dir, '..'), 0o755);
  return dir;
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** The process is there and not a zombie. */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Pids of host processes whose argv contains `tag`. */
export function pidsTagged(tag: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(tag) && running(Number(e))) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Lines of the host's mount table naming `path`. */
export function mountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(path));
}

export async function until(what: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (what()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return what();
}
