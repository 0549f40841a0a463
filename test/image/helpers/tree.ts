// A comparable description of a directory tree: what `umoci unpack` and
// nodularity produce must agree on every line of it.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  /** First path (in sorted order) sharing this inode, for files with nlink > 1. */
  hardlinkGroup?: string;
  /** Whole seconds. */
  mtime: number;
  rdev?: number;
}

function typeOf(st: fs.Stats): TreeEntry['type'] {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Walk `root` (not following links) into a map keyed by relative path. */
export function describeTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const inodes = new Map<string, string>();
  const walk = (rel: string): void => {
    const abs = rel ? path.join(root, rel) : root;
    const names = fs.readdirSync(abs).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const p = path.join(root, r);
      const st = fs.lstatSync(p);
      const e: TreeEntry = { type: typeOf(st), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
      if (e.type === 'file') {
        e.size = st.size;
        e.sha256 = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          if (!inodes.has(key)) inodes.set(key, r);
          e.hardlinkGroup = inodes.get(key)!;
        }
      }
      if (e.type === 'symlink') e.target = fs.readlinkSync(p);
      if (e.type === 'char' || e.type === 'block') e.rdev = st.rdev;
      out.set(r, e);
      if (e.type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

/** Lines of differences between two trees (empty when they match). */
export function diffTrees(a: Map<string, TreeEntry>, b: Map<string, TreeEntry>, options: { ignore?: (p: string) => boolean; fields?: (keyof TreeEntry)[] } = {}): string[] {
  const fields = options.fields ?? ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlinkGroup', 'rdev'];
  const diffs: string[] = [];
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const k of keys) {
    if (options.ignore?.(k)) continue;
    const x = a.get(k);
    const y = b.get(k);
    if (!x) { diffs.push(`only in second: ${k}`); continue; }
    if (!y) { diffs.push(`only in first: ${k}`); continue; }
    for (const f of fields) {
      if (x[f] !== y[f]) diffs.push(`${k}: ${f} ${typeof x[f] === 'number' && f === 'mode' ? (x[f] as number).toString(8) : String(x[f])} != ${typeof y[f] === 'number' && f === 'mode' ? (y[f] as number).toString(8) : String(y[f])}`);
    }
  }
  return diffs;
}
