// Apply OCI/Docker layer tarballs onto a rootfs directory.
//
// Safety model: the rootfs is a fresh directory that only this writer
// modifies, so path checks cannot race with anyone but the layer itself.
// Every entry path is rejected if it is absolute or has a `..` component,
// and every parent directory is walked with lstat() and rejected if it is a
// symlink: nothing is ever resolved through a link that the image planted.
// Files are created with O_CREAT|O_EXCL|O_NOFOLLOW after removing whatever
// was at the path, so an existing symlink is replaced, never written through.
// Directory modes and mtimes are applied once, at the end of all layers,
// and only to paths that are still directories (opened O_NOFOLLOW|O_DIRECTORY).
//
// Threads: the blob is decompressed and its tar parsed on the decode thread
// (layer-decoder.ts); this thread checks each entry record against
// its model of the rootfs (`safeDirs`: the directories this writer made or
// verified) and submits the creation of files, directories and links to the
// write thread (write-thread.ts), which runs them in order with synchronous
// calls and stops at the first failure. Anything that must look at the
// filesystem itself (a parent not in the model, whiteouts, opaque dirs,
// device nodes) first waits until the write thread has caught up.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';
import { ImageError } from './errors.js';
import { WriteThread, type CloseJob, type FileJob, type WriteFailure, type WriteJob } from './write-thread.js';
import { LayerDecoder, type EntryRecord, type TarRecord } from './layer-decoder.js';
import type { Compression } from './manifest.js';

const execFileP = promisify(execFile);
/**
 * The process umask, read without changing it (process.umask() with no
 * argument is deprecated because it briefly sets the mask). Knowing it lets
 * open() set the final mode in most cases and saves a chmod per file.
 */
function readUmask(): number {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return parseInt(m[1]!, 8);
  } catch {
    /* fall through */
  }
  return 0o777; // unknown: always chmod
}
export const UMASK = readUmask();

/** Counters for one unpack, summed over layers. */
export interface UnpackStats {
  entries: number;
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  whiteouts: number;
  opaqueDirs: number;
  /**
   * Character/block devices not created: not asked for (`keepDevices`), or
   * the caller cannot mknod (not root).
   */
  devicesSkipped: number;
  /** Files and directories whose setuid/setgid bits were removed (`keepSetid` not set). */
  setidDropped: number;
  /** Bytes of file content written. */
  bytes: number;
  /** Compressed bytes read from layer blobs. */
  compressedBytes: number;
}

/** One layer to apply, with what its descriptor and the image config say it must hash to. */
export interface LayerInput {
  /** Digest of the blob as stored (compressed), checked while streaming. */
  digest: string;
  /** Size from the descriptor, checked too when given. */
  size?: number;
  /** Digest of the uncompressed tar (config `rootfs.diff_ids`), checked when given. */
  diffId?: string;
  compression: Compression;
  /** Opens the blob. Called once. */
  open: () => Promise<Readable> | Readable;
}

/** What to keep of an image's privileged content; see {@link UnpackOptions}. */
export interface KeepOptions {
  /**
   * Keep uid/gid from the layer. Defaults to running as root; unprivileged
   * callers get files owned by themselves, as they could not chown anyway.
   */
  preserveOwnership?: boolean;
  /**
   * Create the image's character and block devices (root only). Default
   * false: they are skipped and counted, as for unprivileged callers. An
   * image's `/opt/disk` made as block device 7:0 is the host's loop device;
   * keep devices only for trusted images in a directory others cannot reach.
   */
  keepDevices?: boolean;
  /**
   * Keep setuid/setgid bits. Default false: a root-owned setuid binary in a
   * tree other users can reach is theirs to run as root. pullImage() keeps
   * them (as root) inside its private cache, where no one else can reach them.
   */
  keepSetid?: boolean;
}

export interface UnpackOptions extends KeepOptions {
  /** Called as compressed bytes of layer `index` are read. */
  onProgress?: (index: number, bytes: number) => void;
}

interface DirMeta {
  mode: number;
  mtime: number | undefined;
  uid: number;
  gid: number;
}

// Bounds on what the write thread holds: jobs, and bytes of file content.
const MAX_INFLIGHT_JOBS = 256;
const MAX_INFLIGHT_BYTES = 64 << 20;

/** The tar entry a write job came from, to name it in an error. */
interface JobTag {
  entry: string;
  linkname?: string;
  /** The decode thread's newest content arena when the job was submitted. */
  arena?: number;
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Writes layers onto one rootfs directory, in order. Create one writer per
 * unpack: it remembers which directories it has verified and which directory
 * metadata is still to be applied by {@link RootfsWriter.finish}.
 */
export class RootfsWriter {
  readonly root: string;
  readonly stats: UnpackStats = {
    entries: 0,
    files: 0,
    directories: 0,
    symlinks: 0,
    hardlinks: 0,
    whiteouts: 0,
    opaqueDirs: 0,
    devicesSkipped: 0,
    setidDropped: 0,
    bytes: 0,
    compressedBytes: 0,
  };
  private readonly preserve: boolean;
  private readonly keepDevices: boolean;
  private readonly keepSetid: boolean;
  /** Relative paths known to be real directories (not links) in this rootfs. */
  private readonly safeDirs = new Set<string>(['']);
  /** Deferred directory metadata, applied deepest first by finish(). */
  private readonly dirMeta = new Map<string, DirMeta>();
  /** Paths written by the current layer, and all their ancestors. */
  private written = new Set<string>();
  private writtenAncestors = new Set<string>();
  private layerDigest = '';
  private readonly uid = process.getuid?.() ?? 0;
  private readonly gid = process.getgid?.() ?? 0;
  /** The first write-thread failure, as the error to throw. */
  private jobError: unknown;
  /** Thread that makes files, directories and links (write-thread.ts); started on first use, stopped by close(). */
  private writes: WriteThread<JobTag> | undefined;
  /** Arena bookkeeping for the decode thread (see LayerDecoder.release). */
  private newestArena = 0;
  private releasedArena = 0;
  /** The large file whose pieces are arriving, with the job that will close it. */
  private bigFile: { entry: string; size: number; bytes: number; close: CloseJob } | undefined;
  /** Thread that checks digests, decompresses and parses the tar; started by the first layer, stopped by close(). */
  private decoder: LayerDecoder | undefined;

  constructor(root: string, options: KeepOptions = {}) {
    this.root = path.resolve(root);
    this.preserve = options.preserveOwnership ?? this.uid === 0;
    // mknod(2) of a device needs CAP_MKNOD in the initial user namespace.
    this.keepDevices = (options.keepDevices ?? false) && this.uid === 0;
    this.keepSetid = options.keepSetid ?? false;
  }

  /** Stream one layer blob through digest checks and decompression into the rootfs. */
  async applyLayer(layer: LayerInput, onBytes?: (n: number) => void): Promise<void> {
    this.layerDigest = layer.digest;
    this.written = new Set();
    this.writtenAncestors = new Set();
    const source = await layer.open();
    // Digests, size, decompression and tar parsing run on the decode thread
    // (layer-decoder.ts); this thread checks every entry and plans the writes.
    this.decoder ??= new LayerDecoder();
    const spec = {
      compression: layer.compression,
      digest: layer.digest,
      ...(layer.size === undefined ? {} : { size: layer.size }),
      ...(layer.diffId && (layer.diffId !== layer.digest || layer.compression !== 'none')
        ? { diffId: layer.diffId }
        : {}),
    };
    this.bigFile = undefined;
    try {
      for await (const records of this.decoder.decode(source, spec, (n) => {
        this.stats.compressedBytes += n;
        onBytes?.(n);
      })) {
        for (const r of records) await this.applyRecord(r);
      }
      await this.barrier();
    } catch (err) {
      // Never return (and let the caller delete the rootfs) while writes are in flight.
      await this.writes?.idle();
      throw this.wrapStreamError(err);
    }
  }

  private wrapStreamError(err: unknown): unknown {
    if (err instanceof ImageError && err.reason === 'DIGEST_MISMATCH' && err.digest !== this.layerDigest) {
      // The diff_id check failed: report it against the layer, as the other checks are.
      return new ImageError(
        'DIGEST_MISMATCH',
        `layer ${this.layerDigest}: uncompressed content does not match its ${err.message}`,
        { digest: this.layerDigest, cause: err },
      );
    }
    if (err instanceof ImageError) return err;
    const code = errCode(err);
    const what =
      code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR'
        ? 'gzip stream'
        : code === 'ZSTD_DATA_ERROR'
          ? 'zstd stream'
          : /tar|header|invalid|unexpected end/i.test((err as Error)?.message ?? '')
            ? 'tar stream'
            : undefined;
    if (what) {
      return new ImageError('BAD_LAYER', `layer ${this.layerDigest}: not a valid ${what}: ${(err as Error).message}`, {
        digest: this.layerDigest,
        cause: err,
      });
    }
    if (err instanceof Error) err.message = `layer ${this.layerDigest}: ${err.message}`;
    return err;
  }

  private unsafe(entry: string, why: string): never {
    throw this.unsafeError(entry, why);
  }

  private unsafeError(entry: string, why: string): ImageError {
    return new ImageError('UNSAFE_ENTRY', `layer ${this.layerDigest}: entry \`${entry}\` ${why}; refusing to unpack`, {
      digest: this.layerDigest,
      entry,
    });
  }

  /** Normalise a tar path to a relative path inside the rootfs, or reject it. */
  private clean(name: string, entry: string, what = 'path'): string {
    // `umoci insert DIR /` writes the root itself as `/`: that names nothing outside.
    if (name.startsWith('/') && name.split('/').some((p) => p !== '' && p !== '.'))
      this.unsafe(entry, `has an absolute ${what} \`${name}\``);
    const parts: string[] = [];
    for (const p of name.split('/')) {
      if (p === '' || p === '.') continue;
      if (p === '..') this.unsafe(entry, `has a \`..\` component in its ${what} \`${name}\``);
      if (p.includes('\0')) this.unsafe(entry, `has a NUL byte in its ${what}`);
      parts.push(p);
    }
    return parts.join('/');
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : this.root + '/' + rel;
  }

  /**
   * Make sure every ancestor of `rel` is a real directory inside the rootfs,
   * creating missing ones when `create` is set. A symlink anywhere on the way
   * is an attack (or a layer we cannot apply safely): reject it.
   * Returns false if an ancestor is missing and `create` is false.
   */
  private async ensureParents(rel: string, entry: string, create: boolean): Promise<boolean> {
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? '' : rel.slice(0, slash);
    if (this.safeDirs.has(parent)) return true;
    if (!(await this.ensureParents(parent, entry, create))) return false;
    // Not in the model: look at the filesystem, once the write thread has caught up.
    await this.barrier();
    const p = this.abs(parent);
    let st: fs.Stats | undefined;
    try {
      st = await fsp.lstat(p);
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
    }
    if (st?.isSymbolicLink())
      this.unsafe(
        entry,
        `goes through \`${parent}\`, which is a symlink (to \`${await fsp.readlink(p).catch(() => '?')}\`)`,
      );
    if (st && !st.isDirectory()) {
      if (!create) return false;
      await this.remove(parent);
      st = undefined;
    }
    if (!st) {
      if (!create) return false;
      await fsp.mkdir(p, 0o755);
    }
    this.safeDirs.add(parent);
    return true;
  }

  /** Remove whatever is at `rel` (never following a link) and forget what we knew under it. */
  private async remove(rel: string): Promise<void> {
    if (rel === '') return;
    await this.barrier();
    await fsp.rm(this.abs(rel), { recursive: true, force: true });
    const prefix = rel + '/';
    this.safeDirs.delete(rel);
    for (const d of this.safeDirs) if (d.startsWith(prefix)) this.safeDirs.delete(d);
    this.dirMeta.delete(rel);
    for (const d of this.dirMeta.keys()) if (d.startsWith(prefix)) this.dirMeta.delete(d);
  }

  private markWritten(rel: string): void {
    this.written.add(rel);
    let p = rel;
    for (;;) {
      const slash = p.lastIndexOf('/');
      p = slash < 0 ? '' : p.slice(0, slash);
      if (this.writtenAncestors.has(p)) break;
      this.writtenAncestors.add(p);
      if (p === '') break;
    }
  }

  /** Mode bits we will apply, with setuid/setgid dropped unless asked to keep them. */
  private mode(h: EntryRecord): number {
    let mode = (h.mode ?? 0o644) & 0o7777;
    if (!this.keepSetid && mode & 0o6000) {
      mode &= ~0o6000;
      this.stats.setidDropped++;
    }
    return mode;
  }

  private async applyRecord(r: TarRecord): Promise<void> {
    if (this.jobError !== undefined) throw this.jobError;
    if (r.kind !== 'end' && r.arena) this.newestArena = r.arena;
    if (r.kind !== 'entry') {
      // Content of the large file being written, if it is being written at all.
      const big = this.bigFile;
      if (!big) return;
      if (r.kind === 'piece') {
        big.bytes += r.data.length;
        await this.writes?.below(MAX_INFLIGHT_JOBS - 1, MAX_INFLIGHT_BYTES - r.data.length);
        this.submit({ t: 'append', data: r.data }, { entry: big.entry }, r.data.length);
      } else {
        this.bigFile = undefined;
        if (big.bytes !== big.size) this.badSize(big.entry, big.bytes, big.size);
        this.stats.bytes += big.bytes;
        this.submit(big.close, { entry: big.entry });
      }
      return;
    }
    this.bigFile = undefined;
    const h = r;
    const name = h.name;
    this.stats.entries++;
    const rel = this.clean(name, name);
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    // Sparse files are refused, never unpacked as something else: tar-stream
    // does not expand them, and what it gives is the stored form (for PAX,
    // a map and data segments under \`GNUSparseFile.N/NAME\`; for GNU 'S',
    // an entry of no known type). moby refuses unknown types likewise.
    if (h.sparse !== undefined) {
      this.badLayer(
        this.clean(h.sparse, name),
        `is a GNU sparse file (PAX format ${h.name.includes('GNUSparseFile.') ? '1.0' : '0.x'}, stored as \`${name}\`); sparse tar entries are not supported: repack the layer without --sparse`,
      );
    }

    if (base.startsWith('.wh.')) {
      await this.whiteout(rel, base, name);
      return;
    }

    switch (h.type) {
      case 'directory':
        await this.directory(rel, h, name);
        break;
      case 'file':
      case 'contiguous-file':
        await this.file(rel, h, name);
        break;
      case 'symlink':
        await this.symlink(rel, h, name);
        break;
      case 'link':
        await this.hardlink(rel, h, name);
        break;
      case 'character-device':
      case 'block-device':
      case 'fifo':
        await this.special(rel, h, name);
        break;
      default:
        // pax and GNU long-name records are consumed by tar-stream; what is
        // left has a type flag we do not know: dropping it would unpack a
        // different tree than the image's.
        this.badLayer(
          rel,
          h.type === null || h.type === undefined
            ? "has a tar type flag that is not supported (a GNU sparse file, type 'S', or another GNU extension); sparse tar entries are not supported: repack the layer without --sparse"
            : `has the unsupported tar entry type \`${h.type}\``,
        );
    }
    this.markWritten(rel);
  }

  private async whiteout(rel: string, base: string, entry: string): Promise<void> {
    await this.barrier();
    const dirRel = rel.slice(0, Math.max(0, rel.length - base.length - 1));
    if (base === '.wh..wh..opq') {
      this.stats.opaqueDirs++;
      if (!(await this.ensureParents(rel, entry, false))) return;
      await this.clearOpaque(dirRel);
      return;
    }
    // Other `.wh..wh.` names are AUFS bookkeeping (hardlink dirs), not deletions.
    if (base.startsWith('.wh..wh.')) return;
    const victim = base.slice(4);
    if (victim === '' || victim === '.' || victim === '..') this.unsafe(entry, 'is a whiteout for an invalid name');
    this.stats.whiteouts++;
    const target = dirRel === '' ? victim : `${dirRel}/${victim}`;
    // A whiteout hides lower layers only (image-spec): never what this layer wrote.
    if (this.written.has(target) || this.writtenAncestors.has(target)) return;
    if (!(await this.ensureParents(target, entry, false))) return;
    await this.remove(target);
  }

  /** Remove everything under `dirRel` that came from lower layers. */
  private async clearOpaque(dirRel: string): Promise<void> {
    let names: string[];
    try {
      const st = await fsp.lstat(this.abs(dirRel));
      if (!st.isDirectory()) return;
      names = await fsp.readdir(this.abs(dirRel));
    } catch (err) {
      if (errCode(err) === 'ENOENT') return;
      throw err;
    }
    for (const n of names) {
      const child = dirRel === '' ? n : `${dirRel}/${n}`;
      if (this.writtenAncestors.has(child)) await this.clearOpaque(child);
      else if (!this.written.has(child)) await this.remove(child);
    }
  }

  private async directory(rel: string, h: EntryRecord, entry: string): Promise<void> {
    this.stats.directories++;
    const meta: DirMeta = { mode: this.mode(h), mtime: h.mtime, uid: h.uid ?? 0, gid: h.gid ?? 0 };
    if (rel === '') {
      this.dirMeta.set('', meta);
      return;
    }
    await this.ensureParents(rel, entry, true);
    if (!this.safeDirs.has(rel)) {
      // In the model at once: the thread runs jobs in order and stops at the
      // first failure, so nothing that relies on this mkdir runs without it.
      this.submit({ t: 'mkdir', path: this.abs(rel) }, { entry });
      this.safeDirs.add(rel);
    }
    this.dirMeta.set(rel, meta);
  }

  private newWriteThread(): WriteThread<JobTag> {
    return new WriteThread<JobTag>(
      (failure, t) => {
        this.jobError ??= this.jobFailure(failure, t);
      },
      (t) => {
        // Every job before this one is done: the arenas older than the newest
        // one it could see are no longer read by anyone.
        if (t.arena !== undefined && t.arena > this.releasedArena) {
          this.releasedArena = t.arena;
          this.decoder?.release(t.arena);
        }
      },
    );
  }

  private submit(job: WriteJob, tag: JobTag, bytes = 0): void {
    this.writes ??= this.newWriteThread();
    tag.arena = this.newestArena;
    this.writes.submit(job, tag, bytes);
  }

  /** The error for a failed write job, naming its entry. */
  private jobFailure(failure: WriteFailure, tag: JobTag): Error {
    switch (failure.kind) {
      case 'directory':
        return this.unsafeError(tag.entry, 'replaces a directory this unpack did not create');
      case 'missing':
        return this.unsafeError(tag.entry, `is a hard link to \`${tag.linkname}\`, which does not exist`);
      case 'target-directory':
        return this.unsafeError(tag.entry, `is a hard link to the directory \`${tag.linkname}\``);
      default:
        return Object.assign(new Error(`${failure.message} (entry \`${tag.entry}\`)`), {
          code: failure.code,
          errno: failure.errno,
          syscall: failure.syscall,
          path: failure.path,
        });
    }
  }

  /** Wait until the write thread has run every job; rethrow the first failure. */
  private async barrier(): Promise<void> {
    await this.writes?.idle();
    if (this.jobError !== undefined) throw this.jobError;
  }

  private badLayer(entry: string, why: string): never {
    throw new ImageError('BAD_LAYER', `layer ${this.layerDigest}: entry \`${entry}\` ${why}; refusing the layer`, {
      digest: this.layerDigest,
      entry,
    });
  }

  private badSize(entry: string, bytes: number, size: number): never {
    throw new ImageError(
      'BAD_LAYER',
      `layer ${this.layerDigest}: entry \`${entry}\` has ${bytes} bytes of content, its header says ${size}`,
      { digest: this.layerDigest, entry },
    );
  }

  private async file(rel: string, h: EntryRecord, name: string): Promise<void> {
    this.stats.files++;
    if (rel === '') this.unsafe(name, 'names the rootfs itself as a non-directory');
    const size = h.size ?? 0;
    const data = h.data ?? new Uint8Array(0);
    if (!h.large && data.length !== size) this.badSize(name, data.length, size);
    await this.ensureParents(rel, name, true);
    if (this.safeDirs.has(rel)) await this.remove(rel);
    // Memory stays bounded by the in-flight budget.
    await this.writes?.below(MAX_INFLIGHT_JOBS - 1, MAX_INFLIGHT_BYTES - data.length);
    if (this.jobError !== undefined) throw this.jobError;
    const mode = this.mode(h);
    const uid = h.uid ?? 0;
    const gid = h.gid ?? 0;
    // open() already applies the mode minus the umask; chmod only when that differs
    // or when chown would clear setuid/setgid afterwards.
    const needChmod = (mode & 0o7000) !== 0 || (mode & UMASK) !== 0;
    const finish: Omit<CloseJob, 't'> = {};
    if (this.preserve && (uid !== this.uid || gid !== this.gid)) finish.owner = { uid, gid };
    if (needChmod) finish.chmod = mode;
    if (h.mtime !== undefined) finish.mtime = h.mtime;
    const path = this.abs(rel);
    const openMode = needChmod ? 0o600 : mode;
    if (h.large) {
      // The content follows as pieces (applyRecord); the thread keeps the file open meanwhile.
      this.submit({ t: 'file', path, openMode, data, keepOpen: true }, { entry: name });
      this.bigFile = { entry: name, size, bytes: 0, close: { t: 'close', ...finish } };
      return;
    }
    this.stats.bytes += data.length;
    const job: FileJob = { t: 'file', path, openMode, data, ...finish };
    this.submit(job, { entry: name }, data.length);
  }

  private async symlink(rel: string, h: EntryRecord, entry: string): Promise<void> {
    this.stats.symlinks++;
    if (rel === '') this.unsafe(entry, 'names the rootfs itself as a symlink');
    const target = h.linkname ?? '';
    if (!target) this.unsafe(entry, 'is a symlink with an empty target');
    await this.ensureParents(rel, entry, true);
    if (this.safeDirs.has(rel)) await this.remove(rel);
    // The target is stored as-is: it is only ever resolved inside the container,
    // and nothing here writes through it.
    this.submit(
      {
        t: 'symlink',
        path: this.abs(rel),
        target,
        ...(this.preserve ? { owner: { uid: h.uid ?? 0, gid: h.gid ?? 0 } } : {}),
        ...(h.mtime !== undefined ? { mtime: h.mtime } : {}),
      },
      { entry },
    );
  }

  private async hardlink(rel: string, h: EntryRecord, entry: string): Promise<void> {
    this.stats.hardlinks++;
    if (rel === '') this.unsafe(entry, 'names the rootfs itself as a hard link');
    const targetRel = this.clean(h.linkname ?? '', entry, 'hard link target');
    if (targetRel === '') this.unsafe(entry, 'is a hard link to the rootfs itself');
    if (targetRel === rel) return;
    // The target's parents must be real directories too: link(2) resolves them.
    if (!(await this.ensureParents(targetRel, entry, false)))
      this.unsafe(entry, `is a hard link to \`${h.linkname}\`, which does not exist`);
    if (this.safeDirs.has(targetRel)) this.unsafe(entry, `is a hard link to the directory \`${h.linkname}\``);
    await this.ensureParents(rel, entry, true);
    if (this.safeDirs.has(rel)) await this.remove(rel);
    // The thread checks that the target exists and is not a directory.
    this.submit({ t: 'link', path: this.abs(rel), target: this.abs(targetRel) }, { entry, linkname: h.linkname ?? '' });
  }

  private async special(rel: string, h: EntryRecord, entry: string): Promise<void> {
    if (rel === '') this.unsafe(entry, 'names the rootfs itself as a special file');
    const isDevice = h.type !== 'fifo';
    if (isDevice && !this.keepDevices) {
      this.stats.devicesSkipped++;
      return;
    }
    await this.ensureParents(rel, entry, true);
    // remove() first waits for the write thread: mknod and the rest below run after it.
    await this.remove(rel);
    const p = this.abs(rel);
    const mode = this.mode(h);
    // Node has no mknod/mkfifo binding; these entries are rare, so the coreutils tools do.
    if (isDevice) {
      await execFileP('mknod', [
        '-m',
        (mode & 0o777).toString(8),
        '--',
        p,
        h.type === 'block-device' ? 'b' : 'c',
        String(h.devmajor ?? 0),
        String(h.devminor ?? 0),
      ]);
    } else {
      await execFileP('mkfifo', ['-m', (mode & 0o777).toString(8), '--', p]);
    }
    if (this.preserve) await fsp.lchown(p, h.uid ?? 0, h.gid ?? 0);
    await fsp.chmod(p, mode);
    if (h.mtime !== undefined) await fsp.lutimes(p, h.mtime, h.mtime);
  }

  /**
   * Apply directory modes, owners and mtimes, deepest first so that setting a
   * parent's mtime comes after its children stopped changing it, and so that
   * a read-only parent does not block the fix-up of its children.
   */
  async finish(): Promise<void> {
    const dirs = [...this.dirMeta.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    this.dirMeta.clear();
    if (dirs.length === 0) return;
    // One job for all of them: the thread opens each with O_NOFOLLOW|O_DIRECTORY
    // and skips what a later layer turned into something else.
    this.submit(
      {
        t: 'dirmeta',
        dirs: dirs.map(([rel, meta]) => ({
          path: this.abs(rel),
          mode: meta.mode,
          ...(this.preserve ? { owner: { uid: meta.uid, gid: meta.gid } } : {}),
          ...(meta.mtime !== undefined ? { mtime: meta.mtime } : {}),
        })),
      },
      { entry: '(directory metadata)' },
    );
    await this.barrier();
  }

  /**
   * Stop the write and decode threads. Call it after finish(), and after a failed
   * applyLayer() too (which has already waited for its writes).
   */
  async close(): Promise<void> {
    await this.writes?.idle();
    await Promise.all([this.writes?.close(), this.decoder?.close()]);
    this.writes = undefined;
    this.decoder = undefined;
  }
}

function depth(rel: string): number {
  if (rel === '') return 0;
  let n = 1;
  for (let i = 0; i < rel.length; i++) if (rel.charCodeAt(i) === 47) n++;
  return n;
}

/**
 * Unpack `layers` in order into `rootfs` (which should be a new, empty
 * directory: on error its content is undefined and the caller removes it).
 */
export async function unpackLayers(
  rootfs: string,
  layers: LayerInput[],
  options: UnpackOptions = {},
): Promise<UnpackStats> {
  await fsp.mkdir(rootfs, { recursive: true });
  const keep = { ...options };
  delete keep.onProgress;
  const writer = new RootfsWriter(rootfs, keep);
  try {
    for (let i = 0; i < layers.length; i++) {
      await writer.applyLayer(layers[i]!, options.onProgress ? (n) => options.onProgress!(i, n) : undefined);
    }
    await writer.finish();
  } finally {
    await writer.close();
  }
  return writer.stats;
}

/**
 * Remove an unpacked tree even when the image made directories read-only
 * (an unprivileged caller cannot delete inside a 0555 directory it owns
 * without first making it writable).
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await fsp.rm(dir, { recursive: true, force: true });
    return;
  } catch (err) {
    if (errCode(err) !== 'EACCES' && errCode(err) !== 'EPERM') throw err;
  }
  const walk = async (p: string): Promise<void> => {
    let st: fs.Stats;
    try {
      st = await fsp.lstat(p);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    if ((st.mode & 0o700) !== 0o700) await fsp.chmod(p, (st.mode & 0o7777) | 0o700).catch(() => undefined);
    for (const n of await fsp.readdir(p).catch(() => [] as string[])) await walk(path.join(p, n));
  };
  await walk(dir);
  await fsp.rm(dir, { recursive: true, force: true });
}
