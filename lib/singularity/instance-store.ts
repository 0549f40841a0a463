// Where instances are recorded, and the checks that keep one user's records
// out of another's reach. As Apptainer keeps ~/.apptainer/instances/app/
// HOST/USER/NAME, nodularity keeps
//
//   BASE/HOST/USER/NAME/state.json   the instance (init pid, its start time, boot id, image, security)
//   BASE/HOST/USER/NAME/gate         the FIFO the keep-alive init waits on (no startscript)
//   BASE/HOST/USER/logs/NAME.out|err the instance's stdout/stderr (kept after stop, truncated at the next start)
//
// BASE is $NODULARITY_INSTANCE_DIR, else ~/.nodularity/instances (the home
// from $HOME, or from passwd for `--user` as root). Every directory on the way
// from BASE/HOST down is made 0700, must be a directory (not a link) owned by
// the user and not writable by group or others; state files are opened
// O_NOFOLLOW and checked the same way. A name is claimed by mkdir (atomic):
// one start wins. A record whose process is gone (killed, or a reboot: the
// boot id differs) is removed by whoever meets it.
import {
  closeSync,
  constants as fsc,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
  fsyncSync,
} from 'node:fs';
import { homedir, hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SpecError } from '../errors.js';

/** Longest instance name (Apptainer allows 128; the name is a path component and a log file name). */
export const MAX_NAME = 128;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const MAX_STATE = 1 << 20;

/** The name as a safe path component, or a SpecError naming `option`. */
export function checkInstanceName(name: unknown, option = 'name'): string {
  if (typeof name !== 'string' || name === '') throw SpecError.inOption(option, 'an instance name is required');
  if (name.length > MAX_NAME)
    throw SpecError.inOption(option, `instance name is ${name.length} characters long; at most ${MAX_NAME}`);
  if (name.includes('/') || name.includes('\0') || name.includes('..') || !NAME.test(name))
    throw SpecError.inOption(
      option,
      `invalid instance name ${JSON.stringify(name)}: letters, digits and . _ + - only, starting with a letter or digit, no '..' and no '/'`,
    );
  return name;
}

/** What state.json holds. */
export interface InstanceRecord {
  version: 1;
  name: string;
  /** 'starting' while its launcher sets it up (pid = the launcher), 'running' once the init waits or runs. */
  status: 'starting' | 'running';
  /** Host pid of the instance's init (or of the launcher while starting). */
  pid: number;
  /** /proc/PID/stat field 22 of that pid when recorded: a reused pid has another. */
  startTime: number;
  /** /proc/sys/kernel/random/boot_id when recorded: after a reboot every record is stale. */
  bootId: string;
  uid: number;
  created: string;
  image?: { ref: string; rootfs: string; sandbox: boolean; config?: unknown; digest?: string };
  /** What the instance runs: 'keepalive' (its init alone), 'startscript', 'runscript'. */
  mode?: 'keepalive' | 'startscript' | 'runscript';
  argv?: string[];
  /** The instance's process security, given to every process joining it. */
  security?: {
    user?: unknown;
    capabilities?: unknown;
    noNewPrivileges?: boolean;
    rlimits?: unknown;
    seccomp?: unknown;
    apparmorProfile?: string;
  };
  cgroup?: { dirs: string[]; created: string[] } | null;
  logs?: { out: string; err: string };
  /** Started with --contain/--containall: no host cwd inside, so joining processes start in home (as exec -c). */
  contain?: boolean;
  /** The instance has its own network namespace. */
  net?: boolean;
}

export interface StoreUser {
  name: string;
  uid: number;
  home: string;
}

function passwdEntry(match: (f: string[]) => boolean): StoreUser | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 7 && match(f)) return { name: f[0], uid: Number(f[2]), home: f[5] };
    }
  } catch {
    /* no passwd */
  }
  return undefined;
}

/** The calling user (name and home as the process sees them). */
export function currentUser(): StoreUser {
  const uid = process.geteuid!();
  let name = `uid${uid}`;
  try {
    const u = userInfo();
    if (u.uid === uid) name = u.username;
  } catch {
    name = passwdEntry((f) => Number(f[2]) === uid)?.name ?? name;
  }
  return { name, uid, home: homedir() };
}

/** Another user (root's `instance list --user USER`): from passwd. */
export function namedUser(name: string): StoreUser {
  if (process.geteuid!() !== 0) throw SpecError.inOption('--user', "only root may look at another user's instances");
  const u = passwdEntry((f) => f[0] === name);
  if (!u) throw SpecError.inOption('--user', `no user ${JSON.stringify(name)} in /etc/passwd`);
  return u;
}

const errCode = (e: unknown) => (e as NodeJS.ErrnoException).code;

/** A directory of the store: not a link, owned by uid, no group/other write. Throws SpecError. */
function checkDir(path: string, uid: number): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink() || !st.isDirectory())
    throw SpecError.inOption('instance store', `${path} is not a directory (a link or another file): refused`);
  if (st.uid !== uid)
    throw SpecError.inOption('instance store', `${path} is owned by uid ${st.uid}, not ${uid}: refused`);
  if (st.mode & 0o022)
    throw SpecError.inOption(
      'instance store',
      `${path} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}): refused`,
    );
}

export class InstanceStore {
  readonly dir: string;
  readonly logDir: string;
  readonly uid: number;

  /** The store of `user` (default: the caller); `create` makes missing directories (0700). */
  constructor(user: StoreUser = currentUser(), options: { base?: string; create?: boolean } = {}) {
    this.uid = user.uid;
    const base = options.base ?? process.env.NODULARITY_INSTANCE_DIR ?? join(user.home, '.nodularity', 'instances');
    this.dir = join(base, hostname(), user.name);
    this.logDir = join(this.dir, 'logs');
    if (options.create) {
      // BASE itself may be shared (a test's directory, $XDG_RUNTIME_DIR): only what we make below it is checked.
      mkdirSync(base, { recursive: true, mode: 0o700 });
      for (const d of [join(base, hostname()), this.dir, this.logDir]) {
        try {
          mkdirSync(d, { mode: 0o700 });
        } catch (e) {
          if (errCode(e) !== 'EEXIST') throw e;
        }
      }
      if (this.uid === process.geteuid!()) this.checkDirs();
    }
  }

  /** The user's directories are the user's, and no one else may write them. */
  checkDirs(): void {
    checkDir(this.dir, this.uid);
    try {
      checkDir(this.logDir, this.uid);
    } catch (e) {
      if (errCode(e) !== 'ENOENT') throw e;
    }
  }

  /** False when the store does not exist yet (nothing was ever started). */
  exists(): boolean {
    try {
      lstatSync(this.dir);
      return true;
    } catch (e) {
      if (errCode(e) === 'ENOENT') return false;
      throw e;
    }
  }

  instanceDir(name: string): string {
    return join(this.dir, checkInstanceName(name));
  }

  logPaths(name: string): { out: string; err: string } {
    checkInstanceName(name);
    return { out: join(this.logDir, `${name}.out`), err: join(this.logDir, `${name}.err`) };
  }

  /** Names recorded (directories), whatever their state. */
  names(): string[] {
    if (!this.exists()) return [];
    this.checkDirs();
    return readdirSync(this.dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && e.name !== 'logs' && NAME.test(e.name) && !e.name.includes('..'))
      .map((e) => e.name)
      .sort();
  }

  /** Claim a name: true when this call made its directory (atomic), false when it exists. */
  claim(name: string): boolean {
    try {
      mkdirSync(this.instanceDir(name), { mode: 0o700 });
      return true;
    } catch (e) {
      if (errCode(e) === 'EEXIST') return false;
      throw e;
    }
  }

  /** The record, or null when there is none (yet). Owner, mode and type checked; never follows a link. */
  read(name: string): InstanceRecord | null {
    const dir = this.instanceDir(name);
    try {
      checkDir(dir, this.uid);
    } catch (e) {
      if (errCode(e) === 'ENOENT') return null;
      throw e;
    }
    const path = join(dir, 'state.json');
    let fd: number;
    try {
      fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | fsc.O_NOCTTY);
    } catch (e) {
      if (errCode(e) === 'ENOENT') return null;
      if (errCode(e) === 'ELOOP') throw SpecError.inOption('instance store', `${path} is a link: refused`);
      throw e;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw SpecError.inOption('instance store', `${path} is not a regular file: refused`);
      if (st.uid !== this.uid)
        throw SpecError.inOption('instance store', `${path} is owned by uid ${st.uid}, not ${this.uid}: refused`);
      if (st.mode & 0o022)
        throw SpecError.inOption(
          'instance store',
          `${path} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}): refused`,
        );
      if (st.size > MAX_STATE) throw SpecError.inOption('instance store', `${path} is larger than 1 MiB: refused`);
      const r = JSON.parse(readFileSync(fd, 'utf8')) as InstanceRecord;
      if (r.version !== 1 || r.name !== name || !Number.isInteger(r.pid) || r.pid <= 0)
        throw SpecError.inOption('instance store', `${path} is not an instance record of this version`);
      return r;
    } catch (e) {
      if (e instanceof SyntaxError) throw SpecError.inOption('instance store', `${path}: ${e.message}`);
      throw e;
    } finally {
      closeSync(fd);
    }
  }

  /** Replace the record atomically (a temp file in the same directory, renamed over). */
  write(r: InstanceRecord): void {
    const dir = this.instanceDir(r.name);
    checkDir(dir, this.uid);
    const tmp = join(dir, `.state-${randomBytes(6).toString('hex')}`);
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, JSON.stringify(r));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(dir, 'state.json'));
  }

  /**
   * Remove an instance's directory. Renamed aside first, so that a new claim
   * of the name (mkdir) cannot meet a half-removed directory.
   */
  remove(name: string): void {
    const dir = this.instanceDir(name);
    const aside = join(this.dir, `.gone-${name}-${randomBytes(6).toString('hex')}`);
    try {
      renameSync(dir, aside);
    } catch (e) {
      if (errCode(e) === 'ENOENT') return;
      throw e;
    }
    rmSync(aside, { recursive: true, force: true });
  }
}

/** This boot's id: records from an earlier boot are stale whatever their pid. */
export function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** /proc/PID/stat: start time (field 22) and state (field 3); null when there is no such process. */
export function procStat(pid: number): { startTime: number; state: string; uid: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const uid = lstatSync(`/proc/${pid}`).uid;
    return { state: f[0], startTime: Number(f[19]), uid };
  } catch {
    return null;
  }
}

/** Whether the process the record names is the one it recorded and still runs (a zombie is gone). */
export function recordAlive(r: Pick<InstanceRecord, 'pid' | 'startTime' | 'bootId'>): boolean {
  if (r.bootId !== bootId()) return false;
  const s = procStat(r.pid);
  return !!s && s.startTime === r.startTime && s.state !== 'Z' && s.state !== 'X';
}
