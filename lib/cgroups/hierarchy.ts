// Which cgroup hierarchies this host has and where the caller sits in each,
// from /proc/self/mountinfo and /proc/self/cgroup. Three shapes occur:
// unified (cgroup2 at /sys/fs/cgroup, EL9, Debian 12 with systemd), legacy
// (v1 controllers only) and hybrid (v1 controllers plus a cgroup2 tree at
// /sys/fs/cgroup/unified that holds the controllers v1 left over: hugetlb on
// these machines). A container's cgroup is made in every hierarchy we can
// write to, so that cgroup.kill and cgroup.freeze (v2 core files) work on a
// hybrid host too.
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';

export interface V1Hierarchy {
  mount: string;
  /** Every controller co-mounted here (cpu,cpuacct share one directory on many hosts). */
  controllers: string[];
  /** The caller's own cgroup in it, as a directory under `mount`. */
  own: string;
  /** The cgroup path the mount shows at `mount` (mountinfo field 4; "/" outside a cgroup namespace). */
  root?: string;
}

export interface V2Hierarchy {
  mount: string;
  /** Controllers the root of the tree offers (cgroup.controllers of the mount). */
  controllers: Set<string>;
  own: string;
  root?: string;
}

export interface Hierarchies {
  v2: V2Hierarchy | null;
  /** By controller name; co-mounted controllers point at the same entry. */
  v1: Map<string, V1Hierarchy>;
  mode: 'unified' | 'hybrid' | 'legacy' | 'none';
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * Join a cgroup path from /proc/self/cgroup onto a mount whose root (field 4
 * of mountinfo) is `mountRoot`: inside a cgroup namespace or a container the
 * mount shows only a subtree. Null when the caller's cgroup is outside it.
 */
function ownDir(mount: string, mountRoot: string, cgPath: string): string | null {
  const rel = posix.relative(mountRoot, cgPath);
  if (rel.startsWith('..') || posix.isAbsolute(rel)) return null;
  return rel ? join(mount, rel) : mount;
}

export function parseHierarchies(
  mountinfo: string,
  procCgroup: string,
  readControllers: (dir: string) => string,
): Hierarchies {
  const paths = new Map<string, string>(); // "0::" -> path for v2, controller -> path for v1
  for (const line of procCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') paths.set('', m[3]);
    else for (const c of m[2].split(',')) if (c) paths.set(c, m[3]);
  }
  const v1 = new Map<string, V1Hierarchy>();
  let v2: V2Hierarchy | null = null;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    const mountRoot = unescape(pre[3]);
    const mount = unescape(pre[4]);
    if (fstype === 'cgroup2') {
      const p = paths.get('');
      const own = p === undefined ? null : ownDir(mount, mountRoot, p);
      if (!own) continue;
      let controllers = new Set<string>();
      try {
        controllers = new Set(readControllers(mount).split(/\s+/).filter(Boolean));
      } catch {
        /* unreadable: no controllers */
      }
      v2 = { mount, controllers, own, root: mountRoot };
    } else if (fstype === 'cgroup') {
      const controllers = superOpts.split(',').filter((o) => !['rw', 'ro'].includes(o) && !o.includes('='));
      if (!controllers.length) continue; // name=systemd and other named hierarchies hold no controller
      const p = paths.get(controllers[0]);
      const own = p === undefined ? null : ownDir(mount, mountRoot, p);
      if (!own) continue;
      const h = { mount, controllers, own, root: mountRoot };
      for (const c of controllers) if (!v1.has(c)) v1.set(c, h);
    }
  }
  const mode = v1.size ? (v2 ? 'hybrid' : 'legacy') : v2 ? 'unified' : 'none';
  return { v1, v2, mode };
}

/**
 * Where the process whose /proc/PID/cgroup reads PROC_CGROUP sits in each of
 * H's hierarchies, as directories (one per v1 mount, then the v2 one). A
 * hierarchy whose path is outside what the mount shows is left out.
 */
export function processDirs(procCgroup: string, h: Hierarchies): { v1: string[]; v2: string | null } {
  const paths = new Map<string, string>();
  for (const line of procCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') paths.set('', m[3]);
    else for (const c of m[2].split(',')) if (c) paths.set(c, m[3]);
  }
  const v1: string[] = [];
  const seen = new Set<string>();
  for (const x of h.v1.values()) {
    if (seen.has(x.mount)) continue;
    seen.add(x.mount);
    const p = paths.get(x.controllers[0]);
    const d = p === undefined ? null : ownDir(x.mount, x.root ?? '/', p);
    if (d) v1.push(d);
  }
  const p2 = paths.get('');
  const v2 = h.v2 && p2 !== undefined ? ownDir(h.v2.mount, h.v2.root ?? '/', p2) : null;
  return { v1, v2 };
}

let cached: Hierarchies | undefined;

/** The hierarchies of this process (read once: mounts of /sys/fs/cgroup do not move under a running pilot). */
export function hierarchies(): Hierarchies {
  cached ??= parseHierarchies(
    readFileSync('/proc/self/mountinfo', 'utf8'),
    readFileSync('/proc/self/cgroup', 'utf8'),
    (dir) => readFileSync(join(dir, 'cgroup.controllers'), 'utf8'),
  );
  return cached;
}
