// The image cache: content-addressed blobs and unpacked roots.
//
//   $NODULARITY_CACHE/            (default: $XDG_CACHE_HOME/nodularity)
//     blobs/ALG/HEX               verified layer/manifest/config blobs from registries
//     roots/ALG/HEX/              one unpacked image per platform manifest digest
//       rootfs/                   the tree a container runs
//       image.json                manifest digest, source, manifest, config, stats
//     aliases/ALG/HEX@OS-ARCH     index digest -> platform manifest digest
//     locks/ALG-HEX               lock files (proper-lockfile makes NAME.lock dirs)
//     tmp/                        work in progress; same filesystem, so rename() is atomic
//
// A root only ever appears by rename() of a complete temp directory, so a
// killed puller leaves at worst a tmp/ entry, never a half root that a later
// pull would use. The per-digest lock only avoids doing the work twice.
//
// Trust. What the cache holds is run, often by root, and `cache clean`
// deletes in it: a cache that someone else can write into is a way to make
// root run a planted tree (roots/ALG/HEX in a 1777 cache dir) or delete
// through a planted symlink (tmp -> /etc). So the cache directory and every
// directory and file of its own structure (roots/, roots/ALG/, the entry
// dirs and their image.json, blobs/, tmp/, ...) are used only when they are
// owned by the caller or root and writable by no one else (group and other
// write bits clear, sticky or not), and are not symbolic links (the cache
// directory itself may be one, to a directory that passes). Anything else is
// refused, naming the path; nothing is repaired or deleted. Then no one but
// the caller and root can rename, replace or add anything on the paths the
// cache uses, so lstat-then-use has no race another user can win, and the
// removal walk (fs.rm: lstat, symlinks unlinked, never followed) stays
// inside. Inside an entry the image's own tree has any owners and modes;
// the entry dir is 0700 (mkdtemp), so no one else reaches it. The cache's
// ancestors are not checked: they are the caller's choice, as for ssh keys.
// Apptainer and podman keep a cache per user; root cleaning a user's cache
// is refused too (do it as that user), rather than trusting the user's tree.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Transform, type TransformCallback } from 'node:stream';
import * as lockfile from 'proper-lockfile';
import { DigestVerifier, parseDigest } from './digest.js';
import { ImageError } from './errors.js';
import type { Platform } from './manifest.js';
import { removeTree, type UnpackStats } from './unpack.js';

/** Metadata stored next to each unpacked root. */
export interface CachedImageMeta {
  manifestDigest: string;
  source: string;
  /** ISO time of the unpack. */
  unpacked: string;
  manifest: unknown;
  /** The raw image config JSON object. */
  config: unknown;
  stats: UnpackStats;
  /** uid that unpacked it: ownership semantics differ between root and users. */
  unpackedBy: number;
}

/** A complete entry in the cache. */
export interface CachedImage {
  manifestDigest: string;
  /** Entry directory (holds rootfs/ and image.json). */
  dir: string;
  rootfs: string;
  meta: CachedImageMeta;
}

/** `$NODULARITY_CACHE`, else `$XDG_CACHE_HOME/nodularity`, else `~/.cache/nodularity`. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NODULARITY_CACHE) return path.resolve(env.NODULARITY_CACHE);
  const xdg = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(env.HOME || os.homedir(), '.cache');
  return path.join(xdg, 'nodularity');
}

// A lock whose holder stopped refreshing it for this long is taken over:
// that is how a puller killed with SIGKILL stops blocking the next one.
const LOCK_STALE_MS = 5000;
const LOCK_UPDATE_MS = 1000;

/** Hashes a stream of unknown digest while it is written to a file. */
class Sha256Tap extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Directories the cache makes: only the caller gets in (umask 002 would make them group-writable). */
const DIR_MODE = 0o700;

/** A part of the cache that this process must not use: someone else could have written it. */
export class UntrustedCacheError extends ImageError {
  /** The path at fault. */
  readonly path: string;
  constructor(p: string, reason: string, hint = '') {
    super('CACHE', `cache ${p}: ${reason}; refusing to use it (the cache, and each directory and file of its own, must belong to you or root and be writable by no one else${hint})`);
    this.path = p;
  }
}

/** Why `st` (of `p`) may not be trusted by `euid`, or undefined when it may. */
function distrust(st: fs.Stats, kind: 'dir' | 'file', euid: number): string | undefined {
  if (st.isSymbolicLink()) return 'is a symbolic link';
  if (kind === 'dir' && !st.isDirectory()) return 'is not a directory';
  if (kind === 'file' && !st.isFile()) return 'is not a regular file';
  if (st.uid !== euid && st.uid !== 0) return `is owned by uid ${st.uid}, not by you (uid ${euid}) or root`;
  if (st.mode & 0o022) return `is writable by ${st.mode & 0o020 ? 'group' : ''}${(st.mode & 0o022) === 0o022 ? ' and ' : ''}${st.mode & 0o002 ? 'others' : ''} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
  return undefined;
}

/** Handle on one cache directory. Cheap to create; creates directories lazily. */
export class ImageCache {
  readonly dir: string;

  constructor(dir: string = defaultCacheDir()) {
    this.dir = path.resolve(dir);
  }

  private sub(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /**
   * Check the cache directory and `parts` below it, one component at a
   * time, against the trust rule above; the last one is a `kind`. Returns
   * false when a component does not exist (nothing to trust yet), throws
   * {@link UntrustedCacheError} for one that may not be used.
   */
  private async trust(parts: string[], kind: 'dir' | 'file' = 'dir', hint = ''): Promise<boolean> {
    const euid = process.geteuid!();
    let st: fs.Stats;
    try {
      // The cache directory itself may be a symlink the caller made (to a scratch disk): judge its target.
      st = await fsp.stat(this.dir);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return false;
      throw new ImageError('CACHE', `cache ${this.dir}: ${(err as Error).message}`, { cause: err });
    }
    const top = distrust(st, parts.length ? 'dir' : kind, euid);
    if (top) throw new UntrustedCacheError(this.dir, top, hint);
    let p = this.dir;
    for (let i = 0; i < parts.length; i++) {
      p = path.join(p, parts[i]!);
      try {
        st = await fsp.lstat(p);
      } catch (err) {
        if (errCode(err) === 'ENOENT') return false;
        throw new ImageError('CACHE', `cache ${p}: ${(err as Error).message}`, { cause: err });
      }
      const why = distrust(st, i === parts.length - 1 ? kind : 'dir', euid);
      if (why) throw new UntrustedCacheError(p, why, hint);
    }
    return true;
  }

  /** Make the directory `parts` (0700, like everything the cache makes) after checking what exists of it. */
  private async ensureDir(...parts: string[]): Promise<string> {
    await this.trust(parts);
    const p = this.sub(...parts);
    await fsp.mkdir(p, { recursive: true, mode: DIR_MODE });
    await this.trust(parts);
    return p;
  }

  /** Path a blob has (or would have) in the cache. */
  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return this.sub('blobs', algorithm, hex);
  }

  /** Whether a trusted copy of the blob is in the cache (an untrusted one throws). */
  async hasBlob(digest: string): Promise<boolean> {
    const { algorithm, hex } = parseDigest(digest);
    return await this.trust(['blobs', algorithm, hex], 'file');
  }

  /** Drop a blob found to be corrupt, so the next pull fetches it again. */
  async dropBlob(digest: string): Promise<void> {
    const { algorithm } = parseDigest(digest);
    if (!(await this.trust(['blobs', algorithm]))) return;
    await fsp.rm(this.blobPath(digest), { force: true });
  }

  /** A fresh private directory under tmp/ (same filesystem as the entries). */
  async makeTemp(prefix: string): Promise<string> {
    await this.ensureDir('tmp');
    return await fsp.mkdtemp(this.sub('tmp', `${prefix}-${process.pid}-`));
  }

  /**
   * Store a blob of known digest, verifying it while it streams. The blob
   * becomes visible only once complete and verified (rename), so a reader
   * never sees a partial or corrupt blob; on any error nothing is left.
   */
  async ingestBlob(digest: string, size: number | undefined, source: Readable, what = 'blob'): Promise<string> {
    const final = this.blobPath(digest);
    await this.ensureDir('blobs', parseDigest(digest).algorithm);
    await this.ensureDir('tmp');
    const tmp = this.sub('tmp', `blob-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await pipeline(source, new DigestVerifier(digest, size === undefined ? { what } : { size, what }), fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
      await fsp.rename(tmp, final);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    return final;
  }

  /** Write a stream to a file under `dir`, returning its sha256 digest and size. */
  static async writeHashed(source: Readable, file: string): Promise<{ digest: string; size: number }> {
    const tap = new Sha256Tap();
    await pipeline(source, tap, fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    return { digest: `sha256:${tap.hash.digest('hex')}`, size: tap.bytes };
  }

  /** Entry directory for a manifest digest (whether or not it exists). */
  entryDir(manifestDigest: string): string {
    const { algorithm, hex } = parseDigest(manifestDigest, 'manifest digest');
    return this.sub('roots', algorithm, hex);
  }

  /**
   * The cached image for a manifest digest, if a complete one exists.
   * @throws UntrustedCacheError when it, or the cache on the way to it, could have been written by someone else
   */
  async lookup(manifestDigest: string): Promise<CachedImage | undefined> {
    const dir = this.entryDir(manifestDigest);
    const { algorithm, hex } = parseDigest(manifestDigest, 'manifest digest');
    if (!(await this.trust(['roots', algorithm, hex]))) return undefined;
    if (!(await this.trust(['roots', algorithm, hex, 'image.json'], 'file'))) return undefined;
    // The rootfs may have the image's own mode (the entry dir keeps others out), but it is not a link.
    const rootfs = await fsp.lstat(path.join(dir, 'rootfs')).catch(() => undefined);
    if (rootfs && !rootfs.isDirectory()) throw new UntrustedCacheError(path.join(dir, 'rootfs'), 'is not a directory');
    let meta: CachedImageMeta;
    try {
      meta = JSON.parse(await fsp.readFile(path.join(dir, 'image.json'), 'utf8')) as CachedImageMeta;
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw new ImageError('CACHE', `cache entry ${dir}: unreadable image.json (${(err as Error).message}); remove it with \`nodularity cache clean\``, { cause: err });
    }
    return { manifestDigest, dir, rootfs: path.join(dir, 'rootfs'), meta };
  }

  private aliasPath(indexDigest: string, platform: Platform): string {
    const { algorithm, hex } = parseDigest(indexDigest, 'index digest');
    const p = `${platform.os}-${platform.architecture}${platform.variant ? '-' + platform.variant : ''}`.replace(/[^a-zA-Z0-9_.-]/g, '_');
    return this.sub('aliases', algorithm, `${hex}@${p}`);
  }

  /** Remember which platform manifest an index resolved to, so a digest pull of the index needs no network. */
  async writeAlias(indexDigest: string, platform: Platform, manifestDigest: string): Promise<void> {
    const file = this.aliasPath(indexDigest, platform);
    await this.ensureDir('aliases', parseDigest(indexDigest).algorithm);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    await fsp.writeFile(tmp, manifestDigest + '\n');
    await fsp.rename(tmp, file);
  }

  async readAlias(indexDigest: string, platform: Platform): Promise<string | undefined> {
    const file = this.aliasPath(indexDigest, platform);
    if (!(await this.trust(['aliases', parseDigest(indexDigest).algorithm, path.basename(file)], 'file'))) return undefined;
    try {
      const d = (await fsp.readFile(this.aliasPath(indexDigest, platform), 'utf8')).trim();
      parseDigest(d);
      return d;
    } catch {
      return undefined;
    }
  }

  /**
   * Run `fn` holding the lock for `manifestDigest`. Waits for another holder
   * (polling) and takes over a stale lock left by a killed process. Also
   * removes tmp/ leftovers of earlier holders for this digest, which can only
   * belong to processes that lost the lock.
   */
  async withLock<T>(manifestDigest: string, fn: () => Promise<T>): Promise<T> {
    const { algorithm, hex } = parseDigest(manifestDigest, 'manifest digest');
    const locks = await this.ensureDir('locks');
    const target = path.join(locks, `${algorithm}-${hex}`);
    let compromised: Error | undefined;
    const release = await lockfile.lock(target, {
      realpath: false,
      stale: LOCK_STALE_MS,
      update: LOCK_UPDATE_MS,
      // A pull can take minutes; wait as long as the holder keeps the lock fresh.
      retries: { retries: 100000, factor: 1.2, minTimeout: 50, maxTimeout: 500 },
      onCompromised: (err) => { compromised = err; },
    });
    try {
      await this.removeLeftovers(`unpack-${hex.slice(0, 16)}`);
      const out = await fn();
      if (compromised) throw new ImageError('CACHE', `lock for ${manifestDigest} was lost while unpacking (${compromised.message})`, { cause: compromised });
      return out;
    } finally {
      await release().catch(() => undefined);
    }
  }

  private async removeLeftovers(prefix: string): Promise<void> {
    if (!(await this.trust(['tmp']))) return;
    let names: string[];
    try { names = await fsp.readdir(this.sub('tmp')); } catch { return; }
    for (const n of names) if (n.startsWith(prefix + '-')) await removeTree(this.sub('tmp', n));
  }

  /**
   * Publish a complete temp directory (rootfs/ + image.json) as the entry for
   * its manifest digest. If an entry appeared meanwhile (a puller that did not
   * use the lock), ours is discarded and theirs kept: both are complete.
   */
  async commit(tmpDir: string, manifestDigest: string): Promise<string> {
    const dir = this.entryDir(manifestDigest);
    await this.ensureDir('roots', parseDigest(manifestDigest).algorithm);
    try {
      await fsp.rename(tmpDir, dir);
    } catch (err) {
      if (errCode(err) !== 'ENOTEMPTY' && errCode(err) !== 'EEXIST') throw err;
      await removeTree(tmpDir);
    }
    return dir;
  }

  /** All complete entries, by manifest digest. @throws UntrustedCacheError as lookup() */
  async list(hint = ''): Promise<CachedImage[]> {
    const out: CachedImage[] = [];
    if (!(await this.trust(['roots'], 'dir', hint))) return out;
    for (const alg of await fsp.readdir(this.sub('roots'))) {
      await this.trust(['roots', alg], 'dir', hint);
      for (const hex of await fsp.readdir(this.sub('roots', alg))) {
        const digest = `${alg}:${hex}`;
        try {
          const hit = await this.lookup(digest);
          if (hit) out.push(hit);
        } catch (err) {
          if (err instanceof UntrustedCacheError) throw err;
          /* a foreign file in roots/: not ours to list */
        }
      }
    }
    return out;
  }

  /**
   * Check every directory of the cache's own structure (and the entries'
   * image.json) before clean() deletes anything, so that a cache with one
   * planted link or foreign directory is refused whole, untouched.
   */
  private async trustAll(hint: string): Promise<void> {
    if (!(await this.trust([], 'dir', hint))) return;
    for (const top of ['roots', 'blobs', 'aliases', 'tmp', 'locks']) {
      if (!(await this.trust([top], 'dir', hint))) continue;
      if (top === 'tmp' || top === 'locks') continue; // their entries are the caller's own temp dirs, removed without following
      for (const alg of await fsp.readdir(this.sub(top))) {
        await this.trust([top, alg], 'dir', hint);
        if (top !== 'roots') continue;
        for (const hex of await fsp.readdir(this.sub(top, alg))) await this.trust([top, alg, hex], 'dir', hint);
      }
    }
  }

  /**
   * Remove cached images (all, or those given), their aliases, all blobs and
   * temp leftovers of dead processes. Entries are removed under their lock, so
   * a concurrent pull of the same image either finishes first or starts after.
   */
  async clean(options: { digests?: string[] } = {}): Promise<{ removed: string[]; bytesFreed: number }> {
    const removed: string[] = [];
    let bytesFreed = 0;
    const hint = `; clean a cache as its owner, e.g. \`runuser -u USER -- nodularity cache clean --cache ${this.dir}\``;
    await this.trustAll(hint);
    const targets = options.digests ?? (await this.list(hint)).map((e) => e.manifestDigest);
    for (const digest of targets) {
      await this.withLock(digest, async () => {
        const dir = this.entryDir(digest);
        bytesFreed += await duBytes(dir);
        const { algorithm, hex } = parseDigest(digest, 'manifest digest');
        if (!(await this.trust(['roots', algorithm, hex], 'dir', hint))) return;
        await this.ensureDir('tmp');
        const parked = this.sub('tmp', `clean-${process.pid}-${randomBytes(4).toString('hex')}`);
        // Rename first so that the entry disappears atomically, then delete at leisure.
        try { await fsp.rename(dir, parked); } catch (err) { if (errCode(err) === 'ENOENT') return; throw err; }
        await removeTree(parked);
        removed.push(digest);
      });
    }
    if (!options.digests) {
      // Checked again just before deleting: only the caller and root could have changed them since.
      await this.trustAll(hint);
      bytesFreed += await duBytes(this.sub('blobs'));
      await fsp.rm(this.sub('blobs'), { recursive: true, force: true });
      await fsp.rm(this.sub('aliases'), { recursive: true, force: true });
      let names: string[] = [];
      try { names = await fsp.readdir(this.sub('tmp')); } catch { /* none */ }
      for (const n of names) {
        const pid = Number(/^[a-z]+(?:-[0-9a-f]+)?-(\d+)-/.exec(n)?.[1]);
        if (pid && pidAlive(pid)) continue;
        bytesFreed += await duBytes(this.sub('tmp', n));
        await removeTree(this.sub('tmp', n));
      }
    }
    return { removed, bytesFreed };
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errCode(err) === 'EPERM';
  }
}

/** Disk usage of a tree in bytes (allocated blocks, hard links counted once). */
export async function duBytes(p: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (q: string): Promise<void> => {
    let st: fs.Stats;
    try { st = await fsp.lstat(q); } catch { return; }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    total += st.blocks * 512;
    if (st.isDirectory()) {
      let names: string[] = [];
      try { names = await fsp.readdir(q); } catch { /* unreadable: count what we can */ }
      for (const n of names) await walk(path.join(q, n));
    }
  };
  await walk(p);
  return total;
}
