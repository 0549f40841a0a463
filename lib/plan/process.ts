// Stage "process": the executable found in the image through the layers
// (PATH search as execvp would), rlimits and capability sets as numbers.
import { readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { SpecError } from '../errors.js';
import type { Spec } from '../oci/spec.js';
import { DEFAULT_PATH } from '../oci/defaults.js';
import { CAPS, RLIMITS } from './flags.js';
import type { PlanBuilder } from './mounts.js';

let capLastCache: number | undefined;
export function capLast(): number {
  if (capLastCache === undefined) {
    try {
      capLastCache = parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'), 10);
    } catch {
      capLastCache = 40;
    }
  }
  return capLastCache;
}

export function capMask(names: string[] | undefined, ptr: string, last: number): bigint {
  let mask = 0n;
  (names ?? []).forEach((n, i) => {
    const num = CAPS[n.toUpperCase().startsWith('CAP_') ? n.toUpperCase() : `CAP_${n.toUpperCase()}`];
    if (num === undefined) throw new SpecError(`${ptr}/${i}`, `unknown capability ${JSON.stringify(n)}`);
    if (num <= last) mask |= 1n << BigInt(num);
  });
  return mask;
}

export function findExecutable(b: PlanBuilder, arg0: string, env: string[], cwd: string): string {
  const candidates: string[] = [];
  let notExecutable: string | undefined;
  if (arg0.includes('/')) candidates.push(posix.resolve(cwd, arg0));
  else {
    const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
    for (const dir of pathVar.split(':')) if (dir.startsWith('/')) candidates.push(posix.join(dir, arg0));
  }
  for (const c of candidates) {
    try {
      const r = b.resolve(c, '/process/args/0');
      if (r.missing.length) continue;
      const h = b.lookup(r.containerPath);
      if (h === null) return c; // inside a tmpfs we create: cannot check, exec will tell
      const st = r.stat ?? statSync(h); // a mount root (a bound file) has no lstat of its own
      if (st.isFile() && (st.mode & 0o111) !== 0) return c;
      notExecutable ??= c;
    } catch {
      /* not this one */
    }
  }
  const where = arg0.includes('/')
    ? ``
    : ` (searched PATH=${env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH})`;
  // `code` lets the CLI exit as Apptainer does: 126 for EACCES, 127 for ENOENT.
  if (notExecutable !== undefined)
    throw new SpecError(
      '/process/args/0',
      `${notExecutable} in the image ${b.rootfs} is not an executable file (permission denied)`,
      { code: 'EACCES' },
    );
  throw new SpecError(
    '/process/args/0',
    `executable ${JSON.stringify(arg0)} not found in the image ${b.rootfs}${where}`,
    { code: 'ENOENT' },
  );
}

/** What the process stage decides. */
export interface ProcessPlan {
  execPath: string;
  env: string[];
  rlimits: { resource: number; soft: number; hard: number }[];
  capLast: number;
  capBounding: bigint;
  capEffective: bigint;
  capPermitted: bigint;
  capInheritable: bigint;
  capAmbient: bigint;
}

/** The process of a spec: its executable (looked up through the planned mounts), rlimits and capabilities. */
export function planProcess(spec: Spec, b: PlanBuilder, cwd: string, last: number = capLast()): ProcessPlan {
  const proc = spec.process!;
  const env = proc.env ?? [`PATH=${DEFAULT_PATH}`];
  const execPath = findExecutable(b, proc.args[0], env, cwd);
  return { execPath, env, ...planProcessSecurity(spec, last) };
}

/** rlimits and capability masks of spec.process (also for an exec into a running container). */
export function planProcessSecurity(spec: Spec, last: number = capLast()): Omit<ProcessPlan, 'execPath' | 'env'> {
  const proc = spec.process!;
  const rlimits = (proc.rlimits ?? []).map((r, i) => {
    const resource = RLIMITS[r.type.toUpperCase()];
    if (resource === undefined)
      throw new SpecError(`/process/rlimits/${i}/type`, `unknown rlimit ${JSON.stringify(r.type)}`);
    return { resource, soft: r.soft, hard: r.hard };
  });
  const caps = proc.capabilities ?? {};
  const capBounding = capMask(caps.bounding, '/process/capabilities/bounding', last);
  const capEffective = capMask(caps.effective, '/process/capabilities/effective', last);
  const capPermitted = capMask(caps.permitted, '/process/capabilities/permitted', last);
  const capInheritable = capMask(caps.inheritable, '/process/capabilities/inheritable', last);
  const capAmbient = capMask(caps.ambient, '/process/capabilities/ambient', last);
  if ((capEffective & ~capPermitted) !== 0n)
    throw new SpecError('/process/capabilities/effective', 'must be a subset of permitted');
  if ((capAmbient & ~(capPermitted & capInheritable)) !== 0n)
    throw new SpecError('/process/capabilities/ambient', 'must be a subset of both permitted and inheritable');
  return { rlimits, capLast: last, capBounding, capEffective, capPermitted, capInheritable, capAmbient };
}
