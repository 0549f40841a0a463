// Spec -> LaunchPlan: every path resolved inside the rootfs, every mount
// turned into ops, every id map and exec path decided, every string ready.
// The addon gets this as plain data and decides nothing (docs/architecture.md).
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { posix, resolve as resolvePath } from 'node:path';
import { ContainerError, MOUNT_CALLS, SpecError, STEP_NAMES } from '../errors.js';
import { validateSpec } from '../oci/validate.js';
import { DEFAULT_PATH } from '../oci/defaults.js';
import { which } from '../which.js';
import type { LinuxIDMapping, Mount, Spec } from '../oci/spec.js';
import { CAPS, CLONE, MOUNT_ATTR, MS, RLIMITS, attrNames, msFlagNames } from './flags.js';
import { resolveLayered, type LayerHit, type LayeredResolved } from './resolve.js';

export const OP = { MOUNT: 0, BIND: 1, MKDIR: 2, MKFILE: 3, SYMLINK: 4, MASK: 5, READONLY: 6 } as const;
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
  rootfs: string;
  rootReadonly: boolean;
  /** Overlay root (see native/plan.h): set together, or all undefined. */
  overlayData?: string;
  overlayTmpfsData?: string;
  overlayLower?: string;
  overlayUpper?: string;
  overlayWork?: string;
  overlayPrep?: string[];
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
   * Where a fresh proc cannot be mounted (nested under a container runtime
   * that overmounts parts of /proc), bind the host's /proc instead. Off by
   * default, as bubblewrap: the host's /proc shows every host process and its
   * command line, whatever the PID namespace.
   */
  allowHostProc?: boolean;
  /** Keep the image's device nodes usable (default: the root is mounted nodev, recursively). */
  allowImageDevices?: boolean;
}

/** A plan plus what is needed to explain a failure in the plan's own words. */
export interface PreparedLaunch {
  plan: LaunchPlan;
  describeFailure(rec: { step: number; errno: number; index: number; detail: number; helperOutput?: string }): ContainerError;
}

const SIGKILL = 9;

let capLastCache: number | undefined;
function capLast(): number {
  if (capLastCache === undefined) {
    try {
      capLastCache = parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'), 10);
    } catch {
      capLastCache = 40;
    }
  }
  return capLastCache;
}

const helperCache = new Map<string, string | null>();
/** Absolute path of newuidmap/newgidmap, or null. */
function findHelper(name: string): string | null {
  if (!helperCache.has(name)) {
    helperCache.set(name, which(name));
  }
  return helperCache.get(name)!;
}

const PROPAGATION: Record<string, [number, boolean]> = {
  private: [MS.PRIVATE, false], rprivate: [MS.PRIVATE, true],
  slave: [MS.SLAVE, false], rslave: [MS.SLAVE, true],
  shared: [MS.SHARED, false], rshared: [MS.SHARED, true],
  unbindable: [MS.UNBINDABLE, false], runbindable: [MS.UNBINDABLE, true],
};

// The mount options of runtime-spec 1.1 (and mount(8)). For a fresh file
// system the plain ones are MS_* flags and anything else is fs data; for a
// bind they are MOUNT_ATTR_* set with mount_setattr(2), and an option a bind
// cannot honour is a SpecError rather than silently dropped.
interface OptionEffect {
  ms?: [set: number, clear: number];
  /** mount_setattr: attributes set and cleared (atime modes clear MOUNT_ATTR__ATIME). */
  attr?: [set: number, clear: number];
}
const ATIME_MASK = 0x70; // MOUNT_ATTR__ATIME
const OPTION_TABLE: Record<string, OptionEffect> = {
  ro: { ms: [MS.RDONLY, 0], attr: [MOUNT_ATTR.RDONLY, 0] },
  rw: { ms: [0, MS.RDONLY], attr: [0, MOUNT_ATTR.RDONLY] },
  nosuid: { ms: [MS.NOSUID, 0], attr: [MOUNT_ATTR.NOSUID, 0] },
  suid: { ms: [0, MS.NOSUID], attr: [0, MOUNT_ATTR.NOSUID] },
  nodev: { ms: [MS.NODEV, 0], attr: [MOUNT_ATTR.NODEV, 0] },
  dev: { ms: [0, MS.NODEV], attr: [0, MOUNT_ATTR.NODEV] },
  noexec: { ms: [MS.NOEXEC, 0], attr: [MOUNT_ATTR.NOEXEC, 0] },
  exec: { ms: [0, MS.NOEXEC], attr: [0, MOUNT_ATTR.NOEXEC] },
  noatime: { ms: [MS.NOATIME, MS.RELATIME | MS.STRICTATIME], attr: [MOUNT_ATTR.NOATIME, ATIME_MASK] },
  // "atime": the kernel's default (relatime), i.e. not noatime.
  atime: { ms: [0, MS.NOATIME], attr: [MOUNT_ATTR.RELATIME, ATIME_MASK] },
  relatime: { ms: [MS.RELATIME, MS.NOATIME | MS.STRICTATIME], attr: [MOUNT_ATTR.RELATIME, ATIME_MASK] },
  norelatime: { ms: [MS.STRICTATIME, MS.RELATIME], attr: [MOUNT_ATTR.STRICTATIME, ATIME_MASK] },
  strictatime: { ms: [MS.STRICTATIME, MS.NOATIME | MS.RELATIME], attr: [MOUNT_ATTR.STRICTATIME, ATIME_MASK] },
  nostrictatime: { ms: [0, MS.STRICTATIME], attr: [MOUNT_ATTR.RELATIME, ATIME_MASK] },
  nodiratime: { ms: [MS.NODIRATIME, 0], attr: [MOUNT_ATTR.NODIRATIME, 0] },
  diratime: { ms: [0, MS.NODIRATIME], attr: [0, MOUNT_ATTR.NODIRATIME] },
  nosymfollow: { ms: [MS.NOSYMFOLLOW, 0], attr: [MOUNT_ATTR.NOSYMFOLLOW, 0] },
  symfollow: { ms: [0, MS.NOSYMFOLLOW], attr: [0, MOUNT_ATTR.NOSYMFOLLOW] },
  // Superblock options: a fresh mount takes them; a bind shares the
  // superblock and cannot change them.
  sync: { ms: [MS.SYNCHRONOUS, 0] }, async: { ms: [0, MS.SYNCHRONOUS] },
  dirsync: { ms: [MS.DIRSYNC, 0] },
  mand: { ms: [MS.MANDLOCK, 0] }, nomand: { ms: [0, MS.MANDLOCK] },
  lazytime: { ms: [MS.LAZYTIME, 0] }, nolazytime: { ms: [0, MS.LAZYTIME] },
  silent: { ms: [MS.SILENT, 0] }, loud: { ms: [0, MS.SILENT] },
};

interface ParsedOptions {
  flags: number;
  cleared: number;
  /** For binds: mount_setattr of the plain options (recursively for rbind). */
  attrSet: number;
  attrClr: number;
  /** The r* options (rro, rnosuid, ...): always recursive. */
  rattrSet: number;
  rattrClr: number;
  bind: boolean;
  recursive: boolean;
  propagation: number;
  data: string[];
  /** Pointer of the first option a bind cannot apply. */
  notForBind?: [ptr: string, option: string];
}

function parseOptions(options: string[] | undefined, ptr: string): ParsedOptions {
  const r: ParsedOptions = { flags: 0, cleared: 0, attrSet: 0, attrClr: 0, rattrSet: 0, rattrClr: 0, bind: false, recursive: false, propagation: 0, data: [] };
  // The last option wins. An atime mode replaces the one before it: its bits
  // are set while the whole MOUNT_ATTR__ATIME field is cleared (mount_setattr(2)).
  const apply = (set: number, clear: number, [s, c]: [number, number]): [number, number] =>
    clear & ATIME_MASK ? [(s & ~ATIME_MASK) | set, c | clear] : [(s | set) & ~clear, (c | clear) & ~set];
  (options ?? []).forEach((o, i) => {
    if (typeof o !== 'string') throw new SpecError(`${ptr}/${i}`, 'must be a string');
    if (o === 'bind') r.bind = true;
    else if (o === 'rbind') { r.bind = true; r.recursive = true; }
    else if (o in PROPAGATION) r.propagation = PROPAGATION[o][0];
    else if (o in OPTION_TABLE) {
      const e = OPTION_TABLE[o];
      if (e.ms) [r.flags, r.cleared] = apply(e.ms[0], e.ms[1], [r.flags, r.cleared]);
      if (e.attr) [r.attrSet, r.attrClr] = apply(e.attr[0], e.attr[1], [r.attrSet, r.attrClr]);
      else r.notForBind ??= [`${ptr}/${i}`, o];
    } else if (o.length > 1 && o[0] === 'r' && OPTION_TABLE[o.slice(1)]?.attr) {
      const [set, clear] = OPTION_TABLE[o.slice(1)].attr!;
      [r.rattrSet, r.rattrClr] = apply(set, clear, [r.rattrSet, r.rattrClr]);
    } else if (o === 'defaults' || o.startsWith('x-')) { /* nothing for the kernel (mount(8): x-* is for userspace) */ }
    else if (o.startsWith('tmpcopyup') || o.startsWith('idmap') || o.startsWith('ridmap') || o === 'copy-symlink')
      throw new SpecError(`${ptr}/${i}`, `mount option ${o} is not supported`);
    else {
      r.data.push(o);
      r.notForBind ??= [`${ptr}/${i}`, o];
    }
  });
  return r;
}

function idMapText(maps: LinuxIDMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}`).join('\n') + '\n';
}

function isMapped(maps: LinuxIDMapping[], id: number): boolean {
  return maps.some((m) => id >= m.containerID && id < m.containerID + m.size);
}

function capMask(names: string[] | undefined, ptr: string, last: number): bigint {
  let mask = 0n;
  (names ?? []).forEach((n, i) => {
    const num = CAPS[n.toUpperCase().startsWith('CAP_') ? n.toUpperCase() : `CAP_${n.toUpperCase()}`];
    if (num === undefined) throw new SpecError(`${ptr}/${i}`, `unknown capability ${JSON.stringify(n)}`);
    if (num <= last) mask |= 1n << BigInt(num);
  });
  return mask;
}

/** Where container paths under a mount come from on the host, for later resolution. */
interface Layer {
  dest: string;           // container path
  hostDir?: string;       // bind source (or the image); undefined for a fresh (empty) file system
  kind: 'image' | 'bind' | 'fresh' | 'kernel';  // kernel: proc/sysfs, modelled by the host's
  what: string;           // for messages: "the image", "the bind of /home/u", "the tmpfs on /dev"
}

function under(path: string, dir: string): string | undefined {
  if (dir === '/') return path;
  if (path === dir) return '/';
  if (path.startsWith(dir + '/')) return path.slice(dir.length);
  return undefined;
}

/** Mount points whose symlink in the image runc refuses: following it would mount the kernel's trees elsewhere. */
const NO_SYMLINK_DESTS = ['/proc', '/sys', '/dev'];

class PlanBuilder {
  readonly ops: MountOp[] = [];
  readonly what: string[] = [];   // per op, for error messages
  readonly sources: (string | undefined)[] = [];
  readonly dests: string[] = [];
  /** What would be created in the image itself (missing mount points), rootfs-relative, parents first; '/' ends a dir. */
  readonly imageCreates: string[] = [];
  private layers: Layer[];

  constructor(readonly rootfs: string) {
    this.layers = [{ dest: '/', hostDir: rootfs, kind: 'image', what: 'the image' }];
  }

  add(op: MountOp, what: string, dest: string, source?: string): void {
    this.ops.push(op);
    this.what.push(what);
    this.dests.push(dest);
    this.sources.push(source);
  }

  /** The innermost layer covering a container path, and its host path there. */
  private hit = (path: string): LayerHit => {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const l = this.layers[i];
      const rest = under(path, l.dest);
      if (rest === undefined) continue;
      return { layer: i, host: l.hostDir === undefined ? undefined : rest === '/' ? l.hostDir : posix.join(l.hostDir, rest), isMountRoot: i > 0 && rest === '/' };
    }
    throw new Error('unreachable: the image layer covers /');
  };

  /** Resolve a container path through the layers (SpecError on a loop). */
  resolve(dest: string, ptr: string): LayeredResolved {
    try {
      return resolveLayered(dest, this.hit);
    } catch (e) {
      throw new SpecError(ptr, `${dest}: ${(e as Error).message}`);
    }
  }

  /**
   * Canonical container path of a mount target at this point of the mount
   * sequence, with the ops that create what is missing (dirs, and the last
   * one as `last`). The child opens exactly this path from the root fd
   * without following symlinks.
   */
  target(dest: string, last: 'dir' | 'file', ptr: string, opts: { noSymlink?: boolean } = {}): string {
    const r = this.resolve(dest, ptr);
    if (r.links.length && (opts.noSymlink || NO_SYMLINK_DESTS.includes(dest)))
      throw new SpecError(ptr, `${dest} is a symlink in the image (${r.links[0]}): refused (ELOOP), a kernel file system is never mounted through a symlink`);
    if (!r.missing.length) return r.containerPath;
    const layer = this.layers[r.layer];
    // A missing mount point is created where the plan says: in the image (or
    // its overlay), in a file system we mount, or in a bind's host directory
    // when the spec's own path leads there. An image symlink that redirects the
    // creation into a host directory would write on the host: refuse it.
    if (layer.kind === 'bind' && r.links.length)
      throw new SpecError(ptr, `${dest} resolves through a symlink of the image (${r.links.join(', ')}) to ${r.missing[0]}, inside ${layer.what}: refusing to create it on the host (EXDEV)`);
    for (const [k, m] of r.missing.entries()) this.mkop(k === r.missing.length - 1 ? last : 'dir', m);
    if (layer.kind === 'image') {
      // For an overlay root, every existing parent is recreated in the upper
      // layer too, so the new entry's directory there is ours.
      const parents = posix.dirname(r.missing[0]).split('/').filter(Boolean);
      parents.forEach((_, k) => this.imageCreates.push('/' + parents.slice(0, k + 1).join('/') + '/'));
      r.missing.forEach((m, k) => this.imageCreates.push(k === r.missing.length - 1 && last === 'file' ? m : m + '/'));
    }
    return r.containerPath;
  }

  mkop(kind: 'dir' | 'file', dest: string, mode?: number): void {
    if (kind === 'dir') this.add({ kind: OP.MKDIR, target: dest, mode: mode ?? 0o755 }, `mkdir ${dest}`, dest);
    else this.add({ kind: OP.MKFILE, target: dest, mode: mode ?? 0o644 }, `create mount point ${dest}`, dest);
  }

  pushLayer(dest: string, kind: Layer['kind'], hostDir: string | undefined, what: string): void {
    this.layers.push({ dest, hostDir, kind, what });
  }

  /** Host path of a container path, looking through binds, or null when we cannot know (tmpfs). */
  lookup(path: string): string | null {
    const h = this.hit(path);
    return h.host ?? null;
  }
}

/** The minimal /dev that goes into a tmpfs mounted at /dev (what runc and crun create). */
const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];
const DEV_LINKS: [string, string][] = [
  ['/proc/self/fd', 'fd'],
  ['/proc/self/fd/0', 'stdin'],
  ['/proc/self/fd/1', 'stdout'],
  ['/proc/self/fd/2', 'stderr'],
  ['pts/ptmx', 'ptmx'],
];

function addMount(b: PlanBuilder, m: Mount, i: number, ctx: { mapsGid5: boolean; bundleDir: string; allowHostProc: boolean }): void {
  const ptr = `/mounts/${i}`;
  // normalize keeps a trailing slash ('/proc/'), which would slip past the /proc, /sys, /dev checks.
  const dest = posix.normalize(m.destination).replace(/(.)\/+$/, '$1');
  const opts = parseOptions(m.options, `${ptr}/options`);
  const type = m.type ?? (opts.bind ? 'bind' : undefined);
  if (type === 'bind' || opts.bind) {
    if (!m.source) throw new SpecError(`${ptr}/source`, 'a bind mount needs a source');
    if (opts.notForBind) {
      const [p, o] = opts.notForBind;
      throw new SpecError(p, `mount option ${JSON.stringify(o)} cannot be applied to a bind mount (known: ${Object.keys(OPTION_TABLE).filter((k) => OPTION_TABLE[k].attr).join(', ')}, their r-prefixed recursive forms, propagation, bind, rbind)`);
    }
    const source = resolvePath(ctx.bundleDir, m.source);
    let st;
    try {
      st = statSync(source);
    } catch (e) {
      throw new SpecError(`${ptr}/source`, `bind source ${source} does not exist (${(e as NodeJS.ErrnoException).code})`);
    }
    const target = b.target(dest, st.isDirectory() ? 'dir' : 'file', `${ptr}/destination`);
    // Binds get nosuid,nodev unless asked otherwise: a setuid binary or a
    // device node from the host must not grant anything inside. A negative
    // plain option (rw, suid, dev, exec) only leaves out what we would add:
    // clearing a flag the host locked is EPERM, as in runc.
    let attrSet = opts.attrSet | MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV;
    attrSet &= ~(opts.attrClr & (MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV));
    const attrClr = opts.attrClr & (ATIME_MASK | MOUNT_ATTR.NODIRATIME | MOUNT_ATTR.NOSYMFOLLOW);
    const op: MountOp = {
      kind: OP.BIND, source, target, attrSet, attrClr, rattrSet: opts.rattrSet, rattrClr: opts.rattrClr,
      propagation: opts.propagation, recursive: opts.recursive,
    };
    b.add(op, `bind-mount ${source} -> ${target}`, target, source);
    b.pushLayer(target, 'bind', source, `the bind of ${source}`);
    return;
  }
  const kernelFs = type === 'proc' || type === 'sysfs';
  const target = b.target(dest, 'dir', `${ptr}/destination`, { noSymlink: kernelFs });
  let flags = opts.flags;
  let data = opts.data;
  let fallback: string | undefined;
  let fallbackAttrs = 0;
  switch (type) {
    case 'proc':
      flags |= MS.NOSUID | MS.NODEV | MS.NOEXEC;
      // The host's /proc in a new PID namespace shows every host process:
      // only when the caller asked for it (nested under a locked /proc).
      if (ctx.allowHostProc) {
        fallback = '/proc';
        fallbackAttrs = MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV | MOUNT_ATTR.NOEXEC;
      }
      break;
    case 'sysfs':
      flags |= MS.NOSUID | MS.NODEV | MS.NOEXEC;
      // Without a network namespace of our own the kernel refuses a fresh
      // sysfs; the host's, read-only, is what Apptainer and bubblewrap give.
      fallback = '/sys';
      fallbackAttrs = MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV | MOUNT_ATTR.NOEXEC | MOUNT_ATTR.RDONLY;
      break;
    case 'devpts':
      // gid=N only works when N is mapped; with a single-ID map it is not.
      if (!ctx.mapsGid5) data = data.filter((d) => !d.startsWith('gid='));
      if (!data.includes('newinstance')) data.push('newinstance');
      break;
    case 'cgroup':
    case 'cgroup2':
      // The host's hierarchy, never writable from inside.
      fallback = '/sys/fs/cgroup';
      fallbackAttrs = MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV | MOUNT_ATTR.NOEXEC | MOUNT_ATTR.RDONLY;
      break;
    case undefined:
      throw new SpecError(`${ptr}/type`, 'is required unless options contain bind or rbind');
  }
  const op: MountOp = {
    kind: OP.MOUNT, source: m.source ?? type, target, fstype: type, flags, data: data.join(',') || undefined,
    propagation: opts.propagation, fallback, attrSet: fallback ? fallbackAttrs : 0, recursive: !!fallback,
    rattrSet: opts.rattrSet, rattrClr: opts.rattrClr,
  };
  // attrSet only matters for the fallback bind (fresh mounts take flags).
  b.add(op, `mount ${type} on ${target}${op.data ? ` (${op.data})` : ''}`, target, m.source);
  if (kernelFs) b.pushLayer(target, 'kernel', '/' + type!.replace('fs', ''), `the ${type} on ${target}`);
  else b.pushLayer(target, 'fresh', undefined, `the ${type} on ${target}`);
  if (target === '/dev' && type === 'tmpfs') {
    for (const n of DEV_NODES) {
      const t = `/dev/${n}`;
      b.mkop('file', t, 0o666);
      // Device binds keep dev (that is their point) but not suid or exec.
      b.add({ kind: OP.BIND, source: t, target: t, attrSet: MOUNT_ATTR.NOSUID | MOUNT_ATTR.NOEXEC }, `bind-mount ${t} -> ${t}`, t, t);
    }
    for (const [to, name] of DEV_LINKS)
      b.add({ kind: OP.SYMLINK, source: to, target: `/dev/${name}` }, `symlink /dev/${name} -> ${to}`, `/dev/${name}`);
  }
}

function findExecutable(b: PlanBuilder, arg0: string, env: string[], cwd: string): string {
  const candidates: string[] = [];
  let notExecutable: string | undefined;
  if (arg0.includes('/')) candidates.push(posix.resolve(cwd, arg0));
  else {
    const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
    for (const dir of pathVar.split(':')) if (dir.startsWith('/')) candidates.push(posix.join(dir, arg0));
  }
  for (const c of candidates) {
    try {
      const r = b.resolve(c, '/process/args/0');
      if (r.missing.length) continue;
      const h = b.lookup(r.containerPath);
      if (h === null) return c; // inside a tmpfs we create: cannot check, exec will tell
      const st = r.stat ?? statSync(h); // a mount root (a bound file) has no lstat of its own
      if (st.isFile() && (st.mode & 0o111) !== 0) return c;
      notExecutable ??= c;
    } catch { /* not this one */ }
  }
  const where = arg0.includes('/') ? `` : ` (searched PATH=${env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH})`;
  // `code` lets the CLI exit as Apptainer does: 126 for EACCES, 127 for ENOENT.
  if (notExecutable !== undefined)
    throw Object.assign(new SpecError('/process/args/0', `${notExecutable} in the image ${b.rootfs} is not an executable file (permission denied)`), { code: 'EACCES' });
  throw Object.assign(new SpecError('/process/args/0', `executable ${JSON.stringify(arg0)} not found in the image ${b.rootfs}${where}`), { code: 'ENOENT' });
}

/** Check a spec and compile it into a launch plan. Throws SpecError naming the field. */
export function prepareLaunch(spec: Spec, options: PlanOptions = {}): PreparedLaunch {
  validateSpec(spec);
  const bundleDir = resolvePath(options.bundleDir ?? process.cwd());
  const proc = spec.process!;
  const linux = spec.linux ?? {};
  const euid = process.geteuid!();
  const egid = process.getegid!();

  // Root file system.
  const rootPath = resolvePath(bundleDir, spec.root!.path);
  let rootfs: string;
  try {
    rootfs = realpathSync(rootPath);
    if (!statSync(rootfs).isDirectory()) throw Object.assign(new Error(), { code: 'ENOTDIR' });
  } catch (e) {
    throw new SpecError('/root/path', `rootfs ${rootPath} is not a directory (${(e as NodeJS.ErrnoException).code})`);
  }
  if (rootfs === '/') throw new SpecError('/root/path', 'the host root cannot be the container root');

  // Namespaces.
  const nsTypes = new Set((linux.namespaces ?? []).map((n) => n.type));
  const nsFlag: Record<string, number> = {
    user: CLONE.NEWUSER, mount: CLONE.NEWNS, pid: CLONE.NEWPID, ipc: CLONE.NEWIPC, uts: CLONE.NEWUTS,
    network: CLONE.NEWNET, cgroup: CLONE.NEWCGROUP,
  };
  let cloneFlags = 0;
  (linux.namespaces ?? []).forEach((n, i) => {
    if (!(n.type in nsFlag)) throw new SpecError(`/linux/namespaces/${i}/type`, `namespace ${n.type} is not supported`);
    cloneFlags |= nsFlag[n.type];
  });
  if (!nsTypes.has('mount')) throw new SpecError('/linux/namespaces', 'a mount namespace is required (the rootfs is entered with pivot_root)');
  if (spec.hostname !== undefined && !nsTypes.has('uts')) throw new SpecError('/hostname', 'setting a hostname needs a uts namespace');
  if (spec.domainname !== undefined && !nsTypes.has('uts')) throw new SpecError('/domainname', 'setting a domainname needs a uts namespace');

  // User namespace and id maps.
  let idMode: number = IDMAP.NONE;
  let uidMaps: LinuxIDMapping[] = [];
  let gidMaps: LinuxIDMapping[] = [];
  const plan: Partial<LaunchPlan> = {};
  if (nsTypes.has('user')) {
    uidMaps = linux.uidMappings ?? [{ containerID: proc.user.uid, hostID: euid, size: 1 }];
    gidMaps = linux.gidMappings ?? [{ containerID: proc.user.gid, hostID: egid, size: 1 }];
    if (uidMaps.length === 0) throw new SpecError('/linux/uidMappings', 'must map at least one id');
    if (gidMaps.length === 0) throw new SpecError('/linux/gidMappings', 'must map at least one id');
    if (!isMapped(uidMaps, proc.user.uid)) throw new SpecError('/process/user/uid', `uid ${proc.user.uid} is not in linux.uidMappings`);
    if (!isMapped(gidMaps, proc.user.gid)) throw new SpecError('/process/user/gid', `gid ${proc.user.gid} is not in linux.gidMappings`);
    const single = (maps: LinuxIDMapping[], id: number) => maps.length === 1 && maps[0].size === 1 && maps[0].hostID === id;
    if (single(uidMaps, euid) && single(gidMaps, egid) && !proc.user.additionalGids?.length) {
      idMode = IDMAP.SELF;
      plan.setgroupsDeny = true;
    } else if (euid === 0) {
      idMode = IDMAP.PARENT;
    } else {
      const nu = findHelper('newuidmap'), ng = findHelper('newgidmap');
      if (!nu || !ng)
        throw new SpecError('/linux/uidMappings', 'mapping ranges (or ids other than your own) as an unprivileged user needs newuidmap and newgidmap (Debian package uidmap) and entries in /etc/subuid and /etc/subgid');
      idMode = IDMAP.HELPER;
      const flat = (maps: LinuxIDMapping[]) => maps.flatMap((m) => [String(m.containerID), String(m.hostID), String(m.size)]);
      plan.uidHelperArgs = [nu, ...flat(uidMaps)];
      plan.gidHelperArgs = [ng, ...flat(gidMaps)];
    }
    plan.uidMap = idMapText(uidMaps);
    plan.gidMap = idMapText(gidMaps);
    for (const [k, g] of (proc.user.additionalGids ?? []).entries())
      if (!isMapped(gidMaps, g)) throw new SpecError(`/process/user/additionalGids/${k}`, `gid ${g} is not in linux.gidMappings`);
  } else {
    if (euid !== 0) throw new SpecError('/linux/namespaces', 'a user namespace is required when not running as root');
    if (linux.uidMappings?.length || linux.gidMappings?.length)
      throw new SpecError('/linux/uidMappings', 'id mappings need a user namespace in /linux/namespaces');
  }

  // Mounts, in spec order, then masked and read-only paths.
  const b = new PlanBuilder(rootfs);
  const ctx = { mapsGid5: idMode === IDMAP.NONE || isMapped(gidMaps, 5), bundleDir, allowHostProc: options.allowHostProc === true };
  (spec.mounts ?? []).forEach((m, i) => addMount(b, m, i, ctx));
  // Working directory: created like any other mount point when missing.
  const cwd = posix.normalize(proc.cwd);
  if (cwd !== '/') b.target(cwd, 'dir', '/process/cwd');
  // Masked and read-only paths name container paths as such: the child
  // resolves them inside the root (symlinks followed there, never on the
  // host) after every mount above, and skips the missing ones.
  (linux.maskedPaths ?? []).forEach((p, i) => {
    if (typeof p !== 'string' || !p.startsWith('/')) throw new SpecError(`/linux/maskedPaths/${i}`, 'must be an absolute path');
    const target = posix.normalize(p);
    b.add({ kind: OP.MASK, source: '/dev/null', target, resolve: RESOLVE.FOLLOW }, `mask ${p}`, target);
  });
  (linux.readonlyPaths ?? []).forEach((p, i) => {
    if (typeof p !== 'string' || !p.startsWith('/')) throw new SpecError(`/linux/readonlyPaths/${i}`, 'must be an absolute path');
    const target = posix.normalize(p);
    b.add({ kind: OP.READONLY, target, attrSet: MOUNT_ATTR.RDONLY, recursive: true, resolve: RESOLVE.FOLLOW }, `make ${p} read-only`, target);
  });

  // Process.
  const env = proc.env ?? [`PATH=${DEFAULT_PATH}`];
  const execPath = findExecutable(b, proc.args[0], env, cwd);
  const rlimits = (proc.rlimits ?? []).map((r, i) => {
    const resource = RLIMITS[r.type.toUpperCase()];
    if (resource === undefined) throw new SpecError(`/process/rlimits/${i}/type`, `unknown rlimit ${JSON.stringify(r.type)}`);
    return { resource, soft: r.soft, hard: r.hard };
  });
  const last = capLast();
  const caps = proc.capabilities ?? {};
  const capBounding = capMask(caps.bounding, '/process/capabilities/bounding', last);
  const capEffective = capMask(caps.effective, '/process/capabilities/effective', last);
  const capPermitted = capMask(caps.permitted, '/process/capabilities/permitted', last);
  const capInheritable = capMask(caps.inheritable, '/process/capabilities/inheritable', last);
  const capAmbient = capMask(caps.ambient, '/process/capabilities/ambient', last);
  if ((capEffective & ~capPermitted) !== 0n) throw new SpecError('/process/capabilities/effective', 'must be a subset of permitted');
  if ((capAmbient & ~(capPermitted & capInheritable)) !== 0n)
    throw new SpecError('/process/capabilities/ambient', 'must be a subset of both permitted and inheritable');

  // Overlay root: same paths as without it (it is mounted at the rootfs path).
  const overlayMode = options.rootOverlay ?? 'never';
  if (!['never', 'auto', 'always'].includes(overlayMode))
    throw new SpecError('rootOverlay', `must be never, auto or always, not ${JSON.stringify(overlayMode)}`);
  const overlay = overlayMode === 'always' || (overlayMode === 'auto' && b.imageCreates.length > 0);
  if (overlay && options.overlaySize !== undefined && !/^\d+[kmgKMG%]?$/.test(options.overlaySize))
    throw new SpecError('overlaySize', `must be a tmpfs size such as 64m, not ${JSON.stringify(options.overlaySize)}`);
  // overlayfs splits its options on ',' and lowerdir on ':'; a backslash escapes both.
  const esc = (p: string) => p.replace(/[\\,:]/g, (c) => `\\${c}`);
  const ovl = overlay ? { lower: `${rootfs}/lower`, upper: `${rootfs}/upper`, work: `${rootfs}/work` } : undefined;

  const prop = linux.rootfsPropagation ?? 'rslave';
  const init = options.init ?? nsTypes.has('pid');

  const full: LaunchPlan = {
    cloneFlags,
    idMode,
    uidMap: plan.uidMap,
    gidMap: plan.gidMap,
    setgroupsDeny: plan.setgroupsDeny ?? false,
    // Parent-written ranges: act as the namespace's root (when mapped) for the setup.
    setupUid: idMode === IDMAP.PARENT || idMode === IDMAP.HELPER ? (isMapped(uidMaps, 0) ? 0 : -1) : -1,
    setupGid: idMode === IDMAP.PARENT || idMode === IDMAP.HELPER ? (isMapped(gidMaps, 0) ? 0 : -1) : -1,
    uidHelperArgs: plan.uidHelperArgs,
    gidHelperArgs: plan.gidHelperArgs,
    hostname: spec.hostname,
    domainname: spec.domainname,
    rootPropagation: PROPAGATION[prop][0],
    rootfs,
    rootReadonly: spec.root!.readonly === true,
    overlayData: ovl && `lowerdir=${esc(ovl.lower)},upperdir=${esc(ovl.upper)},workdir=${esc(ovl.work)}`,
    overlayTmpfsData: ovl && `mode=0755,size=${options.overlaySize ?? '64m'}`,
    overlayLower: ovl?.lower,
    overlayUpper: ovl?.upper,
    overlayWork: ovl?.work,
    overlayPrep: ovl && [...new Set(b.imageCreates)].map((p) => ovl.upper + p),
    ops: b.ops,
    loopback: nsTypes.has('network'),
    cwd,
    rlimits,
    setIds: true,
    uid: proc.user.uid,
    gid: proc.user.gid,
    // setgroups is denied with a single-ID map; elsewhere set exactly the spec's groups.
    groups: idMode === IDMAP.SELF ? undefined : (proc.user.additionalGids ?? []),
    capLast: last,
    capBounding, capEffective, capPermitted, capInheritable, capAmbient,
    noNewPrivileges: proc.noNewPrivileges !== false,
    pdeathsig: options.detached ? 0 : SIGKILL,
    rootNodev: options.allowImageDevices !== true,
    terminal: proc.terminal === true,
    consoleRows: proc.consoleSize?.height,
    consoleCols: proc.consoleSize?.width,
    execPath,
    args: proc.args,
    env,
    init,
  };

  const describeFailure: PreparedLaunch['describeFailure'] = (rec) => {
    const step = STEP_NAMES[rec.step] ?? `step ${rec.step}`;
    switch (step) {
      case 'mount': {
        const op = b.ops[rec.index];
        const call = MOUNT_CALLS[rec.detail] ?? 'mount';
        const flags = op ? [op.flags ? msFlagNames(op.flags) : '', op.attrSet ? attrNames(op.attrSet) : ''].filter(Boolean).join(' ') : undefined;
        return new ContainerError(b.what[rec.index] ?? `mount op ${rec.index}`, {
          step, errno: rec.errno, syscall: call, path: b.sources[rec.index], target: b.dests[rec.index], flags,
        });
      }
      case 'overlay-root':
        return new ContainerError(`overlay on ${rootfs} (lower: the image, upper: a tmpfs)`, {
          step, errno: rec.errno, syscall: MOUNT_CALLS[rec.detail] ?? 'mount', path: rootfs,
        });
      case 'bind-rootfs':
      case 'pivot-root':
        return new ContainerError(`${step} ${rootfs}`, { step, errno: rec.errno, path: rootfs });
      case 'terminal':
        return new ContainerError('open a pty in /dev/pts for process.terminal (a devpts mount at /dev/pts is needed)', { step, errno: rec.errno, path: '/dev/pts/ptmx' });
      case 'session-keyring':
        return new ContainerError('join a new session keyring', { step, errno: rec.errno, syscall: 'keyctl' });
      case 'chdir':
        return new ContainerError(`chdir ${cwd} (process.cwd)`, { step, errno: rec.errno, syscall: 'chdir', path: cwd });
      case 'exec':
        return new ContainerError(`exec ${execPath}`, { step, errno: rec.errno, syscall: 'execve', path: execPath });
      case 'rlimit':
        return new ContainerError(`set ${proc.rlimits?.[rec.index]?.type ?? 'rlimit'}`, { step, errno: rec.errno, syscall: 'setrlimit' });
      case 'id-map-helper': {
        const args = rec.index === 0 ? plan.uidHelperArgs : plan.gidHelperArgs;
        return new ContainerError(`${args?.join(' ') ?? 'id map helper'}`, { step, errno: rec.errno, detail: rec.helperOutput?.trim() });
      }
      case 'uid-map':
        return new ContainerError(`write uid_map "${plan.uidMap?.trim()}"`, { step, errno: rec.errno, syscall: 'write' });
      case 'gid-map':
        return new ContainerError(`write gid_map "${plan.gidMap?.trim()}"`, { step, errno: rec.errno, syscall: 'write' });
      case 'clone':
        return new ContainerError(`clone ${cloneFlagNames(cloneFlags)}`, { step, errno: rec.errno, syscall: 'clone' });
      default:
        return new ContainerError(step, { step, errno: rec.errno });
    }
  };
  return { plan: full, describeFailure };
}

export function cloneFlagNames(flags: number): string {
  return Object.entries(CLONE).filter(([, v]) => flags & v).map(([k]) => `CLONE_${k}`).join('|');
}

