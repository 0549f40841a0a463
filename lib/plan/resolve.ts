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
  const pending = containerPath.split('/').filter(Boolean);
  const done: string[] = [];
  let links = 0;
  let stat: Stats | undefined;
  while (pending.length) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = posix.join(root, ...done, part);
    let st: Stats | undefined;
    try {
      st = lstatSync(host);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
    }
    if (!st) {
      // Everything from here on is missing; no more links to follow.
      const missing: string[] = [];
      done.push(part);
      missing.push('/' + done.join('/'));
      for (const rest of pending) {
        if (rest === '.' || rest === '..' || rest === '') continue;
        done.push(rest);
        missing.push('/' + done.join('/'));
      }
      return { hostPath: posix.join(root, ...done), containerPath: '/' + done.join('/'), missing };
    }
    if (st.isSymbolicLink()) {
      if (++links > MAX_LINKS) {
        const err = new Error(`too many levels of symbolic links resolving ${containerPath}`) as NodeJS.ErrnoException;
        err.code = 'ELOOP';
        throw err;
      }
      const target = readlinkSync(host);
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...target.split('/').filter(Boolean));
      continue;
    }
    done.push(part);
    stat = st;
  }
  return {
    hostPath: done.length ? posix.join(root, ...done) : root,
    containerPath: '/' + done.join('/'),
    stat: done.length ? stat : lstatSync(root),
    missing: [],
  };
}
