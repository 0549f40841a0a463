// Structural checks of linux.seccomp: every failure is a SpecError with the
// JSON pointer of the field at fault. What only libseccomp or the kernel can
// judge (an architecture it lacks, an action the kernel lacks) is checked
// when compiling (compile.ts), still naming the field.
import { SpecError } from '../errors.js';
import { loadBinding } from '../native.js';
import { SECCOMP_ACTIONS, SECCOMP_ARCHES, SECCOMP_FLAGS, SECCOMP_OPERATORS, type LinuxSeccomp } from './types.js';

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const U64_MAX = (1n << 64n) - 1n;

function checkU64(v: unknown, ptr: string): void {
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) throw new SpecError(ptr, `must be an unsigned 64-bit integer, got ${v}`);
    return;
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || BigInt(v) > U64_MAX)
    throw new SpecError(ptr, `must be an unsigned 64-bit integer, got ${JSON.stringify(v)}`);
}

function checkErrno(v: unknown, action: unknown, ptr: string): void {
  if (v === undefined) return;
  // The kernel caps SECCOMP_RET_DATA at MAX_ERRNO (4095).
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 4095)
    throw new SpecError(ptr, `must be an errno number between 0 and 4095, got ${JSON.stringify(v)}`);
  if (action !== 'SCMP_ACT_ERRNO' && action !== 'SCMP_ACT_TRACE')
    throw new SpecError(ptr, `is only meaningful with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not ${String(action)}`);
}

function checkAction(v: unknown, ptr: string): void {
  if (typeof v !== 'string' || !(SECCOMP_ACTIONS as readonly string[]).includes(v))
    throw new SpecError(ptr, `unknown action ${JSON.stringify(v)} (one of ${SECCOMP_ACTIONS.join(', ')})`);
  if (v === 'SCMP_ACT_NOTIFY')
    throw new SpecError(ptr, 'SCMP_ACT_NOTIFY (a seccomp agent at listenerPath) is not supported by nodularity');
}

let probed: { flags: number; actions: string[]; libseccomp: string } | undefined;
/** What the kernel offers (filter flags, actions) and libseccomp's version. */
export function seccompProbe(): { flags: number; actions: string[]; libseccomp: string } {
  return (probed ??= loadBinding().seccompProbe());
}

/**
 * The built-in profiles (deep-frozen, so they cannot change after a check):
 * validated once and compiled once, found by identity.
 */
export const builtInProfiles = new WeakSet<object>();

/** Check a linux.seccomp object; `ptr` is its pointer (`/linux/seccomp`). */
export function validateSeccomp(v: unknown, ptr: string): asserts v is LinuxSeccomp {
  if (isObj(v) && builtInProfiles.has(v)) return;
  if (!isObj(v)) throw new SpecError(ptr, 'must be an object ({defaultAction, syscalls, ...})');
  checkAction(v.defaultAction, `${ptr}/defaultAction`);
  checkErrno(v.defaultErrnoRet, v.defaultAction, `${ptr}/defaultErrnoRet`);
  if (v.architectures !== undefined) {
    if (!Array.isArray(v.architectures))
      throw new SpecError(`${ptr}/architectures`, 'must be an array of SCMP_ARCH_* names');
    v.architectures.forEach((a, i) => {
      if (typeof a !== 'string' || !(SECCOMP_ARCHES as readonly string[]).includes(a))
        throw new SpecError(
          `${ptr}/architectures/${i}`,
          `unknown architecture ${JSON.stringify(a)} (SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64, ...)`,
        );
    });
  }
  if (v.flags !== undefined) {
    if (!Array.isArray(v.flags)) throw new SpecError(`${ptr}/flags`, 'must be an array of SECCOMP_FILTER_FLAG_* names');
    const have = seccompProbe().flags;
    v.flags.forEach((f, i) => {
      if (typeof f !== 'string' || !(f in SECCOMP_FLAGS))
        throw new SpecError(
          `${ptr}/flags/${i}`,
          `unknown flag ${JSON.stringify(f)} (one of ${Object.keys(SECCOMP_FLAGS).join(', ')})`,
        );
      if (!(have & SECCOMP_FLAGS[f as keyof typeof SECCOMP_FLAGS]))
        throw new SpecError(`${ptr}/flags/${i}`, `this kernel does not support ${f}`);
    });
  }
  for (const k of ['listenerPath', 'listenerMetadata'] as const)
    if (v[k] !== undefined && typeof v[k] !== 'string') throw new SpecError(`${ptr}/${k}`, 'must be a string');
  if (v.syscalls !== undefined) {
    if (!Array.isArray(v.syscalls)) throw new SpecError(`${ptr}/syscalls`, 'must be an array');
    v.syscalls.forEach((s, i) => {
      const sp = `${ptr}/syscalls/${i}`;
      if (!isObj(s)) throw new SpecError(sp, 'must be an object ({names, action, ...})');
      if (!Array.isArray(s.names) || s.names.length === 0)
        throw new SpecError(`${sp}/names`, 'must be a non-empty array of syscall names');
      s.names.forEach((n, j) => {
        if (typeof n !== 'string' || !/^[a-z0-9_]+$/.test(n))
          throw new SpecError(`${sp}/names/${j}`, `must be a syscall name, got ${JSON.stringify(n)}`);
      });
      checkAction(s.action, `${sp}/action`);
      checkErrno(s.errnoRet, s.action, `${sp}/errnoRet`);
      if (s.args !== undefined && s.args !== null) {
        if (!Array.isArray(s.args)) throw new SpecError(`${sp}/args`, 'must be an array');
        if (s.args.length > 6) throw new SpecError(`${sp}/args`, 'a syscall has at most 6 arguments');
        s.args.forEach((a, k) => {
          const ap = `${sp}/args/${k}`;
          if (!isObj(a)) throw new SpecError(ap, 'must be an object ({index, value, valueTwo, op})');
          if (typeof a.index !== 'number' || !Number.isInteger(a.index) || a.index < 0 || a.index > 5)
            throw new SpecError(
              `${ap}/index`,
              `must be an argument index between 0 and 5, got ${JSON.stringify(a.index)}`,
            );
          checkU64(a.value, `${ap}/value`);
          if (a.valueTwo !== undefined) checkU64(a.valueTwo, `${ap}/valueTwo`);
          if (typeof a.op !== 'string' || !(SECCOMP_OPERATORS as readonly string[]).includes(a.op))
            throw new SpecError(
              `${ap}/op`,
              `unknown operator ${JSON.stringify(a.op)} (one of ${SECCOMP_OPERATORS.join(', ')})`,
            );
        });
      }
    });
  }
}
