// Shared test fixtures: a scratch dir per test, a busybox rootfs with the
// multi-call payload, and probes of what the machine gives us. Every probe
// that fails in CI makes the test fail, never skip.
import type tap from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs } from '../../scripts/busybox-rootfs.mjs';
import { createSpec, type SpecOptions, type Spec } from '../../lib/index.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const payloadBinary = join(repoRoot, 'build', 'Release', 'nodularity-test-payload');
export const isRoot = process.geteuid!() === 0;
export const uid = process.geteuid!();
export const gid = process.getegid!();

type Teardown = { teardown(fn: () => void): void };
/** The `t` a subtest callback gets (tap's overloads hide it from Parameters<> otherwise). */
export type Tap = Parameters<Parameters<typeof tap.test>[0]>[0];

/** A fresh directory removed when the test ends. */
export function scratch(t: Teardown, prefix = 'nodularity-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let sharedRootfs: string | undefined;
/**
 * A busybox rootfs with /payload (the multi-call test binary), made once per
 * test process by the user running the tests (so it owns the files).
 */
export function testRootfs(): string {
  if (sharedRootfs) return sharedRootfs;
  const dir = mkdtempSync(join(tmpdir(), 'nodularity-rootfs-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  makeBusyboxRootfs(dir);
  copyFileSync(payloadBinary, join(dir, 'payload'));
  chmodSync(join(dir, 'payload'), 0o755);
  sharedRootfs = dir;
  return dir;
}

/** createSpec on the test rootfs. */
export function spec(args: string[], o: Partial<SpecOptions> = {}): Spec {
  return createSpec({ rootfs: testRootfs(), args, ...o });
}

/** Open fds of this process (numbers). */
export function openFds(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      try {
        readlinkSync(`/proc/self/fd/${fd}`);
        return true;
      } catch {
        return false; // the directory stream itself
      }
    });
}

/** Pids of our children that are zombies. */
export function zombieChildren(): number[] {
  const me = process.pid;
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === 'Z' && Number(rest[1]) === me) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Mount points of the host (this process's mount namespace). */
export function hostMounts(): string {
  return readFileSync('/proc/self/mountinfo', 'utf8');
}

/** Whether a command exists; in CI a missing tool is an error. */
export function haveCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
