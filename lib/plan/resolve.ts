// Symlink-safe path resolution inside a rootfs, in the manner of crun's
// chroot_realpath and Go's securejoin: absolute link targets restart at the
// rootfs, ".." stops at it, so no spec or image can make us act on a host
// path outside it.
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { posix } from 'node:path';

const MAX_LINKS = 40;

export interface Resolved {
  /** Host path of the resolved location (inside root). */
  hostPath: string;
  /** Container path it stands for, with every symlink followed. */
  containerPath: string;
  /** lstat of the final component, or undefined when it does not exist. */
  stat?: Stats;
  /** Container paths of the components that do not exist yet, outermost first. */
  missing: string[];
}

/**
 * Resolve a container path inside `root` (an absolute host directory). The
 * final component is followed too when it is a symlink, as a mount would.
 * Throws with `.code === 'ELOOP'` after 40 links.
 */
export function resolveInRoot(root: string, containerPath: string): Resolved {
  // One layer: the whole path lives in root.
  const r = resolveLayered(containerPath, (p) => ({ layer: 0, host: posix.join(root, p), isMountRoot: false }));
  const hostPath = r.containerPath === '/' ? root : posix.join(root, r.containerPath);
  return {
    hostPath,
    containerPath: r.containerPath,
    stat: r.missing.length ? undefined : (r.stat ?? lstatSync(root)),
    missing: r.missing,
  };
}

/** Where a container path lives at one point of the mount sequence. */
export interface LayerHit {
  /** Index of the covering layer (0 is the image). */
  layer: number;
  /** Host path of the entry, or undefined inside a file system the runtime mounts (empty at mount time). */
  host?: string;
  /** The path is the layer's own mount point (its root: a directory or the bound file, never a symlink). */
  isMountRoot: boolean;
}

export interface LayeredResolved {
  /** Canonical container path: every symlink followed, through every layer. */
  containerPath: string;
  /** Canonical container paths of the components that do not exist yet, outermost first. */
  missing: string[];
  /** lstat of the final component when it exists on a host path. */
  stat?: Stats;
  /** The layer the final component (or the first missing one) lives in. */
  layer: number;
  /** Symlinks followed on the way, as "container path -> target". */
  links: string[];
}

/**
 * Resolve a container path the way the kernel will see it inside the new
 * root after the earlier mounts: components are looked up in whichever layer
 * (the image, a bind's host directory, a fresh file system) covers them, and
 * a symlink restarts the walk at the container root (absolute) or its
 * directory (relative), which may be in another layer. The child then opens
 * the canonical result with RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS, so the plan
 * and the child agree or the launch fails with ELOOP.
 */
export function resolveLayered(containerPath: string, hit: (containerPath: string) => LayerHit): LayeredResolved {
  const pending = containerPath.split('/').filter(Boolean);
  const done: string[] = [];
  const links: string[] = [];
  let stat: Stats | undefined;
  let layer = hit('/').layer;
  while (pending.length) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const next = '/' + [...done, part].join('/');
    const h = hit(next);
    layer = h.layer;
    let st: Stats | undefined;
    if (h.isMountRoot) {
      done.push(part);
      stat = undefined;
      continue;
    }
    if (h.host !== undefined) {
      try {
        st = lstatSync(h.host);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
      }
    }
    if (!st) {
      const missing: string[] = [];
      done.push(part);
      missing.push('/' + done.join('/'));
      for (const rest of pending) {
        if (rest === '.' || rest === '') continue;
        if (rest === '..') {
          const err = new Error(
            `\`..\` after the missing component ${missing[0]} of ${containerPath}`,
          ) as NodeJS.ErrnoException;
          err.code = 'ENOENT';
          throw err;
        }
        done.push(rest);
        missing.push('/' + done.join('/'));
      }
      return { containerPath: '/' + done.join('/'), missing, layer, links };
    }
    if (st.isSymbolicLink()) {
      if (links.length >= MAX_LINKS) {
        const err = new Error(`too many levels of symbolic links resolving ${containerPath}`) as NodeJS.ErrnoException;
        err.code = 'ELOOP';
        throw err;
      }
      const target = readlinkSync(h.host!);
      links.push(`${next} -> ${target}`);
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...target.split('/').filter(Boolean));
      continue;
    }
    done.push(part);
    stat = st;
  }
  return { containerPath: '/' + done.join('/'), missing: [], stat, layer, links };
}
