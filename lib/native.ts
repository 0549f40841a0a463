// Loading the addon and the init binary that comes with it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerError } from './errors.js';
import type { LaunchPlan, PlanOverride } from './plan/plan.js';
import type { StdioOption } from './container.js';

export interface SpawnFailure {
  step: number;
  errno: number;
  index: number;
  detail: number;
  helperOutput?: string;
}

export interface SpawnSuccess {
  pid: number;
  /** How long the clone call blocked the worker thread, in µs (the vfork window). */
  cloneMicros: number;
  /** process.terminal: the pty master (ours to close). */
  terminalFd?: number;
  /** Paused before pivot_root for hooks: call ContainerHandle.resume. */
  paused?: boolean;
  /** A timed launch (launch.timing): ns at each point of enum launch_time (native/spawn.h). */
  times?: number[];
  /** A timed vfork-style launch: [enum child_step, ns] after each row of the child's step table, [-1, start] first. */
  stepTimes?: [number, number][];
}

/** The caller's fds for one launch (borrowed: the addon never closes them); see SpawnOptions. */
export interface LaunchFds {
  startGate?: number;
  consoleSocket?: number;
  preserveFds?: number;
  /** O_PATH fd of the rootfs pinned by prepare(): the child refuses any other directory at the rootfs path. */
  rootfsFd?: number;
  /** Time the launch's phases (SpawnSuccess.times, stepTimes; onExit's seenNs). */
  timing?: boolean;
  /** With a compiled plan: this launch's changes to it. */
  override?: PlanOverride;
}

export interface NativeRusage {
  userCPUTime: number;
  systemCPUTime: number;
  /** KiB: the payload's peak from the init's status record, or -1 when there is none (exit_watch.h). */
  maxRSS: number;
  minorPageFault: number;
  majorPageFault: number;
  fsRead: number;
  fsWrite: number;
  voluntaryContextSwitches: number;
  involuntaryContextSwitches: number;
}

export interface ContainerHandle {
  /** Our ends of the stdio pipes (-1 where not piped); JS owns and closes them. */
  readonly stdio: [number, number, number];
  /** 0, or -errno (e.g. -ESRCH once the container is gone). */
  kill(signal: number): number;
  ref(): void;
  unref(): void;
  /** After a paused launch: go on (true) or give up; onSpawn is called again as spawn's. */
  resume(ok: boolean, onSpawn: (err: SpawnFailure | null, res?: SpawnSuccess) => void): void;
}

/** The addon's shape (native/addon.cc). */
export interface NativeBinding {
  /** Load the init binary; failures of the addon before clone are thrown as the given ContainerError class. */
  init(initPath: string, classes: { ContainerError: typeof ContainerError }): void;
  /** openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) of path under root, O_RDONLY|O_NONBLOCK|O_NOCTTY; throws ContainerError (step open-in-root; EINVAL: not a regular file). */
  openInRoot(root: string, path: string): number;
  /** TIOCSWINSZ on a pty master: 0 or -errno. */
  setWindowSize(fd: number, rows: number, cols: number): number;
  /** cfmakeraw on a terminal; the previous termios, or -errno. */
  makeRaw(fd: number): Buffer | number;
  restoreTerminal(fd: number, saved: Buffer): number;
  /** CLONE_NEW* of a namespace file (NS_GET_NSTYPE), or -errno (-ENOTTY: not a namespace). */
  nsType(path: string): number;
  /** A connected AF_UNIX stream socket (CLOEXEC, blocking): the fd, or -errno. */
  connectUnixSocket(path: string): number;
  /** pipe2(O_CLOEXEC): [read, write], or -errno. */
  makePipe(): [number, number] | number;
  /** libseccomp: a checked profile -> struct sock_filter[] bytes (native/seccomp.cc); throws with `pointer`. */
  compileSeccomp(profile: {
    defaultAction: string;
    defaultErrnoRet?: number;
    architectures: string[];
    rules: {
      name: string;
      action: string;
      errnoRet?: number;
      pointer: string;
      args: { index: number; op: string; value: bigint; valueTwo: bigint }[];
    }[];
  }): { filter: Buffer; unknown: string[] };
  /**
   * Load a BPF_PROG_TYPE_CGROUP_DEVICE program (struct bpf_insn[] bytes, see
   * lib/cgroups/bpf-devices.ts) and attach it to the cgroup v2 directory with
   * BPF_F_ALLOW_MULTI (native/bpf_devices.cc). errno 0 on success; else the
   * step that failed and, for a load, the verifier's log.
   */
  attachDeviceProgram(cgroupDir: string, insns: Buffer): { errno: number; step?: string; log?: string };
  /** The SECCOMP_FILTER_FLAG_* and actions this kernel offers, and libseccomp's version. */
  seccompProbe(): { flags: number; actions: string[]; libseccomp: string };
  /** The plan converted to C once, for many launches (a prepared container's); throws TypeError naming a field. */
  compilePlan(plan: LaunchPlan): object;
  spawn(
    plan: LaunchPlan | object,
    stdio: StdioOption[],
    onSpawn: (err: SpawnFailure | null, res?: SpawnSuccess) => void,
    onExit: (exitCode: number, signal: number | null, rusage: NativeRusage, seenNs?: number) => void,
    launch?: LaunchFds,
  ): ContainerHandle;
}

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
let binding: NativeBinding | undefined;

/** Build directories searched for the addon, Release before Debug. */
function candidates(): string[] {
  return [join(root, 'build', 'Release'), join(root, 'build', 'Debug')];
}

/** The addon, loaded once, with its init binary registered. */
export function loadBinding(): NativeBinding {
  if (binding) return binding;
  const tried: string[] = [];
  for (const dir of candidates()) {
    const addon = join(dir, 'nodularity.node');
    const init = join(dir, 'nodularity-init');
    tried.push(addon);
    if (!existsSync(addon)) continue;
    if (!existsSync(init))
      throw new Error(`found ${addon} but not its init binary ${init}: rebuild with \`npx node-gyp rebuild\``);
    const b = createRequire(import.meta.url)(addon) as NativeBinding;
    b.init(init, { ContainerError });
    binding = b;
    return b;
  }
  throw new Error(
    `the nodularity addon is not built (tried ${tried.join(', ')}): run \`npm install\` or \`npx node-gyp rebuild\``,
  );
}

/** Directory holding the built native artefacts (addon, init, test payload). */
export function buildDir(): string {
  for (const dir of candidates()) if (existsSync(join(dir, 'nodularity.node'))) return dir;
  return candidates()[0];
}
