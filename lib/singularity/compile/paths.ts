// Helpers the compile stages share: the mount entries they make, option path
// checks, and what the image (resolved inside it, never through the host's
// symlinks) and the planned mounts hold at a container path.
import { statSync } from 'node:fs';
import { isAbsolute, posix } from 'node:path';
import { SpecError } from '../../errors.js';
import type { Mount } from '../../oci/spec.js';
import { resolveInRoot } from '../../plan/resolve.js';

/** A recursive bind, slave to the host's propagation, read-only when asked. */
export function bind(source: string, destination: string, readonly = false): Mount {
  return { destination, source, type: 'bind', options: ['rbind', 'rslave', readonly ? 'ro' : 'rw'] };
}

/** A fresh tmpfs of the given mode. */
export function tmpfs(destination: string, mode: string): Mount {
  return { destination, source: 'tmpfs', type: 'tmpfs', options: ['nosuid', 'nodev', `mode=${mode}`] };
}

/** Refuse a relative path, naming the option. */
export function checkAbsolute(option: string, p: string | undefined): void {
  if (p !== undefined && !isAbsolute(p)) throw new SpecError(option, `${JSON.stringify(p)} must be an absolute path`);
}

/** `p` when it is an existing host directory; else a SpecError naming the option. */
export function existingDir(option: string, p: string): string {
  let st;
  try {
    st = statSync(p);
  } catch (e) {
    throw new SpecError(option, `${p} does not exist (${(e as NodeJS.ErrnoException).code})`);
  }
  if (!st.isDirectory()) throw new SpecError(option, `${p} is not a directory`);
  return p;
}

const SYSTEM_DIRS = [
  '/',
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/sys',
  '/usr',
  '/var',
];

/** A host directory the image has its own of, never bound as the working directory. */
export function isSystemDir(p: string): boolean {
  return (
    SYSTEM_DIRS.includes(p) ||
    ['/proc/', '/sys/', '/dev/', '/etc/', '/usr/', '/boot/', '/run/'].some((d) => p.startsWith(d))
  );
}

/** Host path of `p` resolved inside the image, when it is a `kind`. */
export function imagePath(rootfs: string, p: string, kind: 'file' | 'dir'): string | undefined {
  try {
    const r = resolveInRoot(rootfs, p);
    if (r.missing.length || !r.stat) return undefined;
    return (kind === 'file' ? r.stat.isFile() : r.stat.isDirectory()) ? r.hostPath : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the image has `p` as a file or directory, resolved inside the image
 * (its symlinks restart at the image root, never at the host's).
 */
export function imageHas(rootfs: string, p: string, kind: 'file' | 'dir'): boolean {
  return imagePath(rootfs, p, kind) !== undefined;
}

/** Whether `p` is an executable regular file of the image (resolved inside it). */
export function imageExecutable(rootfs: string, p: string): boolean {
  const h = imagePath(rootfs, p, 'file');
  if (!h) return false;
  try {
    return (statSync(h).mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Whether a container path is a directory once the mounts are in place (the innermost mount covering it decides). */
export function dirInContainer(rootfs: string, mounts: readonly Mount[], p: string): boolean {
  for (let i = mounts.length - 1; i >= 0; i--) {
    const m = mounts[i];
    const d = posix.normalize(m.destination);
    const rest = p === d ? '' : p.startsWith(d === '/' ? '/' : d + '/') ? p.slice(d.length) : undefined;
    if (rest === undefined) continue;
    if (m.type !== 'bind' && !m.options?.includes('bind') && !m.options?.includes('rbind')) return rest === '';
    try {
      const r = resolveInRoot(m.source!, rest || '/');
      return r.missing.length === 0 && !!r.stat?.isDirectory();
    } catch {
      return false;
    }
  }
  return imageHas(rootfs, p, 'dir');
}
