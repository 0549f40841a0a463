// Apptainer-style options -> one OCI runtime spec plus spawn options, the
// same model an OCI bundle is read into (docs/architecture.md). What
// Apptainer does by default is done here by default: home, /tmp, /var/tmp
// and the working directory bound from the host, /etc/passwd and /etc/group
// carrying the caller, /etc/resolv.conf and /etc/hosts from the host, a
// read-only root, mount points missing in the image made in an overlay.
//
// compileLaunch runs the stages under compile/, each with its own typed input
// and output and its own unit test (test/unit/compile-*.test.ts), in the
// order their checks and side effects have always had:
//   options   the options that need no image, checked and normalized
//   (image)   the IMAGE argument resolved (image.ts)
//   home      where home is inside and what backs it
//   mounts    /tmp, /var/tmp, scratch, home, -B/--mount, in mount order
//   cwd       the working directory, and its bind when it needs one
//   etc       passwd/group for the caller; host /etc files
//   gpu       --nv/--rocm binds
//   env       environment layers 1-3; the image's env scripts
//   command   what the action runs
//   identity  fakeroot id maps, capabilities
//   spec      one Spec and its spawn options
//   session   the session files bound last; bind sources pinned
import { resolveRunImage } from './image.js';
import { checkOptions } from './compile/options.js';
import { planHome } from './compile/home.js';
import { planHostMounts } from './compile/mounts.js';
import { planCwd } from './compile/cwd.js';
import { planEtcBinds, planIdentityFiles } from './compile/etc.js';
import { planGpuMounts } from './compile/gpu.js';
import { planBaseEnv } from './compile/env.js';
import { planCommand } from './compile/command.js';
import { planIdentity } from './compile/identity.js';
import { assembleSpec, spawnOptionsFor } from './compile/spec.js';
import { attachSession } from './compile/session.js';
import type { ActionMode, CompiledLaunch, ExecOptions } from './compile/types.js';

export type { ActionMode, CompiledLaunch, ExecOptions } from './compile/types.js';

/** Compile options for one action into a spec; nothing is launched yet. */
export async function compileLaunch(
  imageRef: string,
  argv: string[],
  options: ExecOptions,
  mode: ActionMode,
): Promise<CompiledLaunch> {
  const o = options;
  const c = checkOptions(o, argv, mode, { euid: process.geteuid!(), egid: process.getegid!() });
  const { warnings, noMount } = c;
  const image = await resolveRunImage(imageRef, o.pull);
  const rootfs = image.rootfs;

  const home = planHome({ ...o, contain: c.contain, noMount, hostEnv: c.hostEnv });
  const host = planHostMounts({ ...c, home });
  // As Apptainer: a --pwd that is not a directory in the container is a
  // warning, and the payload starts in the home directory instead; it is
  // never created (in the image, an overlay, or a host directory).
  const cwd = planCwd({ ...c, ...host, rootfs, pwd: o.pwd, home });
  warnings.push(...cwd.warnings);
  const identityFiles = await planIdentityFiles(rootfs, c, home.dst);
  const etcBinds = planEtcBinds(noMount);
  const gpu = planGpuMounts(o, c.hostEnv);
  warnings.push(...gpu.warnings);

  const env = planBaseEnv({ ...c, image, mode, home: home.dst, gpu: !!(o.nv || o.rocm), noEval: !!o.noEval });
  const command = planCommand(mode, argv, image);
  for (const [k, v] of command.env) env.baseEnv.set(k, v);
  warnings.push(...command.warnings);
  const identity = planIdentity({ ...c, fakeroot: !!o.fakeroot, keepPrivs: !!o.keepPrivs });
  const infos = [...command.infos, ...identity.infos];

  const spec = assembleSpec(o, {
    rootfs,
    args: command.args,
    cwd: cwd.cwd,
    uid: c.uid,
    gid: c.gid,
    mounts: [...etcBinds, ...host.mounts, ...cwd.mounts, ...gpu.mounts],
    identity,
    noMount,
    overlayDir: c.overlayDir,
  });
  const dispose = attachSession(spec, identityFiles, c.userBinds);
  return {
    image,
    spec,
    spawnOptions: spawnOptionsFor(o, c),
    baseEnv: env.baseEnv,
    envScripts: env.envScripts,
    envFile: c.envFile,
    envOption: c.envOption,
    hostEnv: c.hostEnv,
    warnings,
    infos,
    envScriptTimeout: o.envScriptTimeout ?? 10_000,
    runnable: command.runnable,
    dispose,
  };
}
