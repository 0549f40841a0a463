// Stage "mounts": the spec's mounts, the working directory, masked and
// read-only paths -> the ordered op list the child interprets, every target
// resolved through a model of the layers (the image, binds, fresh file
// systems) to the canonical container path the child opens without
// following symlinks; the mount points an overlay root must provide.
import { statSync } from 'node:fs';
import { constants as osc } from 'node:os';
import { posix, resolve as resolvePath } from 'node:path';
import { SpecError } from '../errors.js';
import type { Mount, Spec } from '../oci/spec.js';
import { planDevices } from './attrs.js';
import type { PlannedOp } from './describe.js';
import { MOUNT_ATTR, MS } from './flags.js';
import { ATIME_MASK, OPTION_TABLE, parseOptions } from './mount-options.js';
import { resolveLayered, type LayerHit, type LayeredResolved } from './resolve.js';
import { OP, RESOLVE, type MountOp } from './types.js';

/** mount(2) errnos after which an op with a fallback binds it instead: EPERM, EACCES, EBUSY. */
const FALLBACK_ERRNOS = (1 << osc.errno.EPERM) | (1 << osc.errno.EACCES) | (1 << osc.errno.EBUSY);

interface Layer {
  dest: string; // container path
  hostDir?: string; // bind source (or the image); undefined for a fresh (empty) file system
  kind: 'image' | 'bind' | 'fresh' | 'kernel'; // kernel: proc/sysfs, modelled by the host's
  what: string; // for messages: "the image", "the bind of /home/u", "the tmpfs on /dev"
}

function under(path: string, dir: string): string | undefined {
  if (dir === '/') return path;
  if (path === dir) return '/';
  if (path.startsWith(dir + '/')) return path.slice(dir.length);
  return undefined;
}

/** Mount points whose symlink in the image runc refuses: following it would mount the kernel's trees elsewhere. */
const NO_SYMLINK_DESTS = ['/proc', '/sys', '/dev'];

export class PlanBuilder {
  /** The ops in order, each with what names it in an error message. */
  readonly entries: PlannedOp[] = [];
  /** What would be created in the image itself (missing mount points), rootfs-relative, parents first; '/' ends a dir. */
  readonly imageCreates: string[] = [];
  private layers: Layer[];
  /** Container paths an op creates inside a file system we mount (a tmpfs has no host path to lstat). */
  private created = new Set<string>();

  constructor(readonly rootfs: string) {
    this.layers = [{ dest: '/', hostDir: rootfs, kind: 'image', what: 'the image' }];
  }

  add(op: MountOp, what: string, target: string, source?: string): void {
    this.entries.push({ op, what, target, source });
  }

  get ops(): MountOp[] {
    return this.entries.map((e) => e.op);
  }

  /** The innermost layer covering a container path, and its host path there. */
  private hit = (path: string): LayerHit => {
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const l = this.layers[i];
      const rest = under(path, l.dest);
      if (rest === undefined) continue;
      // A mount point made earlier inside a tmpfs of ours (the parents of a
      // bind under a fresh /tmp) exists by then: a known entry, not missing.
      if (l.hostDir === undefined && rest !== '/' && this.created.has(path)) return { layer: i, isMountRoot: true };
      return {
        layer: i,
        host: l.hostDir === undefined ? undefined : rest === '/' ? l.hostDir : posix.join(l.hostDir, rest),
        isMountRoot: i > 0 && rest === '/',
      };
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
      throw new SpecError(
        ptr,
        `${dest} is a symlink in the image (${r.links[0]}): refused (ELOOP), a kernel file system is never mounted through a symlink`,
      );
    if (!r.missing.length) return r.containerPath;
    const layer = this.layers[r.layer];
    // A missing mount point is created where the plan says: in the image (or
    // its overlay), in a file system we mount, or in a bind's host directory
    // when the spec's own path leads there. An image symlink that redirects the
    // creation into a host directory would write on the host: refuse it.
    if (layer.kind === 'bind' && r.links.length)
      throw new SpecError(
        ptr,
        `${dest} resolves through a symlink of the image (${r.links.join(', ')}) to ${r.missing[0]}, inside ${layer.what}: refusing to create it on the host (EXDEV)`,
      );
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
    this.created.add(dest);
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

function addMount(
  b: PlanBuilder,
  m: Mount,
  i: number,
  ctx: { mapsGid5: boolean; bundleDir: string; allowHostProc: boolean },
): void {
  const ptr = `/mounts/${i}`;
  // normalize keeps a trailing slash ('/proc/'), which would slip past the /proc, /sys, /dev checks.
  const dest = posix.normalize(m.destination).replace(/(.)\/+$/, '$1');
  const opts = parseOptions(m.options, `${ptr}/options`);
  const type = m.type ?? (opts.bind ? 'bind' : undefined);
  if (type === 'bind' || opts.bind) {
    if (!m.source) throw new SpecError(`${ptr}/source`, 'a bind mount needs a source');
    if (opts.notForBind) {
      const [p, o] = opts.notForBind;
      throw new SpecError(
        p,
        `mount option ${JSON.stringify(o)} cannot be applied to a bind mount (known: ${Object.keys(OPTION_TABLE)
          .filter((k) => OPTION_TABLE[k].attr)
          .join(', ')}, their r-prefixed recursive forms, propagation, bind, rbind)`,
      );
    }
    const source = resolvePath(ctx.bundleDir, m.source);
    let st;
    try {
      st = statSync(source);
    } catch (e) {
      throw new SpecError(
        `${ptr}/source`,
        `bind source ${source} does not exist (${(e as NodeJS.ErrnoException).code})`,
      );
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
      kind: OP.BIND,
      source,
      target,
      attrSet,
      attrClr,
      rattrSet: opts.rattrSet,
      rattrClr: opts.rattrClr,
      propagation: opts.propagation,
      recursive: opts.recursive,
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
    kind: OP.MOUNT,
    source: m.source ?? type,
    target,
    fstype: type,
    flags,
    data: data.join(',') || undefined,
    propagation: opts.propagation,
    fallback,
    attrSet: fallback ? fallbackAttrs : 0,
    recursive: !!fallback,
    rattrSet: opts.rattrSet,
    rattrClr: opts.rattrClr,
    // Refused by the kernel (a locked /proc, sysfs without our own netns): bind instead.
    fallbackErrnos: fallback ? FALLBACK_ERRNOS : undefined,
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
      b.add(
        { kind: OP.BIND, source: t, target: t, attrSet: MOUNT_ATTR.NOSUID | MOUNT_ATTR.NOEXEC },
        `bind-mount ${t} -> ${t}`,
        t,
        t,
      );
    }
    for (const [to, name] of DEV_LINKS)
      b.add({ kind: OP.SYMLINK, source: to, target: `/dev/${name}` }, `symlink /dev/${name} -> ${to}`, `/dev/${name}`);
  }
}

export interface MountContext {
  /** gid 5 exists in the container (devpts gid=5 is kept). */
  mapsGid5: boolean;
  /** Directory relative bind sources are relative to. */
  bundleDir: string;
  allowHostProc: boolean;
  /** linux.devices made with mknod (root outside any user namespace) rather than bound from the host. */
  mknodDevices?: boolean;
}

/** The mount ops of a spec over the image at rootfs, and the canonical cwd. */
export function planMounts(spec: Spec, rootfs: string, ctx: MountContext): { b: PlanBuilder; cwd: string } {
  const linux = spec.linux ?? {};
  // Mounts, in spec order, then masked and read-only paths.
  const b = new PlanBuilder(rootfs);
  (spec.mounts ?? []).forEach((m, i) => addMount(b, m, i, ctx));
  const devTmpfs = (spec.mounts ?? []).some(
    (m) => m.type === 'tmpfs' && posix.normalize(m.destination).replace(/(.)\/+$/, '$1') === '/dev',
  );
  planDevices(b, spec, ctx.mknodDevices === true, devTmpfs);
  // Working directory: created like any other mount point when missing.
  const cwd = posix.normalize(spec.process!.cwd);
  if (cwd !== '/') b.target(cwd, 'dir', '/process/cwd');
  // Masked and read-only paths name container paths as such: the child
  // resolves them inside the root (symlinks followed there, never on the
  // host) after every mount above, and skips the missing ones.
  (linux.maskedPaths ?? []).forEach((p, i) => {
    if (typeof p !== 'string' || !p.startsWith('/'))
      throw new SpecError(`/linux/maskedPaths/${i}`, 'must be an absolute path');
    const target = posix.normalize(p);
    b.add(
      { kind: OP.MASK, source: '/dev/null', target, resolve: RESOLVE.FOLLOW, skipMissing: true },
      `mask ${p}`,
      target,
    );
  });
  (linux.readonlyPaths ?? []).forEach((p, i) => {
    if (typeof p !== 'string' || !p.startsWith('/'))
      throw new SpecError(`/linux/readonlyPaths/${i}`, 'must be an absolute path');
    const target = posix.normalize(p);
    b.add(
      {
        kind: OP.READONLY,
        target,
        attrSet: MOUNT_ATTR.RDONLY,
        recursive: true,
        resolve: RESOLVE.FOLLOW,
        skipMissing: true,
      },
      `make ${p} read-only`,
      target,
    );
  });
  return { b, cwd };
}

export type { PlannedOp };
