// linux.seccomp -> the BPF program the child loads: compiled by libseccomp
// in the addon (main thread, before clone), cached per profile content so
// that a launch with a profile already seen costs a lookup. The built-in
// profiles are found by identity; any other by the SHA-256 of its canonical
// JSON (keys sorted), so an equal profile read again from a file hits too.
import { createHash } from 'node:crypto';
import { SpecError } from '../errors.js';
import { loadBinding } from '../native.js';
import { SECCOMP_FLAGS, type LinuxSeccomp } from './types.js';
import { builtInProfiles, seccompProbe } from './validate.js';

export interface CompiledSeccomp {
  /** struct sock_filter[] as bytes. */
  filter: Buffer;
  /** SECCOMP_FILTER_FLAG_* for seccomp(2). */
  flags: number;
  /** Syscall names libseccomp does not know (ignored, as runc and crun do). */
  unknown: string[];
  /** Why the profile cannot run with / without the init (checkAfterFilter), computed once. */
  refusal: { init?: SpecError; exec?: SpecError };
}

const MAX_ENTRIES = 64;
const byIdentity = new WeakMap<object, CompiledSeccomp>();
const byHash = new Map<string, CompiledSeccomp>();

function canonical(v: unknown): string {
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null)
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v) ?? 'null';
}

let warn = (message: string): void => {
  process.emitWarning(message, { code: 'NODULARITY_SECCOMP_UNKNOWN_SYSCALL' });
};
/** Where the (one per profile) warning about unknown syscall names goes; default process.emitWarning. */
export function onSeccompWarning(fn: (message: string) => void): void {
  warn = fn;
}

/** How many profiles were compiled (not found in the cache) by this process; for tests and bench. */
export let compileCount = 0;

/** Compile a validated profile; `ptr` prefixes the pointers of errors (`/linux/seccomp`). */
export function compileSeccomp(profile: LinuxSeccomp, ptr: string): CompiledSeccomp {
  const trusted = builtInProfiles.has(profile);
  if (trusted) {
    const hit = byIdentity.get(profile);
    if (hit) return hit;
  }
  const key = createHash('sha256').update(canonical(profile)).digest('hex');
  let c = byHash.get(key);
  if (!c) {
    c = compile(profile, ptr);
    if (byHash.size >= MAX_ENTRIES) byHash.delete(byHash.keys().next().value!);
    byHash.set(key, c);
  }
  if (trusted) byIdentity.set(profile, c);
  return c;
}

function compile(profile: LinuxSeccomp, ptr: string): CompiledSeccomp {
  compileCount++;
  const rules = (profile.syscalls ?? []).flatMap((s, i) =>
    s.names.map((name) => ({
      name,
      action: s.action,
      errnoRet: s.errnoRet,
      pointer: `/syscalls/${i}`,
      args: (s.args ?? []).map((a) => ({
        index: a.index,
        op: a.op,
        value: BigInt(a.value),
        valueTwo: BigInt(a.valueTwo ?? 0),
      })),
    })),
  );
  let out: { filter: Buffer; unknown: string[] };
  try {
    out = loadBinding().compileSeccomp({
      defaultAction: profile.defaultAction,
      defaultErrnoRet: profile.defaultErrnoRet,
      architectures: profile.architectures ?? [],
      rules,
    });
  } catch (e) {
    const err = e as Error & { pointer?: string };
    if (err.pointer === undefined) throw e;
    throw new SpecError(`${ptr}${err.pointer}`, `${err.message} (libseccomp ${seccompProbe().libseccomp})`);
  }
  let flags = 0;
  for (const f of profile.flags ?? []) flags |= SECCOMP_FLAGS[f as keyof typeof SECCOMP_FLAGS];
  // WAIT_KILLABLE_RECV only means something for a notifying filter (the
  // kernel refuses it without NEW_LISTENER); SCMP_ACT_NOTIFY is refused, so
  // it is accepted (where the kernel has it) and not passed on.
  flags &= ~SECCOMP_FLAGS.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
  const unknown = [...new Set(out.unknown)];
  if (unknown.length)
    warn(`${ptr}: ignoring syscall names libseccomp ${seccompProbe().libseccomp} does not know: ${unknown.join(', ')}`);
  const refusal: CompiledSeccomp['refusal'] = {};
  for (const init of [true, false]) {
    try {
      checkAfterFilter(profile, ptr, init);
    } catch (e) {
      refusal[init ? 'init' : 'exec'] = e as SpecError;
    }
  }
  return { filter: out.filter, flags, unknown, refusal };
}

// The syscalls made after the filter is loaded: by the child (fcntl, then
// execveat of the init; or the mask reset and execve), on failure (write,
// exit_group), and by the init (native/init.c) for the container's life.
export const INIT_SYSCALLS = [
  'fcntl',
  'execveat',
  'prctl',
  'rt_sigprocmask',
  'pipe2',
  'clone',
  'setpgid',
  'getpid',
  'ioctl',
  'execve',
  'write',
  'read',
  'close',
  'wait4',
  'exit_group',
  'rt_sigtimedwait',
  'kill',
  // waiting on the start gate (SpawnOptions.startGate)
  'signalfd4',
  'ppoll',
];
export const EXEC_SYSCALLS = ['rt_sigprocmask', 'execve'];

const PASSES = new Set(['SCMP_ACT_ALLOW', 'SCMP_ACT_LOG']);

/**
 * Refuse a profile that would stop what runs after the filter: the init's
 * calls (it would be killed, or spin on an error it cannot recover from, and
 * the container would hang) or the payload's execve. A syscall counts as
 * blocked when any rule names it with a blocking action, with conditions or
 * not (we cannot tell which arguments the init passes through every path),
 * or when no passing rule names it and the default action blocks. A
 * conditional passing rule is trusted (an allow-list may allow clone only
 * without namespace flags; the init's clone has none).
 */
export function checkAfterFilter(profile: LinuxSeccomp, ptr: string, init: boolean): void {
  const needed = init ? INIT_SYSCALLS : EXEC_SYSCALLS;
  const syscalls = profile.syscalls ?? [];
  for (const name of needed) {
    let passing = false;
    for (const [i, s] of syscalls.entries()) {
      if (!s.names.includes(name)) continue;
      if (PASSES.has(s.action)) passing = true;
      else throw refusal(`${ptr}/syscalls/${i}`, name, s.action, init);
    }
    if (!passing && !PASSES.has(profile.defaultAction))
      throw refusal(`${ptr}/defaultAction`, name, profile.defaultAction, init);
  }
}

function refusal(ptr: string, name: string, action: string, init: boolean): SpecError {
  const who =
    init && !EXEC_SYSCALLS.includes(name)
      ? `which the container's init (PID 1) makes after the filter is loaded; allow it, or run without the init (init: false, --no-init)`
      : 'which starting the payload needs';
  return new SpecError(ptr, `${action} for ${name}(2), ${who}`);
}
