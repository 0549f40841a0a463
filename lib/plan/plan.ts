// Spec -> LaunchPlan, in stages that mirror the child's steps: root and
// namespaces (root.ts), id maps (idmaps.ts), mount options and mounts
// (mount-options.ts, mounts.ts), the process (process.ts), the overlay root
// (root.ts), and describe (describe.ts), which turns a failure record back
// into the plan's words. Every path is resolved inside the rootfs, every
// mount is an op, every id map and exec path decided, every string ready:
// the addon gets plain data and decides nothing (docs/architecture.md).
import { resolve as resolvePath } from 'node:path';
import { validateSpec } from '../oci/validate.js';
import type { Spec } from '../oci/spec.js';
import { cloneFlagNames, describeFailure, type DescribeContext } from './describe.js';
import { planIdMaps } from './idmaps.js';
import { planMounts, type MountContext, type PlanBuilder } from './mounts.js';
import { findExecutable, planProcessSecurity } from './process.js';
import { DEFAULT_PATH } from '../oci/defaults.js';
import { planOverlay, planRoot } from './root.js';
import type { LaunchPlan, PlanOptions, PreparedLaunch } from './types.js';
import { seccompForPlan } from '../seccomp/index.js';
import { loadBinding } from '../native.js';
import { SpecError } from '../errors.js';
import { IDMAP } from './types.js';
import { planProcessAttrs, planSysctls, specWarnings } from './attrs.js';

/**
 * linux.timeOffsets for a new time namespace, in /proc/self/timens_offsets'
 * format ("monotonic SECS NANOSECS" per clock). Only monotonic and boottime
 * can be offset (the kernel's time namespace has no other clocks).
 */
export function planTimeOffsets(spec: Spec, newTime: boolean): string | undefined {
  const offs = spec.linux?.timeOffsets;
  if (offs === undefined) return undefined;
  if (!newTime)
    throw new SpecError('/linux/timeOffsets', 'needs a new time namespace ({"type": "time"} in linux.namespaces)');
  const lines: string[] = [];
  for (const [clock, o] of Object.entries(offs)) {
    const ptr = `/linux/timeOffsets/${clock}`;
    if (clock !== 'monotonic' && clock !== 'boottime')
      throw new SpecError(ptr, 'only the monotonic and boottime clocks can be offset');
    const secs = (o as { secs?: unknown }).secs ?? 0;
    const nanosecs = (o as { nanosecs?: unknown }).nanosecs ?? 0;
    if (typeof secs !== 'number' || !Number.isSafeInteger(secs))
      throw new SpecError(`${ptr}/secs`, 'must be an integer');
    if (typeof nanosecs !== 'number' || !Number.isInteger(nanosecs) || nanosecs < 0 || nanosecs > 999_999_999)
      throw new SpecError(`${ptr}/nanosecs`, 'must be an integer from 0 to 999999999');
    lines.push(`${clock} ${secs} ${nanosecs}\n`);
  }
  return lines.length ? lines.join('') : undefined;
}

export * from './types.js';
export { cloneFlagNames };

const SIGKILL = 9;

/**
 * What a launch plan takes from the spec and options alone, before the
 * mounts and the process: validation, root and namespaces, id maps,
 * sysctls, process attributes, rlimits and capabilities, the seccomp
 * filter. A prepared container (lib/prepared.ts) computes it once.
 */
export interface LaunchBase {
  bundleDir: string;
  root: ReturnType<typeof planRoot>;
  ids: ReturnType<typeof planIdMaps>;
  joinMode: boolean;
  timeOffsets: string | undefined;
  sysctls: ReturnType<typeof planSysctls>;
  attrs: ReturnType<typeof planProcessAttrs>;
  security: ReturnType<typeof planProcessSecurity>;
  init: boolean;
  seccomp: ReturnType<typeof seccompForPlan>;
  mountContext: MountContext;
}

/** The spec-wide stages of prepareLaunch. Throws SpecError naming the field. */
export function planLaunchBase(spec: Spec, options: PlanOptions = {}): LaunchBase {
  validateSpec(spec);
  const bundleDir = resolvePath(options.bundleDir ?? process.cwd());
  const root = planRoot(spec, bundleDir, (p) => loadBinding().nsType(p));
  const userJoined = root.joins.some((j) => j.ns === 'user');
  const ids = planIdMaps(spec, root.created.has('user'), process.geteuid!(), process.getegid!(), undefined, userJoined);
  // Join mode: namespaces joined by path, or a time namespace (its offsets
  // are written between unshare and the first process in it): the child
  // joins, then unshares what is new, then forks into the pid and time
  // namespaces (docs/architecture.md, native/plan.h).
  const joinMode = root.joins.length > 0 || root.created.has('time');
  if (joinMode && (ids.idMode === IDMAP.PARENT || ids.idMode === IDMAP.HELPER))
    throw new SpecError(
      '/linux/uidMappings',
      'id map ranges (written by the parent or newuidmap) cannot be combined with namespaces joined by path or a time namespace yet',
    );
  const timeOffsets = planTimeOffsets(spec, root.created.has('time'));
  specWarnings(spec);
  const sysctls = planSysctls(spec, root.namespaces);
  const attrs = planProcessAttrs(spec);
  const security = planProcessSecurity(spec);
  const init = options.init ?? root.namespaces.has('pid');
  return {
    bundleDir,
    root,
    ids,
    joinMode,
    timeOffsets,
    sysctls,
    attrs,
    security,
    init,
    seccomp: seccompForPlan(spec.linux?.seccomp, init),
    mountContext: {
      mapsGid5: ids.mapsGid5,
      bundleDir,
      allowHostProc: options.allowHostProc === true,
      // mknod works for root outside any user namespace only.
      mknodDevices: process.geteuid!() === 0 && !root.namespaces.has('user'),
    },
  };
}

/** The mount stage of a launch: the ops over the image, the canonical cwd, the overlay root if any. */
export interface LaunchMounts {
  b: PlanBuilder;
  cwd: string;
  overlay: ReturnType<typeof planOverlay>;
}

/** Plan spec.mounts, the devices, cwd, masked and read-only paths (and the overlay root they may need). */
export function planLaunchMounts(base: LaunchBase, spec: Spec, options: PlanOptions = {}): LaunchMounts {
  const { b, cwd } = planMounts(spec, base.root.rootfs, base.mountContext);
  return { b, cwd, overlay: planOverlay(base.root.rootfs, options, b.imageCreates) };
}

/**
 * The launch plan from its stages: `spec` supplies the process (args, env,
 * user, terminal) and the hostname, `execPath` the executable found for
 * spec.process.args[0] (findExecutable over `mounts`).
 */
export function planLaunchFinish(
  base: LaunchBase,
  mounts: LaunchMounts,
  spec: Spec,
  execPath: string,
  options: PlanOptions = {},
): PreparedLaunch {
  const proc = spec.process!;
  const { root, ids, joinMode, sysctls, security } = base;
  const { b, cwd, overlay } = mounts;
  const plan: LaunchPlan = {
    cloneFlags: joinMode ? 0 : root.cloneFlags,
    ...(joinMode
      ? {
          joins: root.joins.map((j) => ({ type: j.type, path: j.path })),
          unshareFlags: root.cloneFlags,
          forkAfterJoin: root.namespaces.has('pid') || root.namespaces.has('time'),
          timeOffsets: base.timeOffsets,
        }
      : {}),
    idMode: ids.idMode,
    uidMap: ids.uidMap,
    gidMap: ids.gidMap,
    setgroupsDeny: ids.setgroupsDeny,
    setupUid: ids.setupUid,
    setupGid: ids.setupGid,
    uidHelperArgs: ids.uidHelperArgs,
    gidHelperArgs: ids.gidHelperArgs,
    hostname: spec.hostname,
    domainname: spec.domainname,
    rootPropagation: root.rootPropagation,
    rootPropagationAfter: root.rootPropagationAfter,
    rootfs: root.rootfs,
    rootReadonly: spec.root!.readonly === true,
    ...overlay,
    ops: b.ops,
    loopback: root.created.has('network'),
    ...(sysctls.length ? { sysctls: sysctls.map(({ path, value }) => ({ path, value })) } : {}),
    ...base.attrs,
    cwd,
    rlimits: security.rlimits,
    setIds: true,
    uid: proc.user.uid,
    gid: proc.user.gid,
    groups: ids.groups,
    capLast: security.capLast,
    capBounding: security.capBounding,
    capEffective: security.capEffective,
    capPermitted: security.capPermitted,
    capInheritable: security.capInheritable,
    capAmbient: security.capAmbient,
    noNewPrivileges: proc.noNewPrivileges !== false,
    pdeathsig: options.detached ? 0 : SIGKILL,
    rootNodev: options.allowImageDevices !== true,
    terminal: proc.terminal === true,
    consoleRows: proc.consoleSize?.height,
    consoleCols: proc.consoleSize?.width,
    execPath,
    args: proc.args,
    env: proc.env ?? [`PATH=${DEFAULT_PATH}`],
    init: base.init,
    ...base.seccomp,
  };

  const described: DescribeContext = {
    ops: b.entries,
    rootfs: root.rootfs,
    overlay: overlay.overlayData !== undefined,
    cwd,
    execPath,
    overlayPrep: overlay.overlayPrep?.map((p) => p.slice(overlay.overlayUpper!.length)),
    overlayDir: overlay.overlayPersist,
    overlayDirReadonly: overlay.overlayPersistReadonly,
    cloneFlags: root.cloneFlags,
    joins: root.joins,
    sysctls,
    hostname: spec.hostname,
    domainname: spec.domainname,
    rootPropagation: root.propagation,
    uidMap: ids.uidMap,
    gidMap: ids.gidMap,
    uidHelperArgs: ids.uidHelperArgs,
    gidHelperArgs: ids.gidHelperArgs,
    rlimitTypes: (proc.rlimits ?? []).map((r) => r.type),
    seccompInstructions: (plan.seccompFilter?.length ?? 0) / 8,
    uid: proc.user.uid,
    gid: proc.user.gid,
    groups: ids.groups,
  };
  return { plan, describeFailure: (rec) => describeFailure(rec, described) };
}

/** Check a spec and compile it into a launch plan. Throws SpecError naming the field. */
export function prepareLaunch(spec: Spec, options: PlanOptions = {}): PreparedLaunch {
  const base = planLaunchBase(spec, options);
  const mounts = planLaunchMounts(base, spec, options);
  const proc = spec.process!;
  const execPath = findExecutable(mounts.b, proc.args[0], proc.env ?? [`PATH=${DEFAULT_PATH}`], mounts.cwd);
  return planLaunchFinish(base, mounts, spec, execPath, options);
}
