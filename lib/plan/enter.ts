// An exec into a running container (PlanOptions.joinPid, runc exec): no root,
// no mounts, no id maps. The plan joins every namespace of the target process
// that differs from ours (user first, the mount namespace last: joining it
// sets root and cwd to the container's root), forks into its pid namespace,
// and applies only spec.process: user and groups, capabilities,
// no_new_privs, seccomp, rlimits, cwd, env, terminal.
import { closeSync, fstatSync, readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { ContainerError, SpecError } from '../errors.js';
import { loadBinding } from '../native.js';
import { DEFAULT_PATH } from '../oci/defaults.js';
import type { Spec } from '../oci/spec.js';
import { validateSpec } from '../oci/validate.js';
import { seccompForPlan } from '../seccomp/index.js';
import { describeFailure, type DescribeContext } from './describe.js';
import { CLONE } from './flags.js';
import { planProcessSecurity } from './process.js';
import { planProcessAttrs, specWarnings } from './attrs.js';
import { IDMAP, type LaunchPlan, type PlanOptions, type PreparedLaunch } from './types.js';

/** /proc/PID/ns names, in join order, with the spec's names and CLONE_NEW* flags. */
const NS_ORDER: [file: string, ns: string, flag: number][] = [
  ['user', 'user', CLONE.NEWUSER],
  ['ipc', 'ipc', CLONE.NEWIPC],
  ['uts', 'uts', CLONE.NEWUTS],
  ['net', 'network', CLONE.NEWNET],
  ['pid', 'pid', CLONE.NEWPID],
  ['cgroup', 'cgroup', CLONE.NEWCGROUP],
  ['time', 'time', CLONE.NEWTIME],
  ['mnt', 'mount', CLONE.NEWNS],
];

const SIGKILL = 9;

function nsId(path: string): string | null {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null; // a kernel without this namespace type
    throw e;
  }
}

/** The namespaces of pid that are not ours, in join order. */
export function targetNamespaces(pid: number): { ns: string; path: string; type: number; index: number }[] {
  const out: { ns: string; path: string; type: number; index: number }[] = [];
  for (const [file, ns, type] of NS_ORDER) {
    const path = `/proc/${pid}/ns/${file}`;
    let theirs: string | null;
    try {
      theirs = nsId(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw SpecError.inOption('joinPid', `cannot see the namespaces of process ${pid} (${path}: ${code})`);
    }
    if (theirs === null) {
      if (!statSafe(`/proc/${pid}`)) throw SpecError.inOption('joinPid', `process ${pid} does not exist`);
      continue;
    }
    if (theirs !== nsId(`/proc/self/ns/${file}`)) out.push({ ns, path, type, index: -1 });
  }
  return out;
}

function statSafe(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The executable as the container sees it now: resolved inside the target's
 * root (/proc/PID/root, with openat2 RESOLVE_IN_ROOT: no symlink or `..` of
 * the container leads out), PATH searched as execvp would.
 */
export function findInContainer(pid: number | 'self', arg0: string, env: string[], cwd: string): string {
  const root = `/proc/${pid}/root`;
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  const candidates = arg0.includes('/')
    ? [posix.resolve(cwd, arg0)]
    : pathVar
        .split(':')
        .filter((d) => d.startsWith('/'))
        .map((d) => posix.join(d, arg0));
  let notExecutable: string | undefined;
  for (const c of candidates) {
    let fd: number;
    try {
      fd = loadBinding().openInRoot(root, c);
    } catch (e) {
      // Exists but not readable by us: let the exec decide.
      if (e instanceof ContainerError && e.code === 'EACCES') return c;
      continue;
    }
    const mode = fstatSync(fd).mode;
    closeSync(fd);
    if ((mode & 0o111) !== 0) return c;
    notExecutable ??= c;
  }
  if (notExecutable !== undefined)
    throw new SpecError('/process/args/0', `${notExecutable} in the container is not executable (permission denied)`, {
      code: 'EACCES',
    });
  throw new SpecError(
    '/process/args/0',
    `executable ${JSON.stringify(arg0)} not found in the container${arg0.includes('/') ? '' : ` (searched PATH=${pathVar})`}`,
    { code: 'ENOENT' },
  );
}

/** Plan an exec of spec.process into the running container whose process is options.joinPid. */
export function prepareEnter(spec: Spec, options: PlanOptions): PreparedLaunch {
  validateSpec(spec);
  const pid = options.joinPid!;
  if (!Number.isInteger(pid) || pid <= 0) throw SpecError.inOption('joinPid', `must be a pid, not ${pid}`);
  if (options.init === false)
    throw SpecError.inOption('init', "an exec needs the init: it forks the payload into the container's pid namespace");
  const proc = spec.process!;
  const only = options.joinNamespaces;
  if (only !== undefined) {
    const known = NS_ORDER.map(([, ns]) => ns);
    for (const n of only)
      if (!known.includes(n)) throw SpecError.inOption('joinNamespaces', `unknown namespace ${JSON.stringify(n)}`);
  }
  const joins = targetNamespaces(pid).filter((j) => only === undefined || only.includes(j.ns));
  const inMount = only === undefined || only.includes('mount');
  const userJoined = joins.some((j) => j.ns === 'user');
  if (!userJoined && process.geteuid!() !== 0)
    throw SpecError.inOption('joinPid', `process ${pid} is in our own user namespace: only root can enter it`);
  // A namespace whose setgroups is denied (a single-ID map) cannot take supplementary groups.
  let groups: number[] | undefined = proc.user.additionalGids ?? [];
  if (userJoined) {
    let setgroups = 'allow';
    try {
      setgroups = readFileSync(`/proc/${pid}/setgroups`, 'utf8').trim();
    } catch {
      /* no such file: old kernel, allowed */
    }
    if (setgroups === 'deny') {
      if (groups.length)
        throw new SpecError(
          '/process/user/additionalGids',
          'the container denies setgroups (its user namespace maps a single id): no supplementary groups',
        );
      groups = undefined;
    }
  }
  const env = proc.env ?? [`PATH=${DEFAULT_PATH}`];
  // The executable where the process will look for it: the container's root, or ours.
  const execPath = findInContainer(inMount ? pid : 'self', proc.args[0], env, proc.cwd);
  const sec = planProcessSecurity(spec);
  specWarnings(spec, true);
  const attrs = planProcessAttrs(spec);
  const plan: LaunchPlan = {
    cloneFlags: 0,
    idMode: IDMAP.NONE,
    joins: joins.map((j) => ({ type: j.type, path: j.path })),
    unshareFlags: 0,
    forkAfterJoin: joins.some((j) => j.ns === 'pid' || j.ns === 'time'),
    joinPid: pid,
    rootPropagation: 0,
    rootReadonly: false,
    ops: [],
    loopback: false,
    cwd: proc.cwd,
    rlimits: sec.rlimits,
    setIds: true,
    uid: proc.user.uid,
    gid: proc.user.gid,
    groups,
    capLast: sec.capLast,
    capBounding: sec.capBounding,
    capEffective: sec.capEffective,
    capPermitted: sec.capPermitted,
    capInheritable: sec.capInheritable,
    capAmbient: sec.capAmbient,
    noNewPrivileges: proc.noNewPrivileges !== false,
    pdeathsig: options.detached ? 0 : SIGKILL,
    rootNodev: false,
    terminal: proc.terminal === true,
    consoleRows: proc.consoleSize?.height,
    consoleCols: proc.consoleSize?.width,
    execPath,
    args: proc.args,
    env,
    init: true,
    oomScoreAdj: attrs.oomScoreAdj,
    umask: attrs.umask,
    ...seccompForPlan(spec.linux?.seccomp, true),
  };
  const described: DescribeContext = {
    ops: [],
    rootfs: `/proc/${pid}/root`,
    overlay: false,
    cwd: proc.cwd,
    execPath,
    cloneFlags: 0,
    joins,
    rootPropagation: 'unchanged',
    rlimitTypes: (proc.rlimits ?? []).map((r) => r.type),
    seccompInstructions: (plan.seccompFilter?.length ?? 0) / 8,
    uid: proc.user.uid,
    gid: proc.user.gid,
    groups,
  };
  return { plan, describeFailure: (rec) => describeFailure(rec, described) };
}
