// The plan's data types and the numbers it shares with native/plan.h
// (test/unit/protocol.test.ts checks them against the header).
import type { ContainerError } from '../errors.js';
import type { FailureRecord } from './describe.js';

export const OP = { MOUNT: 0, BIND: 1, MKDIR: 2, MKFILE: 3, SYMLINK: 4, MASK: 5, READONLY: 6, MKNOD: 7 } as const;
export const IDMAP = { NONE: 0, SELF: 1, PARENT: 2, HELPER: 3 } as const;
/** How the child finds a target (native/plan.h enum resolve_mode). */
export const RESOLVE = { EXACT: 0, FOLLOW: 1 } as const;

export interface MountOp {
  kind: number;
  source?: string;
  target: string;
  fstype?: string;
  data?: string;
  flags?: number;
  attrSet?: number;
  attrClr?: number;
  propagation?: number;
  recursive?: boolean;
  mode?: number;
  fallback?: string;
  rattrSet?: number;
  rattrClr?: number;
  /** RESOLVE.EXACT (default: the canonical path, no symlinks) or RESOLVE.FOLLOW (masks, read-only paths). */
  resolve?: number;
  /** A target that does not exist skips the op instead of failing it (masks, read-only paths). */
  skipMissing?: boolean;
  /** Bit N: mount(2) failing with errno N binds `fallback` instead. */
  fallbackErrnos?: number;
  /** OP.MKNOD: makedev(major, minor) (mode holds S_IFCHR/S_IFBLK), owner. */
  rdev?: number;
  uid?: number;
  gid?: number;
}

/** What the addon receives: plain data only (see native/plan.cc). */
export interface LaunchPlan {
  cloneFlags: number;
  idMode: number;
  uidMap?: string;
  gidMap?: string;
  setgroupsDeny?: boolean;
  setupUid?: number;
  setupGid?: number;
  uidHelperArgs?: string[];
  gidHelperArgs?: string[];
  hostname?: string;
  domainname?: string;
  rootPropagation: number;
  /** linux.rootfsPropagation applied to the new "/" after pivot_root (MS_REC for the r-forms); absent: none. */
  rootPropagationAfter?: number;
  /** Absent for an exec into a running container (PlanOptions.joinPid): no root steps at all. */
  rootfs?: string;
  /** Join mode (native/plan.h): namespaces to setns into, user first; cloneFlags is then 0. */
  joins?: { type: number; path: string }[];
  /** Join mode: the namespaces the child unshares after the joins. */
  unshareFlags?: number;
  /** Join mode: fork (CLONE_PARENT) after the joins, into the pid/time namespaces. */
  forkAfterJoin?: boolean;
  /** An exec: the process whose namespaces are joined (checked alive after its ns files are opened). */
  joinPid?: number;
  /** linux.timeOffsets as /proc/self/timens_offsets lines. */
  timeOffsets?: string;
  /** linux.sysctl as /proc/sys paths (namespaced keys only). */
  sysctls?: { path: string; value: string }[];
  oomScoreAdj?: number;
  /** linux.personality: PER_LINUX (0) or PER_LINUX32 (8). */
  personality?: number;
  /** process.user.umask. */
  umask?: number;
  /** Pause before pivot_root for the caller's hooks (SpawnOptions.beforePivot). */
  hooksPause?: boolean;
  rootReadonly: boolean;
  /** Overlay root (see native/plan.h): set together, or all undefined. */
  overlayData?: string;
  overlayTmpfsData?: string;
  overlayLower?: string;
  overlayUpper?: string;
  overlayWork?: string;
  overlayPrep?: string[];
  /** A persistent overlay directory (host path), bound at overlayPersistAt in the tmpfs. */
  overlayPersist?: string;
  overlayPersistAt?: string;
  overlayPersistReadonly?: boolean;
  ops: MountOp[];
  loopback: boolean;
  cwd: string;
  rlimits: { resource: number; soft: number; hard: number }[];
  setIds: boolean;
  uid: number;
  gid: number;
  groups?: number[];
  capLast: number;
  capBounding: bigint;
  capEffective: bigint;
  capPermitted: bigint;
  capInheritable: bigint;
  capAmbient: bigint;
  noNewPrivileges: boolean;
  pdeathsig: number;
  rootNodev: boolean;
  /** process.terminal: a pty in the container's devpts; its master comes back as terminalFd. */
  terminal: boolean;
  consoleRows?: number;
  consoleCols?: number;
  execPath: string;
  args: string[];
  env: string[];
  init: boolean;
  /** linux.seccomp compiled (lib/seccomp): struct sock_filter[] bytes and SECCOMP_FILTER_FLAG_*. */
  seccompFilter?: Buffer;
  seccompFlags?: number;
}

export interface PlanOptions {
  /** Directory that a relative root.path or bind source is relative to (the bundle). */
  bundleDir?: string;
  /** Run a tiny init as PID 1 (default: when there is a new pid namespace). */
  init?: boolean;
  /** Do not kill the container when the Node process dies. */
  detached?: boolean;
  /**
   * Run the image as the read-only lower layer of an overlay whose upper
   * layer is a tmpfs, so nothing is ever written into the image:
   * 'never' (default, as runc/crun: missing mount points are created in the
   * rootfs), 'auto' (only when a mount point or the working directory is
   * missing in the image, as Apptainer's underlay/overlay for read-only
   * images), 'always' (also for a writable root, --writable-tmpfs).
   */
  rootOverlay?: 'never' | 'auto' | 'always';
  /** Size of that tmpfs (tmpfs `size=`), default 64m as Apptainer's sessiondir max size. */
  overlaySize?: string;
  /**
   * A persistent overlay directory, as Apptainer's --overlay DIR[:ro]: the
   * image is the lower layer and DIR/upper, DIR/work (made when missing) the
   * upper and work layers, so what the payload writes stays in DIR/upper;
   * readonly: DIR/upper is an extra read-only layer above the image. DIR,
   * upper and work must be directories of the caller (or root), not symlinks.
   */
  overlayDir?: { dir: string; readonly?: boolean };
  /**
   * Where a fresh proc cannot be mounted (nested under a container runtime
   * that overmounts parts of /proc), bind the host's /proc instead. Off by
   * default, as bubblewrap: the host's /proc shows every host process and its
   * command line, whatever the PID namespace.
   */
  allowHostProc?: boolean;
  /** Keep the image's device nodes usable (default: the root is mounted nodev, recursively). */
  allowImageDevices?: boolean;
  /**
   * Exec into a running container (runc exec): join every namespace of this
   * process (the container's init) that differs from ours, set up no mounts
   * or root (the mount namespace's root is the container's), and apply only
   * spec.process: user, groups, capabilities, no_new_privs, seccomp
   * (linux.seccomp), rlimits, cwd, env, terminal. The payload is run by an
   * init of its own in the container's pid namespace.
   */
  joinPid?: number;
  /**
   * With joinPid: only these of the target's namespaces (runtime-spec names:
   * user, mount, pid, network, ipc, uts, cgroup, time); default all. Without
   * 'mount' the process stays in our mount namespace (root, cwd and the
   * executable are the host's), as a createContainer hook runs.
   */
  joinNamespaces?: string[];
}

/** A plan plus what is needed to explain a failure in the plan's own words. */
export interface PreparedLaunch {
  plan: LaunchPlan;
  describeFailure(rec: FailureRecord): ContainerError;
  /**
   * A prepared container's launch: `plan` converted to C once (the addon's
   * compilePlan), and what this launch changes in it; the addon then
   * converts only those. `plan` is still the whole plan, for JS to read.
   */
  compiled?: { plan: object; override?: PlanOverride };
}

/** What one launch of a compiled plan changes (each field replaces the compiled one). */
export interface PlanOverride {
  execPath?: string;
  args?: string[];
  env?: string[];
  hostname?: string;
}
