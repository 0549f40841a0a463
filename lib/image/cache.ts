// The image cache: content-addressed blobs and unpacked roots.
//
//   $NODULARITY_CACHE/            (default: $XDG_CACHE_HOME/nodularity)
//     blobs/ALG/HEX               verified layer/manifest/config blobs from registries
//     roots/ALG/HEX/              one unpacked image per platform manifest digest
//       rootfs/                   the tree a container runs
//       image.json                manifest digest, source, manifest, config, stats
//     aliases/ALG/HEX@OS-ARCH     index digest -> platform manifest digest
//     locks/ALG-HEX               lock files (proper-lockfile makes NAME.lock dirs)
//     holds/ALG-HEX/PID-RAND      one file per running container using roots/ALG/HEX
//     tmp/                        work in progress; same filesystem, so rename() is atomic
//       parked-ALG-HEX-RAND/      an entry `cache clean --force` took away while in use
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
//
// Holds. A container runs its root straight from roots/ALG/HEX, so deleting
// an entry under a running job breaks it (`/bin/ls: not found`). A launch
// takes a hold (hold()) and keeps it until the container exits: a file
// holds/ALG-HEX/PID-RAND naming the holding process by pid, start time
// (/proc/PID/stat field 22), boot id and pid namespace. It is made under the
// entry's lock, after checking that the entry exists; clean() looks at the
// holds under the same lock, so a hold is either seen by clean or made after
// the entry is gone (and the launch pulls again). A record whose process is
// gone (killed with SIGKILL, or its pid reused by another process: the start
// time differs) is stale and removed; one from another pid namespace cannot
// be checked and counts as live. clean() skips held entries; with `force`
// it renames them to tmp/parked-ALG-HEX-RAND (the running job keeps its
// mounts, a new pull unpacks afresh), removed by the last holder's release
// or by a later clean once no live hold is left.
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
  // Apptainer's cache setting, as sites and pilots give it (APPTAINER_ first):
  // a directory of our own inside it, as our layout is not Apptainer's.
  const apptainer = [env.APPTAINER_CACHEDIR, env.SINGULARITY_CACHEDIR].find((d) => d && path.isAbsolute(d));
  if (apptainer) return path.join(apptainer, 'nodularity');
  const xdg =
    env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME)
      ? env.XDG_CACHE_HOME
      : path.join(env.HOME || os.homedir(), '.cache');
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
    super(
      'CACHE',
      `cache ${p}: ${reason}; refusing to use it (the cache, and each directory and file of its own, must belong to you or root and be writable by no one else${hint})`,
    );
    this.path = p;
  }
}

/** Why `st` (of `p`) may not be trusted by `euid`, or undefined when it may. */
function distrust(st: fs.Stats, kind: 'dir' | 'file', euid: number): string | undefined {
  if (st.isSymbolicLink()) return 'is a symbolic link';
  if (kind === 'dir' && !st.isDirectory()) return 'is not a directory';
  if (kind === 'file' && !st.isFile()) return 'is not a regular file';
  if (st.uid !== euid && st.uid !== 0) return `is owned by uid ${st.uid}, not by you (uid ${euid}) or root`;
  if (st.mode & 0o022)
    return `is writable by ${st.mode & 0o020 ? 'group' : ''}${(st.mode & 0o022) === 0o022 ? ' and ' : ''}${st.mode & 0o002 ? 'others' : ''} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
  return undefined;
}

/** Kinds of content `cache clean --type` removes (Apptainer's names where they exist). */
export type CacheContentType = 'blob' | 'root';
export const CACHE_CONTENT_TYPES: readonly CacheContentType[] = ['blob', 'root'];

/** What clean() may do. */
export interface CleanOptions {
  /** Only these roots (manifest digests); default: everything of `types`. */
  digests?: string[];
  /** Default: both. */
  types?: CacheContentType[];
  /**
   * Also take away roots in use: they are renamed out of the cache (the
   * running containers keep working from their mounts) and removed when the
   * last holder releases them, or by a later clean.
   */
  force?: boolean;
}

/** An entry clean() left in place (or, with `force`, parked) because containers use it. */
export interface HeldEntry {
  manifestDigest: string;
  /** pids of the live holders (in this pid namespace, or as recorded in another one). */
  holders: number[];
}

export interface CleanResult {
  /** Roots removed. */
  removed: string[];
  /** Roots in use, left in place. */
  skipped: HeldEntry[];
  /** Roots in use taken out of the cache by `force`, removed once released. */
  parked: HeldEntry[];
  /** Number of blobs removed. */
  blobs: number;
  bytesFreed: number;
}

/** A cached blob. */
export interface CachedBlob {
  digest: string;
  size: number;
  /** ISO time it was stored. */
  stored: string;
}

/**
 * A running container's claim on its cache entry (see "Holds" above). The
 * entry stays until release(); release when the container has exited.
 */
export interface CacheHold {
  readonly manifestDigest: string;
  /** The hold record. */
  readonly file: string;
  /** Drop the hold; idempotent. Removes the entry if `clean --force` parked it and no one else holds it. */
  release(): Promise<void>;
}

/** Enough to tell later, from another process, whether the holder still runs. */
interface HoldRecord {
  pid: number;
  start: string;
  boot: string;
  pidns: string;
}

/** Field 22 (starttime, clock ticks after boot) of /proc/PID/stat; 'gone' for no such process. */
function procStart(pid: number): string | 'gone' | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    return errCode(err) === 'ENOENT' || errCode(err) === 'ESRCH' ? 'gone' : undefined;
  }
  // comm (field 2) may hold spaces and parentheses: count from the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

let selfRecord: HoldRecord | undefined;
function ownRecord(): HoldRecord {
  if (!selfRecord) {
    const read = (f: () => string): string => {
      try {
        return f().trim();
      } catch {
        return 'unknown';
      }
    };
    selfRecord = {
      pid: process.pid,
      start: procStart(process.pid) ?? 'unknown',
      boot: read(() => fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')),
      pidns: read(() => fs.readlinkSync('/proc/self/ns/pid')),
    };
  }
  return selfRecord;
}

/** Whether the process a hold record names still runs; 'unknown' (from another pid namespace, or unreadable) counts as live. */
function holderState(r: HoldRecord): 'live' | 'dead' | 'unknown' {
  const me = ownRecord();
  if (r.boot !== me.boot) return 'dead';
  if (r.pidns !== me.pidns) return 'unknown';
  const start = procStart(r.pid);
  if (start === 'gone') return 'dead';
  if (start === undefined) return 'unknown';
  return start === r.start ? 'live' : 'dead'; // a different start time: the pid was reused
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

  /**
   * Open a trusted cached blob for reading, or undefined when there is none.
   * An open blob stays readable when a concurrent `cache clean` unlinks it.
   */
  async openBlob(digest: string): Promise<fsp.FileHandle | undefined> {
    const { algorithm, hex } = parseDigest(digest);
    if (!(await this.trust(['blobs', algorithm, hex], 'file'))) return undefined;
    try {
      return await fsp.open(this.blobPath(digest), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw new ImageError('CACHE', `cache blob ${this.blobPath(digest)}: ${(err as Error).message}`, {
        digest,
        cause: err,
      });
    }
  }

  /** All cached blobs. @throws UntrustedCacheError as lookup() */
  async listBlobs(hint = ''): Promise<CachedBlob[]> {
    const out: CachedBlob[] = [];
    if (!(await this.trust(['blobs'], 'dir', hint))) return out;
    for (const alg of (await fsp.readdir(this.sub('blobs'))).sort()) {
      if (!(await this.trust(['blobs', alg], 'dir', hint))) continue;
      for (const hex of (await fsp.readdir(this.sub('blobs', alg))).sort()) {
        let digest: string;
        try {
          digest = parseDigest(`${alg}:${hex}`).algorithm + ':' + hex;
        } catch {
          continue; /* not a blob name */
        }
        if (!(await this.trust(['blobs', alg, hex], 'file', hint))) continue;
        const st = await fsp.lstat(this.sub('blobs', alg, hex)).catch(() => undefined);
        if (st) out.push({ digest, size: st.size, stored: st.mtime.toISOString() });
      }
    }
    return out;
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
      await pipeline(
        source,
        new DigestVerifier(digest, size === undefined ? { what } : { size, what }),
        fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 }),
      );
      try {
        await fsp.rename(tmp, final);
      } catch (err) {
        // A concurrent `cache clean` may have removed blobs/ALG meanwhile.
        if (errCode(err) !== 'ENOENT') throw err;
        await this.ensureDir('blobs', parseDigest(digest).algorithm);
        await fsp.rename(tmp, final);
      }
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
      throw new ImageError(
        'CACHE',
        `cache entry ${dir}: unreadable image.json (${(err as Error).message}); remove it with \`nodularity cache clean\``,
        { cause: err },
      );
    }
    return { manifestDigest, dir, rootfs: path.join(dir, 'rootfs'), meta };
  }

  private aliasPath(indexDigest: string, platform: Platform): string {
    const { algorithm, hex } = parseDigest(indexDigest, 'index digest');
    const p = `${platform.os}-${platform.architecture}${platform.variant ? '-' + platform.variant : ''}`.replace(
      /[^a-zA-Z0-9_.-]/g,
      '_',
    );
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
    if (!(await this.trust(['aliases', parseDigest(indexDigest).algorithm, path.basename(file)], 'file')))
      return undefined;
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
      // A pull can take minutes; wait as long as the holder keeps the lock
      // fresh. `forever` cycles through 20 delays: `retries: 100000` made
      // the retry module build and copy 100000 delays on every lock, ~20 ms
      // each time, which every launch from the cache now pays (hold()).
      retries: { forever: true, retries: 20, factor: 1.2, minTimeout: 50, maxTimeout: 500 },
      onCompromised: (err) => {
        compromised = err;
      },
    });
    try {
      await this.removeLeftovers(`unpack-${hex.slice(0, 16)}`);
      const out = await fn();
      if (compromised)
        throw new ImageError('CACHE', `lock for ${manifestDigest} was lost while unpacking (${compromised.message})`, {
          cause: compromised,
        });
      return out;
    } finally {
      await release().catch(() => undefined);
    }
  }

  private async removeLeftovers(prefix: string): Promise<void> {
    if (!(await this.trust(['tmp']))) return;
    let names: string[];
    try {
      names = await fsp.readdir(this.sub('tmp'));
    } catch {
      return;
    }
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
    for (const top of ['roots', 'blobs', 'aliases', 'tmp', 'locks', 'holds']) {
      if (!(await this.trust([top], 'dir', hint))) continue;
      if (top === 'tmp' || top === 'locks') continue; // their entries are the caller's own temp dirs, removed without following
      for (const alg of await fsp.readdir(this.sub(top))) {
        await this.trust([top, alg], 'dir', hint); // holds/ALG-HEX too: its records are read and unlinked
        if (top !== 'roots') continue;
        for (const hex of await fsp.readdir(this.sub(top, alg))) await this.trust([top, alg, hex], 'dir', hint);
      }
    }
  }

  /**
   * Take a hold on the entry for `manifestDigest` (see "Holds" above), or
   * return undefined when there is no such entry (any more): pull it again,
   * then hold. Keep the hold until the container using the entry exits.
   */
  async hold(manifestDigest: string): Promise<CacheHold | undefined> {
    const { algorithm, hex } = parseDigest(manifestDigest, 'manifest digest');
    return await this.withLock(manifestDigest, async () => {
      // The entry is complete when image.json is there (it is renamed into place whole).
      if (!(await this.trust(['roots', algorithm, hex, 'image.json'], 'file'))) return undefined;
      const dir = await this.ensureDir('holds', `${algorithm}-${hex}`);
      const name = `${process.pid}-${randomBytes(6).toString('hex')}`;
      // Written aside and renamed: a reader without the lock never sees half a record.
      const tmp = path.join(dir, `.${name}`);
      const file = path.join(dir, name);
      await fsp.writeFile(tmp, JSON.stringify(ownRecord()) + '\n', { flag: 'wx', mode: 0o600 });
      await fsp.rename(tmp, file);
      let released = false;
      return {
        manifestDigest,
        file,
        release: async () => {
          if (released) return;
          released = true;
          await fsp.rm(file, { force: true }).catch(() => undefined);
          await this.sweepParked(`${algorithm}-${hex}`).catch(() => undefined);
        },
      };
    });
  }

  /**
   * pids of the live holders of roots/ALG/HEX (`key` = ALG-HEX); stale
   * records (holder gone, pid reused, an earlier boot) are removed on the way.
   */
  private async liveHolders(key: string, hint = ''): Promise<number[]> {
    if (!(await this.trust(['holds', key], 'dir', hint))) return [];
    const live: number[] = [];
    for (const name of await fsp.readdir(this.sub('holds', key)).catch(() => [] as string[])) {
      if (name.startsWith('.')) {
        // A record being written (it is renamed at once), or left by a holder killed in between.
        const pid = Number(name.slice(1).split('-')[0]);
        if (!(pid && pidAlive(pid))) await fsp.rm(this.sub('holds', key, name), { force: true });
        continue;
      }
      if (!(await this.trust(['holds', key, name], 'file', hint))) continue;
      let record: HoldRecord | undefined;
      try {
        record = JSON.parse(await fsp.readFile(this.sub('holds', key, name), 'utf8')) as HoldRecord;
      } catch (err) {
        if (errCode(err) === 'ENOENT') continue; // released meanwhile
      }
      const state = record && typeof record.pid === 'number' ? holderState(record) : 'dead';
      if (state === 'dead') await fsp.rm(this.sub('holds', key, name), { force: true });
      else live.push(record!.pid);
    }
    return live;
  }

  /**
   * Remove the tmp/parked-KEY-* trees no one holds any more. The parked
   * names are read before the holds: an entry parked after that read is not
   * touched, and one parked before it had its holds made before it was parked.
   */
  private async sweepParked(key?: string, hint = ''): Promise<number> {
    if (!(await this.trust(['tmp'], 'dir', hint))) return 0;
    const parked = (await fsp.readdir(this.sub('tmp')).catch(() => [] as string[])).filter((n) =>
      n.startsWith(`parked-${key ?? ''}`),
    );
    let freed = 0;
    const live = new Map<string, boolean>();
    for (const n of parked) {
      const k = /^parked-([a-z0-9]+-[0-9a-f]+)-[0-9a-f]+$/.exec(n)?.[1];
      if (!k) continue;
      if (!live.has(k)) live.set(k, (await this.liveHolders(k, hint)).length > 0);
      if (live.get(k)) continue;
      freed += await duBytes(this.sub('tmp', n));
      await removeTree(this.sub('tmp', n));
    }
    return freed;
  }

  /**
   * Remove cached roots (all, or the manifest digests given) and their
   * aliases, blobs, and temp leftovers of dead processes; `types` picks
   * blobs or roots. A root that a running container holds is skipped (and
   * reported), or with `force` parked out of the cache until released.
   * Roots are removed under their lock, so a concurrent pull of the same
   * image either finishes first or starts after. Blobs a pull has open stay
   * readable; a pull that looks for one after it is gone fetches it again.
   */
  async clean(options: CleanOptions = {}): Promise<CleanResult> {
    const result: CleanResult = { removed: [], skipped: [], parked: [], blobs: 0, bytesFreed: 0 };
    const types = new Set(options.types ?? CACHE_CONTENT_TYPES);
    for (const t of types)
      if (!CACHE_CONTENT_TYPES.includes(t))
        throw new ImageError(
          'CACHE',
          `cache clean: unknown type \`${String(t)}\` (expected ${CACHE_CONTENT_TYPES.join(', ')} or all)`,
        );
    if (options.digests && !types.has('root'))
      throw new ImageError(
        'CACHE',
        'cache clean: digests name unpacked roots; they do not go with a type that leaves roots out',
      );
    const hint = `; clean a cache as its owner, e.g. \`runuser -u USER -- nodularity cache clean --cache ${this.dir}\``;
    await this.trustAll(hint);
    if (types.has('root')) {
      const targets = options.digests ?? (await this.list(hint)).map((e) => e.manifestDigest);
      for (const digest of targets) {
        const { algorithm, hex } = parseDigest(digest, 'manifest digest');
        await this.withLock(digest, async () => {
          const dir = this.entryDir(digest);
          if (!(await this.trust(['roots', algorithm, hex], 'dir', hint))) return;
          const holders = await this.liveHolders(`${algorithm}-${hex}`, hint);
          if (holders.length && !options.force) {
            result.skipped.push({ manifestDigest: digest, holders });
            return;
          }
          const bytes = await duBytes(dir);
          await this.ensureDir('tmp');
          const rand = randomBytes(4).toString('hex');
          const parked = this.sub(
            'tmp',
            holders.length ? `parked-${algorithm}-${hex}-${rand}` : `clean-${process.pid}-${rand}`,
          );
          // Rename first so that the entry disappears atomically, then delete at leisure.
          try {
            await fsp.rename(dir, parked);
          } catch (err) {
            if (errCode(err) === 'ENOENT') return;
            throw err;
          }
          if (holders.length) {
            result.parked.push({ manifestDigest: digest, holders });
            return;
          }
          await removeTree(parked);
          result.bytesFreed += bytes;
          result.removed.push(digest);
        });
      }
    }
    if (options.digests) return result;
    // Checked again just before deleting: only the caller and root could have changed them since.
    await this.trustAll(hint);
    if (types.has('root')) await fsp.rm(this.sub('aliases'), { recursive: true, force: true });
    if (types.has('blob')) {
      // File by file: a pull storing a blob meanwhile still finds blobs/ALG.
      for (const b of await this.listBlobs(hint)) {
        const p = this.blobPath(b.digest);
        const st = await fsp.lstat(p).catch(() => undefined);
        if (!st) continue;
        await fsp.rm(p, { force: true });
        result.bytesFreed += st.blocks * 512;
        result.blobs++;
      }
    }
    result.bytesFreed += await this.sweepParked(undefined, hint);
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.sub('tmp'));
    } catch {
      /* none */
    }
    for (const n of names) {
      if (n.startsWith('parked-')) continue;
      const pid = Number(/^[a-z]+(?:-[0-9a-f]+)?-(\d+)-/.exec(n)?.[1]);
      if (pid && pidAlive(pid)) continue;
      result.bytesFreed += await duBytes(this.sub('tmp', n));
      await removeTree(this.sub('tmp', n));
    }
    // Stale hold records, and hold dirs left empty.
    if (await this.trust(['holds'], 'dir', hint)) {
      for (const key of await fsp.readdir(this.sub('holds'))) {
        const m = /^([a-z0-9]+)-([0-9a-f]+)$/.exec(key);
        if (!m) continue;
        // Under the entry's lock: hold() makes the dir and its record under it.
        let digest: string;
        try {
          digest = `${m[1]}:${m[2]}`;
          parseDigest(digest);
        } catch {
          continue;
        }
        await this.withLock(digest, async () => {
          if ((await this.liveHolders(key, hint)).length) return;
          await fsp.rmdir(this.sub('holds', key)).catch(() => undefined);
        });
      }
    }
    return result;
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
    try {
      st = await fsp.lstat(q);
    } catch {
      return;
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    total += st.blocks * 512;
    if (st.isDirectory()) {
      let names: string[] = [];
      try {
        names = await fsp.readdir(q);
      } catch {
        /* unreadable: count what we can */
      }
      for (const n of names) await walk(path.join(q, n));
    }
  };
  await walk(p);
  return total;
}
