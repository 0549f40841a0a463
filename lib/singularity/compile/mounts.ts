// Stage "mounts": the host directories Apptainer binds by default and the
// user's binds, in the order that lets later ones sit inside earlier ones:
// /tmp and /var/tmp (host binds, or with --contain fresh ones from --workdir
// or a tmpfs), --scratch dirs, home, then -B/--mount. The working directory
// (cwd.ts) comes after, /etc files and GPU binds around them (compile.ts).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Mount } from '../../oci/spec.js';
import type { BindSpec } from '../binds.js';
import type { HomePlan } from './home.js';
import { bind, tmpfs } from './paths.js';

export interface HostMountsInput {
  contain: boolean;
  /** Host directory for fresh /tmp, /var/tmp, home and scratch dirs (made below it, mode 0700). */
  workdir?: string;
  scratchDirs: readonly string[];
  noMount: ReadonlySet<string>;
  home: HomePlan;
  userBinds: readonly BindSpec[];
}

export interface HostMounts {
  mounts: Mount[];
  /** Container paths bound from the same host path (a host cwd below one is already there). */
  covered: Set<string>;
}

/** The default and user binds, in mount order. Makes the directories it uses below workdir. */
export function planHostMounts(i: HostMountsInput): HostMounts {
  const mounts: Mount[] = [];
  const covered = new Set<string>();
  const sub = (name: string) => {
    const p = join(i.workdir!, name);
    mkdirSync(p, { recursive: true, mode: 0o700 });
    return p;
  };
  // /tmp and /var/tmp (scratch dirs take their place when named).
  for (const [dir, name] of [
    ['/tmp', 'tmp'],
    ['/var/tmp', 'var_tmp'],
  ] as const) {
    if (i.scratchDirs.includes(dir) || i.noMount.has('tmp')) continue;
    if (!i.contain) {
      mounts.push(bind(dir, dir));
      covered.add(dir);
    } else mounts.push(i.workdir ? bind(sub(name), dir) : tmpfs(dir, '1777'));
  }
  // Scratch dirs before home and binds, which may sit inside them (HTCondor
  // gives -S /tmp with --home and -B inside the job's scratch dir).
  for (const s of i.scratchDirs)
    mounts.push(i.workdir ? bind(sub(join('scratch', s.replace(/\//g, '_'))), s) : tmpfs(s, '1777'));
  // Home after /tmp: a home under /tmp stays visible.
  const { src, dst, noHome } = i.home;
  if (src) {
    mounts.push(bind(src, dst));
    if (src === dst) covered.add(dst);
  } else if (i.contain && !noHome) {
    mounts.push(i.workdir ? bind(sub('home'), dst) : tmpfs(dst, '0700'));
  }
  for (const b of i.userBinds) {
    mounts.push(bind(b.source, b.destination ?? b.source, b.readonly));
    if ((b.destination ?? b.source) === b.source) covered.add(b.source);
  }
  return { mounts, covered };
}
