// Stage "cwd": the payload's working directory, as Apptainer picks it. --pwd
// when it is a directory in the container (else a warning and home; it is
// never created); with --contain, home; the host cwd when a bind already
// shows it; a system directory only as the image has it (never bound from
// the host); else the host cwd bound onto itself, unless --no-mount cwd.
import type { Mount } from '../../oci/spec.js';
import type { HomePlan } from './home.js';
import { bind, dirInContainer, imageHas, isSystemDir } from './paths.js';

export interface CwdInput {
  rootfs: string;
  /** The mounts planned so far (planHostMounts). */
  mounts: readonly Mount[];
  covered: ReadonlySet<string>;
  /** --pwd (absolute, checked by the options stage). */
  pwd?: string;
  contain: boolean;
  hostCwd: string;
  noMount: ReadonlySet<string>;
  home: HomePlan;
}

export interface CwdPlan {
  cwd: string;
  /** The bind of the host cwd, when it needs one (after the others). */
  mounts: Mount[];
  warnings: string[];
}

/** The working directory inside and the bind it needs, if any. */
export function planCwd(i: CwdInput): CwdPlan {
  const { rootfs, mounts, hostCwd, home } = i;
  const out: CwdPlan = { cwd: '/', mounts: [], warnings: [] };
  if (i.pwd !== undefined) {
    if (dirInContainer(rootfs, mounts, i.pwd)) out.cwd = i.pwd;
    else {
      out.cwd = home.noHome ? '/' : home.dst;
      out.warnings.push(`--pwd ${i.pwd} is not a directory in the container: starting in ${out.cwd}`);
    }
  } else if (i.contain) out.cwd = home.dst;
  else if ([...i.covered].some((c) => hostCwd === c || hostCwd.startsWith(c + '/'))) out.cwd = hostCwd;
  else if (isSystemDir(hostCwd)) out.cwd = imageHas(rootfs, hostCwd, 'dir') ? hostCwd : '/';
  else if (i.noMount.has('cwd'))
    out.cwd = dirInContainer(rootfs, mounts, hostCwd)
      ? hostCwd
      : !home.noHome && dirInContainer(rootfs, mounts, home.dst)
        ? home.dst
        : '/';
  else {
    out.mounts.push(bind(hostCwd, hostCwd));
    out.cwd = hostCwd;
  }
  return out;
}
