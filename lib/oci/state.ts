// The state store of `nodularity oci` (run, state, kill, delete): one file,
// ROOT/ID.json, while a container lives, so that another process can find it.
// Slurm 22.05 runs RunTimeRun as the job's user but the other three verbs as
// root, so a root process may read a file the job's user wrote: it is opened
// without following symlinks, never echoed, and a pid it names is signalled
// only when that process belongs to the file's owner and started when the
// file says (pid reuse). The CLI verbs are in lib/cli/bundle-command.ts.
import {
  constants as fsc,
  closeSync,
  fstatSync,
  mkdirSync,
  lstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** A failure of the state verbs (unknown id, wrong status); printed as one line, exit RUNTIME_FAILURE. */
export class OciStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OciStateError';
  }
}

export interface StateRecord {
  ociVersion: string;
  id: string;
  bundle: string;
  created: string;
  /** The init's pid (host pid namespace); 0 until the payload has been exec'd. */
  pid: number;
  /** Start time of `pid` (clock ticks since boot, /proc/PID/stat field 22), against pid reuse. */
  pidStart: string;
  /** The `oci run` process and its start time, to tell "creating" from a crashed run. */
  runtimePid: number;
  runtimeStart: string;
}

export type Status = 'creating' | 'running' | 'stopped';

export const ID_RE = /^[A-Za-z0-9_+@-][A-Za-z0-9_.+@:-]{0,250}$/;

export function checkId(id: string): string {
  if (!ID_RE.test(id))
    throw new OciStateError(
      `container id \`${id}\` must be letters, digits and _ . + @ : - (not starting with a dot), at most 251 characters`,
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
    return [rest[0], rest[19]];
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

export interface LoadedState {
  file: string;
  owner: number;
  rec: StateRecord;
}

/** Read ROOT/ID.json without following a symlink; its content is never echoed in errors. */
export function readState(root: string, id: string): LoadedState | undefined {
  const file = join(root, `${id}.json`);
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new OciStateError(`state file ${file} is a symbolic link`);
    throw new OciStateError(`cannot open state file ${file}: ${code}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > 65536)
      throw new OciStateError(`state file ${file} is not a regular file of at most 64 KiB`);
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
      rec.id !== id ||
      !Number.isInteger(rec.pid) ||
      !Number.isInteger(rec.runtimePid)
    )
      throw new OciStateError(`state file ${file} is not a nodularity state record for \`${id}\``);
    return { file, owner: st.uid, rec };
  } finally {
    closeSync(fd);
  }
}

export function statusOf(s: LoadedState): Status {
  if (s.rec.pid > 0) return isAlive(s.rec.pid, s.rec.pidStart) ? 'running' : 'stopped';
  return isAlive(s.rec.runtimePid, s.rec.runtimeStart) ? 'creating' : 'stopped';
}

export function mustRead(root: string, id: string): LoadedState {
  const s = readState(root, id);
  if (!s) throw new OciStateError(`container \`${id}\` does not exist (no ${join(root, `${id}.json`)})`);
  return s;
}

/** Write the record atomically (temp file + rename); `exclusive` claims the id. */
export function writeState(root: string, rec: StateRecord, exclusive: boolean): string {
  const file = join(root, `${rec.id}.json`);
  const text = JSON.stringify(rec, null, 2) + '\n';
  if (exclusive) {
    try {
      writeFileSync(file, text, { flag: 'wx', mode: 0o644 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST')
        throw new OciStateError(
          `container \`${rec.id}\` already exists (${file}); \`nodularity oci delete ${rec.id}\` removes a stopped one`,
        );
      throw e;
    }
    return file;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
  return file;
}

export function removeState(file: string): void {
  try {
    unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Signal PID (started at START), checking that it is still that process and belongs to the state file's owner. */
export function signalChecked(s: LoadedState, pid: number, start: string, sig: NodeJS.Signals): void {
  const { id } = s.rec;
  if (!isAlive(pid, start)) throw new OciStateError(`container \`${id}\` is not running`);
  if (s.owner !== process.geteuid!() && procUid(pid) !== s.owner)
    throw new OciStateError(
      `container \`${id}\`: pid ${pid} does not belong to uid ${s.owner}, who wrote ${s.file}; not signalling it`,
    );
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH')
      throw new OciStateError(`kill ${sig} ${pid} (container \`${id}\`): ${(e as NodeJS.ErrnoException).code}`);
  }
}

export async function waitStopped(s: LoadedState, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 20) {
    if (statusOf(s) === 'stopped') return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
