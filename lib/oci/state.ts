// The state store of the OCI runtime verbs (`nodularity-oci`, `nodularity oci`):
// one directory per container, ROOT/ID, holding
//   state.json  the record (written to a temp file and renamed: never half-written)
//   exec.fifo   while the container is created and not yet started: its init
//               blocks reading it, `start` writes one byte (lib/oci/runtime.ts)
//   lock        held by a verb that changes the container (create's last step,
//               start, delete): `PID STARTTIME`, made with O_EXCL
// and nothing once the container is deleted (the directory is renamed away
// first, so a concurrent verb sees either the container or nothing).
//
// Slurm 22.05 runs RunTimeRun as the job's user but the other verbs as root,
// so a root process may read a directory another user wrote. Everything in it
// is reached through an fd of the directory opened O_NOFOLLOW
// (/proc/self/fd/N/NAME), so the directory cannot be swapped for a symlink
// between the check and the use; every file is opened O_NOFOLLOW and checked
// by fstat (a regular file, a FIFO); nothing is echoed from it; a pid it names
// is signalled only when that process belongs to the directory's owner and
// started when the record says (pid reuse); and hooks it names are not run by
// anyone but their owner (runtime.ts).
//
// Why a lock file and not flock(2) or proper-lockfile: Node has no flock or
// fcntl locks, and proper-lockfile (used by the image cache, whose locks live
// long) judges a lock stale by its age, so a verb killed while holding it
// would block every verb on that id for its stale time (10 s), longer than
// containerd's and Podman's own timeouts for kill and delete. Our verbs hold
// the lock for milliseconds, and a holder is named by pid and start time, so
// a dead holder is seen at once (the scheme of the image cache's holds).
import { Cgroup } from '../cgroups/cgroup.js';
import type { LinuxResources } from '../cgroups/types.js';
import {
  constants as fsc,
  closeSync,
  fstatSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Process } from './spec.js';
import type { LinuxSeccomp } from '../seccomp/types.js';

/**
 * A failure of the state verbs. `kind` is what runc's clients test its
 * messages for: 'not-exist' ("does not exist": containerd and Podman take the
 * container for gone), 'not-running' ("container not running": containerd's
 * kill), 'exists'.
 */
export class OciStateError extends Error {
  readonly kind: 'not-exist' | 'not-running' | 'exists' | 'state' | 'usage' | undefined;
  constructor(message: string, kind?: OciStateError['kind']) {
    super(message);
    this.name = 'OciStateError';
    this.kind = kind;
  }
}

/** The hooks a later verb runs (start: prestart, poststart; delete: poststop), copied from config.json at create. */
export interface RecordedHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export interface StateRecord {
  ociVersion: string;
  id: string;
  /** Absolute bundle directory. */
  bundle: string;
  created: string;
  /** The init's pid (host pid namespace); 0 until the container exists. */
  pid: number;
  /** Start time of `pid` (clock ticks since boot, /proc/PID/stat field 22), against pid reuse. */
  pidStart: string;
  /** The process creating the container (`create`, `run`), to tell "creating" from a crashed create. */
  runtimePid: number;
  runtimeStart: string;
  annotations?: Record<string, string>;
  /** True once `start` (or `run`) released the payload. */
  started?: boolean;
  hooks?: {
    prestart?: RecordedHook[];
    startContainer?: RecordedHook[];
    poststart?: RecordedHook[];
    poststop?: RecordedHook[];
  };
  /** The payload's user, capabilities and no_new_privs, which startContainer hooks run with (as runc's). */
  hookIdentity?: Pick<Process, 'user' | 'capabilities' | 'noNewPrivileges'>;
  /** The container's seccomp profile, which startContainer hooks run under (as runc's: its init loaded it). */
  hookSeccomp?: LinuxSeccomp;
  /** The container's cgroup (lib/cgroups), which delete removes: its directories and those create made. */
  cgroup?: {
    dirs: string[];
    created: string[];
    /** linux.resources as last applied: config.json's at create, with each `update` merged in. */
    resources?: LinuxResources;
  };
}

export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export const ID_RE = /^[A-Za-z0-9_+@-][A-Za-z0-9_.+@:-]{0,250}$/;

export function checkId(id: string): string {
  if (!ID_RE.test(id))
    throw new OciStateError(
      `invalid container id \`${id}\`: letters, digits and _ . + @ : - (not starting with a dot), at most 251 characters`,
      'usage',
    );
  return id;
}

/** The state directory: --root, else $XDG_RUNTIME_DIR/nodularity, /run/nodularity for root, $TMPDIR/nodularity-UID. */
export function stateRoot(root: string | undefined, create: boolean): string {
  if (root) {
    const dir = resolve(root);
    if (create) mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }
  const uid = process.geteuid!();
  const dir = process.env.XDG_RUNTIME_DIR
    ? join(process.env.XDG_RUNTIME_DIR, 'nodularity')
    : uid === 0
      ? '/run/nodularity'
      : join(tmpdir(), `nodularity-${uid}`);
  if (create) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A shared /tmp lets anyone create the directory first: use it only if it is ours.
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return dir; // absent: nothing to find there
  }
  if (!st.isDirectory() || st.uid !== uid || st.mode & 0o022)
    throw new OciStateError(
      `state directory ${dir} is not a directory owned by uid ${uid} and writable only by it; pass --root`,
    );
  return dir;
}

/** /proc/PID/stat: [state letter, start time], or undefined when there is no such process. */
export function procStat(pid: number): [string, string] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [rest[0]!, rest[19]!];
  } catch {
    return undefined;
  }
}

export function procUid(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number, start: string): boolean {
  if (!(pid > 0)) return false;
  const s = procStat(pid);
  return s !== undefined && s[1] === start && s[0] !== 'Z' && s[0] !== 'X';
}

/** This process as a lock holder or creator: [pid, start time]. */
export function self(): [number, string] {
  return [process.pid, procStat(process.pid)![1]];
}

const MAX_RECORD = 256 * 1024;

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/**
 * One container's directory, opened without following a symlink. Every path
 * in it goes through the fd (`at(name)`), so the directory cannot be swapped
 * under us. close() when done.
 */
export class ContainerDir {
  readonly root: string;
  readonly id: string;
  /** ROOT/ID as the user named it (for messages). */
  readonly path: string;
  readonly owner: number;
  private fd: number;
  private locked = false;

  private constructor(root: string, id: string, fd: number, owner: number) {
    this.root = root;
    this.id = id;
    this.path = join(root, id);
    this.fd = fd;
    this.owner = owner;
  }

  /** Open ROOT/ID; undefined when it does not exist. Refuses a symlink or a non-directory. */
  static open(root: string, id: string): ContainerDir | undefined {
    const path = join(root, checkId(id));
    let fd: number;
    try {
      fd = openSync(path, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    } catch (e) {
      const c = errno(e);
      if (c === 'ENOENT') return undefined;
      if (c === 'ELOOP' || c === 'ENOTDIR')
        throw new OciStateError(`state directory ${path} is not a directory (a symbolic link or a file): refusing it`);
      throw new OciStateError(`cannot open state directory ${path}: ${c}`);
    }
    const st = fstatSync(fd);
    const other = st.uid !== process.geteuid!();
    if (other && st.mode & 0o022) {
      closeSync(fd);
      throw new OciStateError(`state directory ${path} is writable by others than its owner uid ${st.uid}`);
    }
    return new ContainerDir(root, id, fd, st.uid);
  }

  /**
   * Make ROOT/ID (the id is claimed by the mkdir) and take its lock. Fails
   * with runc's "container with given ID already exists" when it is there.
   */
  static async claim(root: string, id: string): Promise<ContainerDir> {
    const path = join(root, checkId(id));
    try {
      mkdirSync(path, { mode: 0o711 });
    } catch (e) {
      if (errno(e) === 'EEXIST')
        throw new OciStateError(`container with given ID already exists: ${id} (${path})`, 'exists');
      throw e;
    }
    const d = ContainerDir.open(root, id)!;
    await d.lock();
    return d;
  }

  /** NAME inside the directory, through its fd. */
  at(name: string): string {
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  /** The same for another process (mkfifo(1)): /proc/OURPID/fd/N/NAME. */
  atForChild(name: string): string {
    return `/proc/${process.pid}/fd/${this.fd}/${name}`;
  }

  close(): void {
    if (this.locked) this.unlock();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /**
   * Open NAME in the container's directory for reading, never through a
   * link (O_NOFOLLOW) nor blocking on a FIFO; undefined when it is absent.
   */
  private openOwn(name: string, what: string): number | undefined {
    const file = join(this.path, name);
    try {
      return openSync(this.at(name), fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (e) {
      const c = errno(e);
      if (c === 'ENOENT') return undefined;
      if (c === 'ELOOP') throw new OciStateError(`${what} ${file} is a symbolic link: refusing it`);
      throw new OciStateError(`cannot open ${what} ${file}: ${c}`);
    }
  }

  /** Read state.json; undefined when absent (a create that died before writing it). */
  readRecord(): StateRecord | undefined {
    const file = join(this.path, 'state.json');
    const fd = this.openOwn('state.json', 'state file');
    if (fd === undefined) return undefined;
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > MAX_RECORD)
        throw new OciStateError(`state file ${file} is not a regular file of at most ${MAX_RECORD / 1024} KiB`);
      if (st.uid !== this.owner)
        throw new OciStateError(`state file ${file} belongs to uid ${st.uid}, not to the directory's owner`);
      const buf = Buffer.alloc(st.size);
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      let rec: StateRecord;
      try {
        rec = JSON.parse(buf.toString('utf8', 0, off));
      } catch {
        throw new OciStateError(`state file ${file} is not valid JSON`);
      }
      if (
        !rec ||
        typeof rec !== 'object' ||
        rec.id !== this.id ||
        !Number.isInteger(rec.pid) ||
        !Number.isInteger(rec.runtimePid) ||
        typeof rec.bundle !== 'string'
      )
        throw new OciStateError(`state file ${file} is not a nodularity state record for \`${this.id}\``);
      return rec;
    } finally {
      closeSync(fd);
    }
  }

  /** Write state.json atomically (temp file in the directory, then rename). */
  writeRecord(rec: StateRecord): void {
    const tmp = `state.json.${process.pid}.${randomBytes(4).toString('hex')}`;
    const fd = openSync(this.at(tmp), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
    try {
      writeSync(fd, JSON.stringify(rec, null, 2) + '\n');
    } finally {
      closeSync(fd);
    }
    renameSync(this.at(tmp), this.at('state.json'));
  }

  /** Whether exec.fifo is there; refuses anything there that is not a FIFO. */
  hasFifo(): boolean {
    let st;
    try {
      st = lstatSync(this.at('exec.fifo'));
    } catch (e) {
      if (errno(e) === 'ENOENT') return false;
      throw e;
    }
    if (!st.isFIFO())
      throw new OciStateError(`${join(this.path, 'exec.fifo')} is not a FIFO (a symbolic link or a file): refusing it`);
    return true;
  }

  /** Whether ROOT/ID is still the directory we opened. */
  private stillThere(): boolean {
    try {
      const a = lstatSync(this.path);
      const b = fstatSync(this.fd);
      return a.ino === b.ino && a.dev === b.dev;
    } catch {
      return false;
    }
  }

  /** Remove exec.fifo (start, before it releases the init). */
  unlinkFifo(): void {
    try {
      unlinkSync(this.at('exec.fifo'));
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw e;
    }
  }

  /**
   * Take the lock: create `lock` with O_EXCL holding our pid and start time.
   * A lock whose holder is dead is broken (renamed away and checked to be the
   * file we judged); a live one is waited for, up to `ms`.
   */
  async lock(ms = 10_000): Promise<void> {
    const [pid, start] = self();
    const end = Date.now() + ms;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      try {
        const fd = openSync(this.at('lock'), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
        writeSync(fd, `${pid} ${start}\n`);
        closeSync(fd);
        // Deleted while we waited: the directory we hold was renamed away.
        if (!this.stillThere()) {
          unlinkSync(this.at('lock'));
          throw new OciStateError(`container does not exist: ${this.id} (deleted meanwhile)`, 'not-exist');
        }
        this.locked = true;
        return;
      } catch (e) {
        const c = errno(e);
        if (c === 'ENOENT')
          throw new OciStateError(`container does not exist: ${this.id} (deleted meanwhile)`, 'not-exist');
        if (c !== 'EEXIST') throw new OciStateError(`cannot lock ${join(this.path, 'lock')}: ${c}`);
      }
      const holder = this.readLock();
      if (holder === 'gone') continue;
      if (!isAlive(holder.pid, holder.start)) {
        this.breakLock(holder.ino);
        continue;
      }
      if (Date.now() > end)
        throw new OciStateError(
          `container ${this.id} is locked by pid ${holder.pid} (${join(this.path, 'lock')}) for more than ${ms / 1000} s`,
        );
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private readLock(): { pid: number; start: string; ino: number } | 'gone' {
    const file = join(this.path, 'lock');
    const fd = this.openOwn('lock', 'lock file');
    if (fd === undefined) return 'gone';
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > 64) throw new OciStateError(`lock file ${file} is not a lock file of ours`);
      const buf = Buffer.alloc(64);
      const n = readSync(fd, buf, 0, 64, 0);
      const m = /^(\d+) (\d+)\n$/.exec(buf.toString('latin1', 0, n));
      // Being written this very moment (created, not yet filled): a live holder.
      if (!m) return { pid: process.pid, start: self()[1], ino: st.ino };
      return { pid: Number(m[1]), start: m[2]!, ino: st.ino };
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Remove a dead holder's lock. Two verbs may judge the same lock dead at
   * once; the one that loses the race must not remove the winner's new lock:
   * the lock is renamed to a name of ours first, and only removed if it is
   * the file (inode) we judged; otherwise it is linked back.
   */
  private breakLock(ino: number): void {
    const aside = `lock.stale.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      renameSync(this.at('lock'), this.at(aside));
    } catch (e) {
      if (errno(e) === 'ENOENT') return;
      throw e;
    }
    if (lstatSync(this.at(aside)).ino === ino) {
      unlinkSync(this.at(aside));
      return;
    }
    try {
      linkSync(this.at(aside), this.at('lock'));
    } catch {
      /* a third verb has taken the lock meanwhile: the one we moved was also judged, by its breaker */
    }
    unlinkSync(this.at(aside));
  }

  unlock(): void {
    if (!this.locked) return;
    this.locked = false;
    try {
      unlinkSync(this.at('lock'));
    } catch {
      /* removed with the directory */
    }
  }

  /**
   * Remove the container's directory: renamed to ROOT/.deleted-ID-RAND first
   * (a verb waiting for the lock then finds no container), then emptied of
   * our own entries (state.json, exec.fifo, lock, temp files) and removed.
   * An entry we did not make is left, and said.
   */
  async remove(): Promise<void> {
    const grave = join(this.root, `.deleted-${this.id}-${randomBytes(4).toString('hex')}`);
    renameSync(this.path, grave);
    this.locked = false;
    // A verb that was waiting for the lock may create one in the renamed
    // directory before it sees the rename (lock() checks, and removes it).
    for (let tries = 0; ; tries++) {
      const left: string[] = [];
      for (const name of readdirSync(this.at('.'))) {
        if (!/^(state\.json(\.\d+\.[0-9a-f]+)?|exec\.fifo|lock(\.stale\.\d+\.[0-9a-f]+)?)$/.test(name)) {
          left.push(name);
          continue;
        }
        try {
          unlinkSync(this.at(name));
        } catch (e) {
          if (errno(e) !== 'ENOENT') throw e;
        }
      }
      if (left.length)
        throw new OciStateError(
          `state directory of ${this.id} held unknown entries (${left.join(', ')}); left in ${grave}`,
        );
      try {
        rmdirSync(grave);
        return;
      } catch (e) {
        if (errno(e) !== 'ENOTEMPTY' || tries > 100) throw e;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

export interface LoadedState {
  dir: ContainerDir;
  rec: StateRecord;
  /** The uid that owns the state directory. */
  owner: number;
}

/**
 * The container's status from its record, its processes and the FIFO:
 * creating (the create process lives, no init yet), created (the init lives
 * and waits at exec.fifo), running (the init lives, started), stopped (the
 * init is gone, also when it died before start; or the create process died).
 */
export function statusOf(s: LoadedState): Status {
  const { rec } = s;
  if (!(rec.pid > 0)) return isAlive(rec.runtimePid, rec.runtimeStart) ? 'creating' : 'stopped';
  if (!isAlive(rec.pid, rec.pidStart)) return 'stopped';
  if (!rec.started && s.dir.hasFifo()) return 'created';
  if (rec.cgroup && frozen(rec.cgroup)) return 'paused';
  return 'running';
}

/** Whether the recorded cgroup is frozen (pause); a record naming directories that are not cgroups says no. */
function frozen(cg: { dirs: string[]; created: string[] }): boolean {
  try {
    return Cgroup.fromDirs(cg.dirs, cg.created).frozen();
  } catch {
    return false;
  }
}

export function notExist(id: string): OciStateError {
  return new OciStateError(`container does not exist: ${id}`, 'not-exist');
}

/** Open and read ID's state; runc's "container does not exist" when there is none. The caller closes s.dir. */
export function mustLoad(root: string, id: string): LoadedState {
  const s = load(root, id);
  if (!s) throw notExist(id);
  return s;
}

/** Open and read ID's state, or undefined. A directory without a record (create died early) counts as none. */
export function load(root: string, id: string): LoadedState | undefined {
  const dir = ContainerDir.open(root, id);
  if (!dir) return undefined;
  try {
    const rec = dir.readRecord();
    if (!rec) {
      dir.close();
      return undefined;
    }
    return { dir, rec, owner: dir.owner };
  } catch (e) {
    dir.close();
    throw e;
  }
}

/** Ids under ROOT (directories with a valid id as name). */
export function listIds(root: string): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch (e) {
    if (errno(e) === 'ENOENT') return [];
    throw e;
  }
  return names.filter((n) => ID_RE.test(n)).sort();
}

/** Signal PID (started at START), checking that it is still that process and belongs to the state's owner. */
export function signalChecked(s: LoadedState, pid: number, start: string, sig: NodeJS.Signals | number): void {
  const { id } = s.rec;
  if (!isAlive(pid, start)) throw new OciStateError(`cannot signal ${id}: container not running`, 'not-running');
  if (s.owner !== process.geteuid!() && procUid(pid) !== s.owner)
    throw new OciStateError(
      `container ${id}: pid ${pid} does not belong to uid ${s.owner}, who owns ${s.dir.path}; not signalling it`,
    );
  try {
    process.kill(pid, sig);
  } catch (e) {
    if (errno(e) === 'ESRCH') throw new OciStateError(`cannot signal ${id}: container not running`, 'not-running');
    throw new OciStateError(`kill ${sig} ${pid} (container ${id}): ${errno(e)}`);
  }
}

export async function waitStopped(s: LoadedState, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 20) {
    if (statusOf(s) === 'stopped') return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
