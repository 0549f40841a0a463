// Stage "root": the rootfs directory, the namespaces to clone, the root's
// propagation, and (once the mounts are planned) whether and how the image
// becomes the lower layer of an overlay root.
import { lstatSync, mkdirSync, realpathSync, statSync } from 'node:fs';
import { constants as osc } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { SpecError } from '../errors.js';
import type { Spec } from '../oci/spec.js';
import { CLONE, MS } from './flags.js';
import { PROPAGATION } from './mount-options.js';
import type { LaunchPlan, PlanOptions } from './types.js';

export const NS_FLAG: Record<string, number> = {
  user: CLONE.NEWUSER,
  mount: CLONE.NEWNS,
  pid: CLONE.NEWPID,
  ipc: CLONE.NEWIPC,
  uts: CLONE.NEWUTS,
  network: CLONE.NEWNET,
  cgroup: CLONE.NEWCGROUP,
  time: CLONE.NEWTIME,
};

/** A namespace joined by path (linux.namespaces[index].path). */
export interface NsJoin {
  type: number;
  path: string;
  /** The spec's name of the type (network, ipc, ...). */
  ns: string;
  /** Index in linux.namespaces, for messages. */
  index: number;
}

/** The kernel's type of a namespace file (NS_GET_NSTYPE), injected so the stage stays testable. */
export type NsTypeOf = (path: string) => number;

export interface RootPlan {
  /** Absolute, symlink-free host path of the image's root directory. */
  rootfs: string;
  /** The namespaces created (by clone, or by unshare in join mode). */
  cloneFlags: number;
  /** Every namespace listed, created or joined. */
  namespaces: Set<string>;
  /** Those created (not joined). */
  created: Set<string>;
  /** Those joined by path, user first (the order the child joins them in). */
  joins: NsJoin[];
  /** linux.rootfsPropagation (default rslave). */
  propagation: string;
  /** MS_* applied recursively to "/" before anything is mounted: slave, or private when asked; never shared. */
  rootPropagation: number;
  /** MS_* (with MS_REC for the r-forms) applied to the new "/" after pivot_root; 0 for the default rslave. */
  rootPropagationAfter: number;
}

const NS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(NS_FLAG).map(([k, v]) => [v, k]));

const article = (w: string) => `${/^[aeiou]/.test(w) ? 'an' : 'a'} ${w}`;

/** linux.namespaces[].path checked to be a namespace of its type (before anything is made). */
function checkJoin(path: string, type: string, i: number, nsTypeOf: NsTypeOf): void {
  const ptr = `/linux/namespaces/${i}/path`;
  const t = nsTypeOf(path);
  if (t === -2) throw new SpecError(ptr, `${path} does not exist (ENOENT)`);
  if (t < 0) {
    const code = Object.entries(osc.errno).find(([, n]) => n === -t)?.[0] ?? `errno ${-t}`;
    throw new SpecError(
      ptr,
      code === 'ENOTTY' || code === 'EINVAL'
        ? `${path} is not a namespace file (a ${type} namespace is expected, e.g. /proc/PID/ns/${type === 'network' ? 'net' : type === 'mount' ? 'mnt' : type})`
        : `cannot open ${path} (${code})`,
    );
  }
  if (t !== NS_FLAG[type])
    throw new SpecError(
      ptr,
      `${path} is ${article(NS_NAMES[t] ?? `type ${t}`)} namespace, not ${article(type)} namespace`,
    );
}

/**
 * A mount namespace given by path is refused, whatever it is and before it is
 * opened: the root is built in the mount namespace the container ends up in,
 * and pivot_root there moves the root of every process of that namespace
 * whose root was its root. Any process's namespace can be named (a root
 * daemon with PrivateTmp= has one of its own: its next exec would run an
 * image binary), and no check of whose it is can be trusted (a
 * bind-mounted nsfs file, a pid reused between the check and the open, a
 * /proc/1 we may not look at). An exec into a running container (joinPid)
 * joins the container's own mount namespace and pivots nothing: lib/plan/enter.ts.
 */
function refuseMountJoin(path: string, i: number): never {
  throw new SpecError(
    `/linux/namespaces/${i}/path`,
    `a mount namespace cannot be joined by path (${path}): the container's root would be built in it, and pivot_root would move the root of every process in that namespace to the image; list the mount namespace without a path to have a new one`,
  );
}

/** The root directory and namespaces of a spec (root.path relative to bundleDir). */
export function planRoot(spec: Spec, bundleDir: string, nsTypeOf?: NsTypeOf): RootPlan {
  const linux = spec.linux ?? {};
  const rootPath = resolvePath(bundleDir, spec.root!.path);
  let rootfs: string;
  try {
    rootfs = realpathSync(rootPath);
    if (!statSync(rootfs).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
  } catch (e) {
    throw new SpecError('/root/path', `rootfs ${rootPath} is not a directory (${(e as NodeJS.ErrnoException).code})`);
  }
  if (rootfs === '/') throw new SpecError('/root/path', 'the host root cannot be the container root');

  const namespaces = new Set((linux.namespaces ?? []).map((n) => n.type as string));
  const created = new Set<string>();
  const joins: NsJoin[] = [];
  let cloneFlags = 0;
  (linux.namespaces ?? []).forEach((n, i) => {
    if (!(n.type in NS_FLAG))
      throw new SpecError(`/linux/namespaces/${i}/type`, `namespace ${n.type} is not supported`);
    if (n.path !== undefined) {
      if (n.type === 'mount') refuseMountJoin(n.path, i);
      if (!nsTypeOf) throw new SpecError(`/linux/namespaces/${i}/path`, 'joining namespaces needs the addon');
      checkJoin(n.path, n.type, i, nsTypeOf);
      joins.push({ type: NS_FLAG[n.type], path: n.path, ns: n.type, index: i });
    } else {
      created.add(n.type);
      cloneFlags |= NS_FLAG[n.type];
    }
  });
  // The user namespace first: the others are then joined with its capabilities.
  joins.sort((a, b) => Number(b.ns === 'user') - Number(a.ns === 'user'));
  if (joins.some((j) => j.ns === 'user') && (linux.uidMappings?.length || linux.gidMappings?.length))
    throw new SpecError(
      linux.uidMappings?.length ? '/linux/uidMappings' : '/linux/gidMappings',
      'a joined user namespace (linux.namespaces path) brings its own id maps: leave uidMappings/gidMappings out',
    );
  if (!namespaces.has('mount'))
    throw new SpecError('/linux/namespaces', 'a mount namespace is required (the rootfs is entered with pivot_root)');
  if (spec.hostname !== undefined && !namespaces.has('uts'))
    throw new SpecError('/hostname', 'setting a hostname needs a uts namespace');
  if (spec.domainname !== undefined && !namespaces.has('uts'))
    throw new SpecError('/domainname', 'setting a domainname needs a uts namespace');
  // The asked propagation is applied to the container's "/" after pivot_root,
  // as runc does; before it, the copies of the host's mounts are slaves
  // (private when asked), so that nothing mounted while the root is built
  // reaches the host and pivot_root finds no shared parent mount.
  const propagation = linux.rootfsPropagation ?? 'rslave';
  const [flag, recursive] = PROPAGATION[propagation];
  return {
    rootfs,
    cloneFlags,
    namespaces,
    created,
    joins,
    propagation,
    rootPropagation: flag === MS.PRIVATE ? MS.PRIVATE : MS.SLAVE,
    rootPropagationAfter: propagation === 'rslave' ? 0 : flag | (recursive ? MS.REC : 0),
  };
}

/** The LaunchPlan fields of an overlay root, all undefined without one. */
export type OverlayPlan = Pick<
  LaunchPlan,
  | 'overlayData'
  | 'overlayTmpfsData'
  | 'overlayLower'
  | 'overlayUpper'
  | 'overlayWork'
  | 'overlayPrep'
  | 'overlayPersist'
  | 'overlayPersistAt'
  | 'overlayPersistReadonly'
>;

/**
 * Whether the image becomes an overlay's lower layer (options.rootOverlay;
 * 'auto': only when the mounts need a mount point the image lacks), mounted
 * at the rootfs path itself so every other path stays the same.
 * `imageCreates`: what the mounts would create in the image, '/'-terminated for directories.
 */
export function planOverlay(
  rootfs: string,
  options: Pick<PlanOptions, 'rootOverlay' | 'overlaySize' | 'overlayDir'>,
  imageCreates: string[],
): OverlayPlan {
  const overlayMode = options.rootOverlay ?? 'never';
  if (!['never', 'auto', 'always'].includes(overlayMode))
    throw SpecError.inOption('rootOverlay', `must be never, auto or always, not ${JSON.stringify(overlayMode)}`);
  const persist = options.overlayDir;
  const overlay =
    persist !== undefined || overlayMode === 'always' || (overlayMode === 'auto' && imageCreates.length > 0);
  if (!overlay) return {};
  if (options.overlaySize !== undefined && !/^\d+[kmgKMG%]?$/.test(options.overlaySize))
    throw SpecError.inOption(
      'overlaySize',
      `must be a tmpfs size such as 64m, not ${JSON.stringify(options.overlaySize)}`,
    );
  // overlayfs splits its options on ',' and lowerdir on ':'; a backslash escapes both.
  const esc = (p: string) => p.replace(/[\\,:]/g, (c) => `\\${c}`);
  const lower = `${rootfs}/lower`,
    at = `${rootfs}/persist`;
  const dir = persist === undefined ? undefined : checkOverlayDir(persist.dir, !!persist.readonly);
  // A writable persistent overlay directory gives the upper and work layers
  // (Apptainer's DIR/upper, DIR/work); a read-only one only an extra lower
  // layer above the image, the tmpfs keeping the upper (mount points).
  const rw = dir !== undefined && !persist!.readonly;
  const upper = rw ? `${at}/upper` : `${rootfs}/upper`,
    work = rw ? `${at}/work` : `${rootfs}/work`;
  const lowers = dir !== undefined && !rw ? `${esc(`${at}/upper`)}:${esc(lower)}` : esc(lower);
  return {
    ...(dir !== undefined ? { overlayPersist: dir, overlayPersistAt: at, overlayPersistReadonly: !rw } : {}),
    overlayData: `lowerdir=${lowers},upperdir=${esc(upper)},workdir=${esc(work)}`,
    overlayTmpfsData: `mode=0755,size=${options.overlaySize ?? '64m'}`,
    overlayLower: lower,
    overlayUpper: upper,
    overlayWork: work,
    overlayPrep: [...new Set(imageCreates)].map((p) => upper + p),
  };
}

/**
 * A persistent overlay directory, checked as the caller's: DIR, DIR/upper and
 * DIR/work real directories (no symlinks) owned by the caller or root; upper
 * and work made when missing (writable only). Earlier payloads wrote DIR/upper:
 * the child creates nothing there by path (see overlay_root in child.cc).
 * Returns DIR's absolute, symlink-free path.
 */
export function checkOverlayDir(dir: string, readonly: boolean, option = 'overlayDir'): string {
  const euid = process.geteuid!();
  const fail = (msg: string) => SpecError.inOption(option, msg);
  const check = (p: string, what: string, mayMiss: boolean): boolean => {
    let st;
    try {
      st = lstatSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && mayMiss) return false;
      throw fail(`${p}: ${what} is not usable (${(e as NodeJS.ErrnoException).code})`);
    }
    if (st.isSymbolicLink()) throw fail(`${p}: ${what} is a symlink (refused: it must be a directory of the caller)`);
    if (!st.isDirectory())
      throw fail(
        `${p}: ${what} is not a directory${st.isFile() && what === 'the overlay directory' ? ' (overlay images are not supported yet)' : ''}`,
      );
    if (st.uid !== euid && st.uid !== 0)
      throw fail(`${p}: ${what} is owned by uid ${st.uid}, not by the caller (${euid}) or root`);
    return true;
  };
  const abs = resolvePath(dir);
  check(abs, 'the overlay directory', false);
  const real = realpathSync(abs);
  if (real !== abs) check(real, 'the overlay directory', false);
  for (const sub of readonly ? ['upper'] : ['upper', 'work']) {
    const p = `${real}/${sub}`;
    if (check(p, `the overlay's ${sub} directory`, true)) continue;
    if (readonly) throw fail(`${p}: a read-only overlay needs its upper directory`);
    try {
      mkdirSync(p, { mode: 0o755 });
    } catch (e) {
      throw fail(`${p}: cannot create the overlay's ${sub} directory (${(e as NodeJS.ErrnoException).code})`);
    }
    check(p, `the overlay's ${sub} directory`, false);
  }
  return real;
}
