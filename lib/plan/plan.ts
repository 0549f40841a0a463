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
import { planMounts } from './mounts.js';
import { planProcess } from './process.js';
import { planOverlay, planRoot } from './root.js';
import type { LaunchPlan, PlanOptions, PreparedLaunch } from './types.js';
import { seccompForPlan } from '../seccomp/index.js';

export * from './types.js';
export { cloneFlagNames };

const SIGKILL = 9;

/** Check a spec and compile it into a launch plan. Throws SpecError naming the field. */
export function prepareLaunch(spec: Spec, options: PlanOptions = {}): PreparedLaunch {
  validateSpec(spec);
  const proc = spec.process!;
  const bundleDir = resolvePath(options.bundleDir ?? process.cwd());
  const root = planRoot(spec, bundleDir);
  const ids = planIdMaps(spec, root.namespaces.has('user'), process.geteuid!(), process.getegid!());
  const { b, cwd } = planMounts(spec, root.rootfs, {
    mapsGid5: ids.mapsGid5,
    bundleDir,
    allowHostProc: options.allowHostProc === true,
  });
  const run = planProcess(spec, b, cwd);
  const overlay = planOverlay(root.rootfs, options, b.imageCreates);

  const init = options.init ?? root.namespaces.has('pid');
  const plan: LaunchPlan = {
    cloneFlags: root.cloneFlags,
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
    rootfs: root.rootfs,
    rootReadonly: spec.root!.readonly === true,
    ...overlay,
    ops: b.ops,
    loopback: root.namespaces.has('network'),
    cwd,
    rlimits: run.rlimits,
    setIds: true,
    uid: proc.user.uid,
    gid: proc.user.gid,
    groups: ids.groups,
    capLast: run.capLast,
    capBounding: run.capBounding,
    capEffective: run.capEffective,
    capPermitted: run.capPermitted,
    capInheritable: run.capInheritable,
    capAmbient: run.capAmbient,
    noNewPrivileges: proc.noNewPrivileges !== false,
    pdeathsig: options.detached ? 0 : SIGKILL,
    rootNodev: options.allowImageDevices !== true,
    terminal: proc.terminal === true,
    consoleRows: proc.consoleSize?.height,
    consoleCols: proc.consoleSize?.width,
    execPath: run.execPath,
    args: proc.args,
    env: run.env,
    init,
    ...seccompForPlan(spec.linux?.seccomp, init),
  };

  const described: DescribeContext = {
    ops: b.entries,
    rootfs: root.rootfs,
    overlay: overlay.overlayData !== undefined,
    cwd,
    execPath: run.execPath,
    overlayPrep: overlay.overlayPrep?.map((p) => p.slice(overlay.overlayUpper!.length)),
    overlayDir: overlay.overlayPersist,
    overlayDirReadonly: overlay.overlayPersistReadonly,
    cloneFlags: root.cloneFlags,
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
