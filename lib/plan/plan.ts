// Spec -> LaunchPlan: every path resolved inside the rootfs, every mount
// turned into ops, every id map and exec path decided, every string ready.
// The addon gets this as plain data and decides nothing (docs/architecture.md).
import { accessSync, constants as fsc, readFileSync, realpathSync, statSync } from 'node:fs';
import { posix, resolve as resolvePath } from 'node:path';
import { ContainerError, MOUNT_CALLS, SpecError, STEP_NAMES } from '../errors.js';
import { validateSpec } from '../oci/validate.js';
import type { LinuxIDMapping, Mount, Spec } from '../oci/spec.js';
import { CAPS, CLONE, MOUNT_ATTR, MS, RLIMITS, attrNames, msFlagNames } from './flags.js';
import { resolveInRoot } from './resolve.js';

export const OP = { MOUNT: 0, BIND: 1, MKDIR: 2, MKFILE: 3, SYMLINK: 4, MASK: 5, READONLY: 6 } as const;
export const IDMAP = { NONE: 0, SELF: 1, PARENT: 2, HELPER: 3 } as const;

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
}

/** A plan plus what is needed to explain a failure in the plan's own words. */
export interface PreparedLaunch {
  plan: LaunchPlan;
  describeFailure(rec: { step: number; errno: number; index: number; detail: number; helperOutput?: string }): ContainerError;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
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
    let found: string | null = null;
    for (const dir of (process.env.PATH ?? DEFAULT_PATH).split(':').concat(['/usr/bin', '/bin'])) {
      const p = posix.join(dir || '.', name);
      try {
        accessSync(p, fsc.X_OK);
        found = p;
        break;
      } catch { /* next */ }
    }
    helperCache.set(name, found);
  }
  return helperCache.get(name)!;
}

const PROPAGATION: Record<string, [number, boolean]> = {
  private: [MS.PRIVATE, false], rprivate: [MS.PRIVATE, true],
  slave: [MS.SLAVE, false], rslave: [MS.SLAVE, true],
  shared: [MS.SHARED, false], rshared: [MS.SHARED, true],
  unbindable: [MS.UNBINDABLE, false], runbindable: [MS.UNBINDABLE, true],
};

// Mount options that are flags; anything else is passed as fs data.
const FLAG_OPTIONS: Record<string, [set: number, clear: number]> = {
  ro: [MS.RDONLY, 0], rw: [0, MS.RDONLY],
  nosuid: [MS.NOSUID, 0], suid: [0, MS.NOSUID],
  nodev: [MS.NODEV, 0], dev: [0, MS.NODEV],
  noexec: [MS.NOEXEC, 0], exec: [0, MS.NOEXEC],
  noatime: [MS.NOATIME, 0], atime: [0, MS.NOATIME],
  nodiratime: [MS.NODIRATIME, 0], diratime: [0, MS.NODIRATIME],
  relatime: [MS.RELATIME, 0], norelatime: [0, MS.RELATIME],
  strictatime: [MS.STRICTATIME, 0], sync: [MS.SYNCHRONOUS, 0], async: [0, MS.SYNCHRONOUS],
  dirsync: [MS.DIRSYNC, 0], mand: [MS.MANDLOCK, 0], nomand: [0, MS.MANDLOCK],
  nosymfollow: [MS.NOSYMFOLLOW, 0], lazytime: [MS.LAZYTIME, 0], nolazytime: [0, MS.LAZYTIME],
};

function msToAttr(flags: number): number {
  let a = 0;
  if (flags & MS.RDONLY) a |= MOUNT_ATTR.RDONLY;
  if (flags & MS.NOSUID) a |= MOUNT_ATTR.NOSUID;
  if (flags & MS.NODEV) a |= MOUNT_ATTR.NODEV;
  if (flags & MS.NOEXEC) a |= MOUNT_ATTR.NOEXEC;
  if (flags & MS.NOATIME) a |= MOUNT_ATTR.NOATIME;
  if (flags & MS.NODIRATIME) a |= MOUNT_ATTR.NODIRATIME;
  return a;
}

interface ParsedOptions {
  flags: number;
  cleared: number;
  bind: boolean;
  recursive: boolean;
  propagation: number;
  data: string[];
}

function parseOptions(options: string[] | undefined, ptr: string): ParsedOptions {
  const r: ParsedOptions = { flags: 0, cleared: 0, bind: false, recursive: false, propagation: 0, data: [] };
  (options ?? []).forEach((o, i) => {
    if (o === 'bind') r.bind = true;
    else if (o === 'rbind') { r.bind = true; r.recursive = true; }
    else if (o in PROPAGATION) r.propagation = PROPAGATION[o][0];
    else if (o in FLAG_OPTIONS) {
      const [set, clear] = FLAG_OPTIONS[o];
      r.flags = (r.flags | set) & ~clear;
      r.cleared = (r.cleared | clear) & ~set;
    } else if (o === 'defaults') { /* nothing */ }
    else if (o.startsWith('tmpcopyup') || o.startsWith('idmap') || o.startsWith('ridmap') || o === 'copy-symlink')
      throw new SpecError(`${ptr}/${i}`, `mount option ${o} is not supported`);
    else r.data.push(o);
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
  hostDir?: string;       // bind source; undefined for a fresh (empty) file system
}

function under(path: string, dir: string): string | undefined {
  if (dir === '/') return path;
  if (path === dir) return '/';
  if (path.startsWith(dir + '/')) return path.slice(dir.length);
  return undefined;
}

class PlanBuilder {
  readonly ops: MountOp[] = [];
  readonly what: string[] = [];   // per op, for error messages
  readonly sources: (string | undefined)[] = [];
  readonly dests: string[] = [];
  /** What would be created in the image itself (missing mount points), rootfs-relative, parents first; '/' ends a dir. */
  readonly imageCreates: string[] = [];
  private layers: Layer[] = [];

  constructor(readonly rootfs: string) {}

  add(op: MountOp, what: string, dest: string, source?: string): void {
    this.ops.push(op);
    this.what.push(what);
    this.dests.push(dest);
    this.sources.push(source);
  }

  /**
   * Host path for a container path at this point of the mount sequence, and
   * the ops that create what is missing (dirs, and the last one as `last`).
   */
  target(dest: string, last: 'dir' | 'file', ptr: string): string {
    // The innermost earlier mount covering dest decides what is there.
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const rest = under(dest, this.layers[i].dest);
      if (rest === undefined) continue;
      const layer = this.layers[i];
      const base = layer.dest === '/' ? this.rootfs : posix.join(this.rootfs, layer.dest);
      if (layer.hostDir === undefined) {
        // A file system we mount ourselves (tmpfs): empty, so create every component.
        const parts = rest.split('/').filter(Boolean);
        let cur = layer.dest;
        parts.forEach((p, k) => {
          cur = posix.join(cur, p);
          const kind = k === parts.length - 1 ? last : 'dir';
          this.mkop(posix.join(this.rootfs, cur), kind, cur);
        });
        return posix.join(this.rootfs, dest);
      }
      // Under a bind: look at the bind's source on the host.
      let r;
      try {
        r = resolveInRoot(layer.hostDir, rest);
      } catch (e) {
        throw new SpecError(ptr, (e as Error).message);
      }
      for (const [k, m] of r.missing.entries())
        this.mkop(posix.join(base, m), k === r.missing.length - 1 ? last : 'dir', posix.join(layer.dest, m));
      return posix.join(base, r.containerPath);
    }
    let r;
    try {
      r = resolveInRoot(this.rootfs, dest);
    } catch (e) {
      throw new SpecError(ptr, (e as Error).message);
    }
    for (const [k, m] of r.missing.entries()) this.mkop(posix.join(this.rootfs, m), k === r.missing.length - 1 ? last : 'dir', m);
    if (r.missing.length) {
      // For an overlay root, every existing parent is recreated in the upper
      // layer too, so the new entry's directory there is ours.
      const parents = posix.dirname(r.missing[0]).split('/').filter(Boolean);
      parents.forEach((_, k) => this.imageCreates.push('/' + parents.slice(0, k + 1).join('/') + '/'));
      r.missing.forEach((m, k) => this.imageCreates.push(k === r.missing.length - 1 && last === 'file' ? m : m + '/'));
    }
    return r.hostPath;
  }

  private mkop(hostPath: string, kind: 'dir' | 'file', dest: string): void {
    if (kind === 'dir') this.add({ kind: OP.MKDIR, target: hostPath, mode: 0o755 }, `mkdir ${dest}`, dest);
    else this.add({ kind: OP.MKFILE, target: hostPath, mode: 0o644 }, `create mount point ${dest}`, dest);
  }

  pushLayer(dest: string, hostDir?: string): void {
    this.layers.push({ dest, hostDir });
  }

  /** Host path of a container path, looking through binds, or undefined when we cannot know (tmpfs). */
  lookup(path: string): string | null {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const rest = under(path, this.layers[i].dest);
      if (rest === undefined) continue;
      const l = this.layers[i];
      if (l.hostDir === undefined) return null;
      return rest === '/' ? l.hostDir : posix.join(l.hostDir, rest);
    }
    return posix.join(this.rootfs, path);
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

function addMount(b: PlanBuilder, m: Mount, i: number, ctx: { mapsGid5: boolean; bundleDir: string }): void {
  const ptr = `/mounts/${i}`;
  const dest = posix.normalize(m.destination);
  const opts = parseOptions(m.options, `${ptr}/options`);
  const type = m.type ?? (opts.bind ? 'bind' : undefined);
  if (type === 'bind' || opts.bind) {
    if (!m.source) throw new SpecError(`${ptr}/source`, 'a bind mount needs a source');
    const source = resolvePath(ctx.bundleDir, m.source);
    let st;
    try {
      st = statSync(source);
    } catch (e) {
      throw new SpecError(`${ptr}/source`, `bind source ${source} does not exist (${(e as NodeJS.ErrnoException).code})`);
    }
    const target = b.target(dest, st.isDirectory() ? 'dir' : 'file', `${ptr}/destination`);
    // Binds get nosuid,nodev unless asked otherwise: a setuid binary or a
    // device node from the host must not grant anything inside.
    let attrSet = msToAttr(opts.flags) | MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV;
    if (opts.cleared & MS.NOSUID) attrSet &= ~MOUNT_ATTR.NOSUID;
    if (opts.cleared & MS.NODEV) attrSet &= ~MOUNT_ATTR.NODEV;
    const op: MountOp = { kind: OP.BIND, source, target, attrSet, propagation: opts.propagation, recursive: opts.recursive };
    b.add(op, `bind-mount ${source} -> ${target}`, dest, source);
    b.pushLayer(dest, source);
    return;
  }
  const target = b.target(dest, 'dir', `${ptr}/destination`);
  let flags = opts.flags;
  let data = opts.data;
  let fallback: string | undefined;
  let fallbackAttrs = 0;
  switch (type) {
    case 'proc':
      flags |= MS.NOSUID | MS.NODEV | MS.NOEXEC;
      fallback = '/proc';
      fallbackAttrs = MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV | MOUNT_ATTR.NOEXEC;
      break;
    case 'sysfs':
      flags |= MS.NOSUID | MS.NODEV | MS.NOEXEC;
      // Without a network namespace of our own the kernel refuses a fresh sysfs.
      fallback = '/sys';
      fallbackAttrs = msToAttr(flags) | MOUNT_ATTR.RDONLY;
      break;
    case 'devpts':
      // gid=N only works when N is mapped; with a single-ID map it is not.
      if (!ctx.mapsGid5) data = data.filter((d) => !d.startsWith('gid='));
      if (!data.includes('newinstance')) data.push('newinstance');
      break;
    case 'cgroup':
    case 'cgroup2':
      fallback = '/sys/fs/cgroup';
      fallbackAttrs = msToAttr(flags) | MOUNT_ATTR.NOSUID | MOUNT_ATTR.NODEV | MOUNT_ATTR.NOEXEC;
      break;
    case undefined:
      throw new SpecError(`${ptr}/type`, 'is required unless options contain bind or rbind');
  }
  const op: MountOp = {
    kind: OP.MOUNT, source: m.source ?? type, target, fstype: type, flags, data: data.join(',') || undefined,
    propagation: opts.propagation, fallback, attrSet: fallback ? fallbackAttrs : 0, recursive: !!fallback,
  };
  // attrSet only matters for the fallback bind (fresh mounts take flags).
  b.add(op, `mount ${type} on ${target}${op.data ? ` (${op.data})` : ''}`, dest, m.source);
  b.pushLayer(dest, type === 'proc' || type === 'sysfs' ? '/' + type.replace('fs', '') : undefined);
  if (dest === '/dev' && type === 'tmpfs') {
    for (const n of DEV_NODES) {
      const t = posix.join(target, n);
      b.add({ kind: OP.MKFILE, target: t, mode: 0o666 }, `create /dev/${n}`, `/dev/${n}`);
      // Device binds keep dev (that is their point) but not suid or exec.
      b.add({ kind: OP.BIND, source: `/dev/${n}`, target: t, attrSet: MOUNT_ATTR.NOSUID | MOUNT_ATTR.NOEXEC },
        `bind-mount /dev/${n} -> ${t}`, `/dev/${n}`, `/dev/${n}`);
    }
    for (const [to, name] of DEV_LINKS)
      b.add({ kind: OP.SYMLINK, source: to, target: posix.join(target, name) }, `symlink /dev/${name} -> ${to}`, `/dev/${name}`);
  }
}

function findExecutable(b: PlanBuilder, arg0: string, env: string[], cwd: string): string {
  const candidates: string[] = [];
  if (arg0.includes('/')) candidates.push(posix.resolve(cwd, arg0));
  else {
    const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
    for (const dir of pathVar.split(':')) if (dir.startsWith('/')) candidates.push(posix.join(dir, arg0));
  }
  for (const c of candidates) {
    const host = b.lookup(c);
    if (host === null) return c; // inside a tmpfs we create: cannot check, exec will tell
    try {
      const base = host === posix.join(b.rootfs, c) ? b.rootfs : undefined;
      const r = base ? resolveInRoot(base, c) : { stat: statSync(host), missing: [] as string[] };
      if (r.missing.length === 0 && r.stat?.isFile() && (r.stat.mode & 0o111) !== 0) return c;
    } catch { /* not this one */ }
  }
  const where = arg0.includes('/') ? `` : ` (searched PATH=${env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH})`;
  throw new SpecError('/process/args/0', `executable ${JSON.stringify(arg0)} not found in the image ${b.rootfs}${where}`);
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
  const ctx = { mapsGid5: idMode === IDMAP.NONE || isMapped(gidMaps, 5), bundleDir };
  (spec.mounts ?? []).forEach((m, i) => addMount(b, m, i, ctx));
  // Working directory: created like any other mount point when missing.
  const cwd = posix.normalize(proc.cwd);
  if (cwd !== '/') b.target(cwd, 'dir', '/process/cwd');
  for (const p of linux.maskedPaths ?? []) {
    const target = posix.join(rootfs, posix.normalize(p));
    b.add({ kind: OP.MASK, source: '/dev/null', target }, `mask ${p}`, p);
  }
  for (const p of linux.readonlyPaths ?? []) {
    const target = posix.join(rootfs, posix.normalize(p));
    b.add({ kind: OP.READONLY, target, attrSet: MOUNT_ATTR.RDONLY, recursive: true }, `make ${p} read-only`, p);
  }

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

