// Sweep the cache's tmp/ of what killed pulls left: a docker-archive pull
// stages the whole archive there (hundreds of MB) and a SIGKILL leaves it.
//
// An entry is removed only when all of these hold:
//  - its name is one our code makes with the maker's pid in it
//    (`archive-PID-*`, `blob-PID-*`, `unpack-HEX16-PID-*`);
//  - that pid is dead (kill(pid, 0) says ESRCH; EPERM means alive);
//  - it is a real directory or file (lstat: never a symlink), owned by the
//    caller, in a tmp/ that is a real directory owned by the caller and not
//    writable by others;
//  - neither it nor anything directly in it changed for STALE_MS: a pid that
//    is dead here may be alive in another pid namespace sharing the cache
//    (a pull inside a container), and a live pull writes its staging files.
// Removal never follows a symlink (fs.rm unlinks links; directories are
// opened with lstat checks by removeTree). Failures are ignored: a sweep is
// housekeeping and must never fail a pull.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { removeTree } from './unpack.js';

/** How long an entry of a dead pid must have been left alone. */
export const STALE_MS = 60_000;

const PATTERNS = [/^archive-(\d+)-/, /^blob-(\d+)-/, /^unpack-[0-9a-f]{16}-(\d+)-/];

/** The pid embedded in a temp entry's name, if it is one of ours. */
export function tempOwnerPid(name: string): number | undefined {
  for (const re of PATTERNS) {
    const m = re.exec(name);
    if (m) {
      const pid = Number(m[1]);
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    }
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Newest mtime of `p` and, for a directory, of what is directly in it (never following links). */
async function newestChange(p: string, isDir: boolean, mtimeMs: number): Promise<number> {
  let newest = mtimeMs;
  if (!isDir) return newest;
  for (const n of await fsp.readdir(p)) {
    try {
      newest = Math.max(newest, (await fsp.lstat(path.join(p, n))).mtimeMs);
    } catch {
      /* gone meanwhile */
    }
  }
  return newest;
}

/**
 * Remove the stale temp entries of dead pulls from `cacheDir/tmp`; returns
 * the names removed. Never throws.
 */
export async function sweepDeadTemps(cacheDir: string, now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  const uid = process.getuid?.() ?? 0;
  const tmp = path.join(cacheDir, 'tmp');
  try {
    const st = await fsp.lstat(tmp);
    if (!st.isDirectory() || st.uid !== uid || st.mode & 0o022) return removed;
    for (const name of await fsp.readdir(tmp)) {
      const pid = tempOwnerPid(name);
      if (pid === undefined || pidAlive(pid)) continue;
      const p = path.join(tmp, name);
      try {
        const e = await fsp.lstat(p);
        if (e.uid !== uid || !(e.isDirectory() || e.isFile())) continue;
        if (now - (await newestChange(p, e.isDirectory(), e.mtimeMs)) < STALE_MS) continue;
        if (e.isDirectory()) await removeTree(p);
        else await fsp.unlink(p);
        removed.push(name);
      } catch {
        /* raced with its owner or another sweep: leave it */
      }
    }
  } catch {
    /* no tmp/ yet, or unreadable: nothing to sweep */
  }
  return removed;
}
