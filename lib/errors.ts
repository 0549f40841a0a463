// The error model (docs/error-model.md). Three classes, each naming what is at fault:
//  - SpecError: the spec or the options are wrong; caught before clone, with
//    the JSON pointer of the spec field (`/mounts/2/source`), or the option
//    as the caller names it (`--bind`, `image`, `rootOverlay`) in `option`.
//  - ContainerError: a launch step failed: before clone in the addon
//    (step 'init' or 'prepare'), clone itself, a child step, the parent's
//    side of the protocol, or the init; it carries the step, errno name and
//    text, syscall and the path(s), and a hint for the (step, errno) pairs
//    people meet most.
//  - ImageError lives with the image code.
import { constants as osc } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/** Setup steps, in the order of `enum child_step` in native/protocol.h. */
export const STEP_NAMES = [
  'clone',
  'reset-signals',
  'stdio',
  'setgroups-deny',
  'uid-map',
  'gid-map',
  'wait-id-maps',
  'sethostname',
  'setdomainname',
  'root-propagation',
  'bind-rootfs',
  'mount',
  'loopback-up',
  'pivot-root',
  'root-readonly',
  'chdir',
  'rlimit',
  'drop-bounding-caps',
  'setgroups',
  'setgid',
  'setuid',
  'capset',
  'ambient-caps',
  'no-new-privs',
  'parent-death-signal',
  'close-fds',
  'exec-init',
  'init-fork',
  'exec',
  'id-map-helper',
  'overlay-root',
  'session-keyring',
  'root-fd',
  'setsid',
  'terminal',
  'setup-ids',
  'root-nodev',
  'protocol',
  'seccomp',
  'start-gate',
  'join-namespaces',
  'sysctl',
  'process-attrs',
  'hooks',
] as const;
export type StepName = (typeof STEP_NAMES)[number];

/** Which call of a mount op failed, as `enum mount_call` in native/protocol.h. */
export const MOUNT_CALLS = [
  'mount',
  'mount_setattr',
  'remount',
  'mkdir',
  'create',
  'symlink',
  'stat',
  'bind (fallback)',
  'open_tree',
  'move_mount',
  'openat2',
  'exists',
  'split-path',
  'fchmodat',
  'fstat',
  'mknod',
] as const;

const errnoMap = getSystemErrorMap();
const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(osc.errno)) if (!errnoNames.has(num)) errnoNames.set(num, name);
// libuv's table lacks a few that setup steps do return.
const EXTRA_TEXT: Record<string, string> = {
  ENOEXEC: 'exec format error',
  EOVERFLOW: 'value too large for defined data type',
  ECHILD: 'no child processes',
  EPROTO: 'protocol error',
};

/** errno number -> [code, text], e.g. 2 -> ['ENOENT', 'no such file or directory']. */
export function describeErrno(errno: number): [string, string] {
  const n = Math.abs(errno);
  const e = errnoMap.get(-n);
  if (e) return [e[0], e[1]];
  const name = errnoNames.get(n) ?? `E${n}`;
  return [name, EXTRA_TEXT[name] ?? `errno ${n}`];
}

export interface ContainerErrorFields {
  step: StepName | string;
  errno?: number;
  syscall?: string;
  path?: string;
  target?: string;
  flags?: string;
  detail?: string;
}

export class ContainerError extends Error {
  readonly step: string;
  readonly errno?: number;
  readonly code?: string;
  readonly syscall?: string;
  readonly path?: string;
  readonly target?: string;
  readonly flags?: string;
  readonly hint?: string;

  constructor(what: string, f: ContainerErrorFields) {
    let code: string | undefined;
    let text = '';
    if (f.errno !== undefined) [code, text] = describeErrno(f.errno);
    const hint = hintFor(f.step, code, f);
    const where = f.syscall ? `${f.syscall}(2) ` : '';
    let msg = `${what}: ${where}${code ?? ''}${text ? `: ${text}` : ''}`;
    if (f.detail) msg += ` (${f.detail})`;
    if (hint) msg += `\nhint: ${hint}`;
    super(msg);
    this.name = 'ContainerError';
    this.step = f.step;
    this.errno = f.errno;
    this.code = code;
    this.syscall = f.syscall;
    this.path = f.path;
    this.target = f.target;
    this.flags = f.flags;
    this.hint = hint;
  }
}

export class SpecError extends Error {
  /**
   * JSON pointer (RFC 6901) of the spec field at fault, e.g.
   * `/linux/uidMappings/1`; '' when the fault is not in the spec but in an
   * option (see `option`) or in the spec file as a whole.
   */
  readonly pointer: string;
  /** The option at fault as its caller spells it (`--bind`, `image`, `binds[0].source`), when not a spec field. */
  readonly option?: string;
  /** errno name where the reason is one (the executable: ENOENT, EACCES), for exit statuses. */
  readonly code?: string;

  /**
   * `where` is a JSON pointer ('' or starting with '/', RFC 6901) or, for a
   * fault in an option, the option's name (`--bind`): anything that is not a
   * pointer goes to `option`, so `pointer` is never an option name.
   */
  constructor(where: string, reason: string, more: { option?: string; code?: string } = {}) {
    const isPointer = where === '' || where.startsWith('/');
    const option = more.option ?? (isPointer ? undefined : where);
    super(`${option ?? (where || '/')}: ${reason}`);
    this.name = 'SpecError';
    this.pointer = isPointer ? where : '';
    if (option !== undefined) this.option = option;
    if (more.code !== undefined) this.code = more.code;
  }

  /** A fault in an option rather than the spec: `pointer` is '', `option` names it. */
  static inOption(option: string, reason: string): SpecError {
    return new SpecError('', reason, { option });
  }
}

/** Actionable advice for known (step, errno) pairs, in the manner of bubblewrap. */
function hintFor(step: string, code: string | undefined, f: ContainerErrorFields): string | undefined {
  if (step === 'clone' && (code === 'EPERM' || code === 'EACCES'))
    return "unprivileged user namespaces look disabled here (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces, or an LSM policy such as AppArmor's restrict_unprivileged_userns)";
  if (step === 'clone' && code === 'ENOSPC')
    return 'a namespace limit was reached (see /proc/sys/user/max_*_namespaces)';
  if (step === 'clone' && code === 'EINVAL')
    return 'the kernel refused this combination of namespaces; is it older than 5.2 (CLONE_PIDFD)?';
  if (step === 'mount' && code === 'EPERM' && /remount|setattr/.test(f.syscall ?? ''))
    return 'a locked mount flag (nosuid, nodev, noexec, ro, atime) of the source cannot be cleared inside a user namespace';
  if (step === 'mount' && code === 'ENOENT' && f.path?.startsWith('/cvmfs/'))
    return `the CernVM-FS repository is not mounted on the host: try \`ls ${f.path}\` there first (autofs mounts on access)`;
  if (step === 'mount' && code === 'ENOENT') return 'the bind source or the mount point does not exist';
  if (step === 'uid-map' || step === 'gid-map')
    return 'the id mapping was refused: an unprivileged caller may map only its own id unless newuidmap/newgidmap and /etc/subuid, /etc/subgid allow more';
  if (step === 'id-map-helper')
    return 'newuidmap/newgidmap refused the ranges: check /etc/subuid and /etc/subgid for this user';
  if (step === 'exec' && code === 'ENOENT')
    return 'the executable or its ELF interpreter (dynamic loader) is missing in the image';
  if (step === 'exec' && code === 'EACCES')
    return 'the executable is not executable, or its file system is mounted noexec';
  if (step === 'seccomp' && code === 'EACCES')
    return "without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN (in the container's user namespace): set process.noNewPrivileges, or keep CAP_SYS_ADMIN";
  if (step === 'seccomp' && code === 'EINVAL')
    return 'the kernel refused the filter or one of its flags (linux.seccomp.flags)';
  if (step === 'rlimit' && code === 'EPERM')
    return 'raising a hard rlimit above the current one needs CAP_SYS_RESOURCE in the initial user namespace';
  return undefined;
}
