// The last planning stage: turning a failure record {step, errno, index,
// detail} from the child (or the parent side, or the init) back into the
// plan's own words. One row per step of native/protocol.h; the Record type
// makes a missing row a compile error, and test/unit/describe.test.ts checks
// every step renders. What index and detail mean per step is written above
// enum child_step in native/protocol.h.
import { ContainerError, MOUNT_CALLS, STEP_NAMES, type ContainerErrorFields, type StepName } from '../errors.js';
import { CAPS, CLONE, attrNames, msFlagNames } from './flags.js';
import type { MountOp } from './types.js';

/** A failure record as the addon delivers it (lib/native.ts SpawnFailure). */
export interface FailureRecord {
  step: number;
  errno: number;
  index: number;
  detail: number;
  helperOutput?: string;
}

/** One planned mount op with what a message needs to name it. */
export interface PlannedOp {
  op: MountOp;
  /** e.g. "bind-mount /home/u -> /home/u", "mount proc on /proc". */
  what: string;
  /** Container path the op acts on. */
  target: string;
  /** Host path (bind source) or file system source, when there is one. */
  source?: string;
}

/** What the describe stage needs to know of the plan. */
export interface DescribeContext {
  ops: readonly PlannedOp[];
  rootfs: string;
  overlay: boolean;
  /** The mount points made in the overlay's upper layer (container paths), and the persistent overlay directory. */
  overlayPrep?: string[];
  overlayDir?: string;
  overlayDirReadonly?: boolean;
  cwd: string;
  execPath: string;
  cloneFlags: number;
  /** Namespaces joined, in join order (index: linux.namespaces index, or -1 for an exec's target). */
  joins?: { ns: string; path: string; index: number }[];
  hostname?: string;
  domainname?: string;
  /** linux.sysctl in plan order. */
  sysctls?: { key: string; path: string; value: string }[];
  rootPropagation: string;
  uidMap?: string;
  gidMap?: string;
  uidHelperArgs?: string[];
  gidHelperArgs?: string[];
  /** process.rlimits types, in plan order. */
  rlimitTypes: string[];
  /** Length of the seccomp program (0: none). */
  seccompInstructions: number;
  uid: number;
  gid: number;
  groups?: number[];
}

export function cloneFlagNames(flags: number): string {
  return Object.entries(CLONE)
    .filter(([, v]) => flags & v)
    .map(([k]) => `CLONE_${k}`)
    .join('|');
}

function capName(n: number): string {
  return Object.entries(CAPS).find(([, v]) => v === n)?.[0] ?? `capability ${n}`;
}

type Row = (
  r: FailureRecord,
  c: DescribeContext,
) => [what: string, fields?: Omit<ContainerErrorFields, 'step' | 'errno'>];

const call = (r: FailureRecord) => MOUNT_CALLS[r.detail] ?? 'mount';
const byWhom = (r: FailureRecord) => (r.index === 1 ? ' (by the parent)' : '');
const PROTOCOL_FAULTS = [
  'read from the report pipe failed',
  'the report pipe ended inside a record',
  'a report of an unexpected type',
];

/** The table: one row per step, in the order of enum child_step. */
const ROWS: Record<StepName, Row> = {
  clone: (_, c) => [`clone ${cloneFlagNames(c.cloneFlags)}`, { syscall: 'clone' }],
  'reset-signals': () => ['reset signal dispositions', { syscall: 'rt_sigaction' }],
  stdio: () => ['place stdio on fds 0, 1, 2', { syscall: 'dup3' }],
  'setgroups-deny': (r) => [`write setgroups "deny"${byWhom(r)}`, { syscall: 'write' }],
  'uid-map': (r, c) => [`write uid_map "${c.uidMap?.trim()}"${byWhom(r)}`, { syscall: 'write' }],
  'gid-map': (r, c) => [`write gid_map "${c.gidMap?.trim()}"${byWhom(r)}`, { syscall: 'write' }],
  'wait-id-maps': () => ['wait for the parent to write the id maps', { syscall: 'read' }],
  sethostname: (_, c) => [`set hostname ${JSON.stringify(c.hostname)}`, { syscall: 'sethostname' }],
  setdomainname: (_, c) => [`set domainname ${JSON.stringify(c.domainname)}`, { syscall: 'setdomainname' }],
  'root-propagation': (r, c) => [
    r.index === 1
      ? `make the new / ${c.rootPropagation} (linux.rootfsPropagation)`
      : `make / ${/private$/.test(c.rootPropagation) ? 'rprivate' : 'rslave'} before the mounts`,
    { syscall: 'mount', path: '/' },
  ],
  'bind-rootfs': (r, c) => [`bind-rootfs ${c.rootfs}`, { syscall: call(r), path: c.rootfs }],
  mount: (r, c) => {
    const p = c.ops[r.index];
    if (!p) return [`mount op ${r.index}`, { syscall: call(r) }];
    const flags = [p.op.flags ? msFlagNames(p.op.flags) : '', p.op.attrSet ? attrNames(p.op.attrSet) : '']
      .filter(Boolean)
      .join(' ');
    return [p.what, { syscall: call(r), path: p.source, target: p.target, flags: flags || undefined }];
  },
  'loopback-up': () => ['bring up lo in the new network namespace', { syscall: 'ioctl' }],
  'pivot-root': (_, c) => [`pivot-root ${c.rootfs}`, { syscall: 'pivot_root', path: c.rootfs }],
  'root-readonly': (r) => ['make the root read-only (root.readonly)', { syscall: call(r), path: '/' }],
  chdir: (_, c) => [`chdir ${c.cwd} (process.cwd)`, { syscall: 'chdir', path: c.cwd }],
  rlimit: (r, c) => [`set ${c.rlimitTypes[r.index] ?? 'rlimit'}`, { syscall: 'prlimit64' }],
  'drop-bounding-caps': (r) => [`drop ${capName(r.index)} from the bounding set`, { syscall: 'prctl' }],
  setgroups: (_, c) => [`setgroups [${(c.groups ?? []).join(', ')}]`, { syscall: 'setgroups' }],
  setgid: (_, c) => [`setresgid ${c.gid}`, { syscall: 'setresgid' }],
  setuid: (_, c) => [`setresuid ${c.uid}`, { syscall: 'setresuid' }],
  capset: () => ['set the capability sets (process.capabilities)', { syscall: 'capset' }],
  'ambient-caps': (r) => [`raise ambient ${capName(r.index)}`, { syscall: 'prctl' }],
  'no-new-privs': () => ['set no_new_privs', { syscall: 'prctl' }],
  'parent-death-signal': (r) => [
    `arm the parent-death signal${r.index === 1 ? ' again after the uid change' : ''}`,
    { syscall: 'prctl' },
  ],
  'close-fds': () => ['mark fds above 2 close-on-exec', { syscall: 'close_range' }],
  'exec-init': () => ['exec the init (nodularity-init, from its memfd)', { syscall: 'execveat' }],
  'init-fork': () => ['fork the payload in the init', { syscall: 'fork' }],
  exec: (_, c) => [`exec ${c.execPath}`, { syscall: 'execve', path: c.execPath }],
  'id-map-helper': (r, c) => {
    const args = r.index === 0 ? c.uidHelperArgs : c.gidHelperArgs;
    return [args?.join(' ') ?? 'id map helper', { detail: r.helperOutput?.trim() || undefined }];
  },
  'overlay-root': (r, c) => {
    const upper = c.overlayDir && !c.overlayDirReadonly ? `${c.overlayDir}/upper` : 'a tmpfs';
    const prep = r.index > 0 ? c.overlayPrep?.[r.index - 1] : undefined;
    if (prep !== undefined) {
      const at = c.overlayDir && !c.overlayDirReadonly ? `${c.overlayDir}/upper${prep.replace(/\/$/, '')}` : prep;
      return [
        `make the mount point ${prep} in the overlay's upper layer at ${at} (a symlink or a file of another kind there is refused)`,
        { syscall: call(r), path: at },
      ];
    }
    const lower = c.overlayDir && c.overlayDirReadonly ? `${c.overlayDir}/upper over the image` : 'the image';
    return [
      `overlay on ${c.rootfs} (lower: ${lower}, upper: ${upper})`,
      { syscall: call(r), path: c.overlayDir ?? c.rootfs },
    ];
  },
  'session-keyring': () => ['join a new session keyring', { syscall: 'keyctl' }],
  'root-fd': (_, c) => [`open the root ${c.rootfs}`, { syscall: 'openat2', path: c.rootfs }],
  setsid: () => ['start a new session', { syscall: 'setsid' }],
  terminal: () => [
    'open a pty in /dev/pts for process.terminal (a devpts mount at /dev/pts is needed)',
    { path: '/dev/pts/ptmx' },
  ],
  'setup-ids': (r) => [
    `become the namespace's root for the setup (${r.index === 0 ? 'gid' : 'uid'} 0)`,
    { syscall: r.index === 0 ? 'setresgid' : 'setresuid' },
  ],
  'root-nodev': (r, c) => [`make the root ${c.rootfs} nodev, recursively`, { syscall: call(r), path: c.rootfs }],
  seccomp: (r, c) => [
    `load the seccomp filter (linux.seccomp, ${c.seccompInstructions} BPF instructions${r.index === 0 ? ', before the credentials: no_new_privs is off' : ''})`,
    { syscall: 'seccomp' },
  ],
  'join-namespaces': (r, c) => {
    const j = c.joins?.[r.index];
    if (r.index < 100)
      return [
        j
          ? `join the ${j.ns} namespace ${j.path}${j.index >= 0 ? ` (linux.namespaces[${j.index}].path)` : ''}`
          : `join namespace ${r.index}`,
        { syscall: 'setns', path: j?.path },
      ];
    const what: Record<number, [string, string]> = {
      100: ['make the new user namespace after the joins', 'unshare'],
      101: [`make the new namespaces after the joins (${cloneFlagNames(c.cloneFlags)})`, 'unshare'],
      102: ['fork into the pid/time namespaces', 'clone'],
      103: ['open a pidfd of the process forked into the namespaces', 'pidfd_open'],
      104: ['write the time namespace offsets (linux.timeOffsets)', 'write'],
    };
    const [w, syscall] = what[r.index] ?? [`join namespaces (${r.index})`, 'setns'];
    return [w, { syscall, path: r.index === 104 ? '/proc/self/timens_offsets' : undefined }];
  },
  sysctl: (r, c) => {
    const e = c.sysctls?.[r.index];
    return [
      e ? `set sysctl ${e.key}=${JSON.stringify(e.value)} (linux.sysctl)` : 'set a sysctl',
      { syscall: 'write', path: e?.path },
    ];
  },
  'process-attrs': (r) =>
    r.index === 0
      ? [
          'set process.oomScoreAdj (lowering it needs CAP_SYS_RESOURCE)',
          { syscall: 'write', path: '/proc/self/oom_score_adj' },
        ]
      : ['set linux.personality', { syscall: 'personality' }],
  hooks: () => ['wait before pivot_root for the hooks (beforePivot)', { syscall: 'read' }],
  'start-gate': () => ['wait on the start gate (startGate) for the byte that starts the payload', { syscall: 'read' }],
  protocol: (r) => [
    `launch protocol: ${PROTOCOL_FAULTS[r.index] ?? `fault ${r.index}`}`,
    { syscall: r.index === 0 ? 'read' : undefined },
  ],
};

/** The failure record in the plan's words: a ContainerError naming step, call, paths and flags. */
export function describeFailure(rec: FailureRecord, ctx: DescribeContext): ContainerError {
  const step = STEP_NAMES[rec.step];
  if (step === undefined)
    return new ContainerError(`unknown step ${rec.step}`, { step: `step ${rec.step}`, errno: rec.errno });
  const [what, fields] = ROWS[step](rec, ctx);
  return new ContainerError(what, { ...fields, step, errno: rec.errno });
}
