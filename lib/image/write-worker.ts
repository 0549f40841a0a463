// The write thread's body (see write-thread.ts for why a thread and the
// safety argument): runs WriteJobs in order with synchronous system calls and
// stops at the first failure. Every non-directory is created with
// O_EXCL|O_NOFOLLOW, symlink(2), link(2) or mkdir(2), none of which follows a
// link at the final component; what is in the way is unlinked, never followed.
import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type {
  WriteFailure,
  WriteJob,
  FileJob,
  AppendJob,
  CloseJob,
  MkdirJob,
  SymlinkJob,
  LinkJob,
  DirMetaJob,
} from './write-thread.js';

const C = fs.constants;
// No O_CLOEXEC: fs.constants has none (the eval'ed source or'ed in undefined),
// and libuv adds it to every open(2) itself.
const CREATE = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
const OPEN_DIR = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/** A failure that is the caller's model being wrong, not an errno. */
class Stop {
  constructor(readonly failure: WriteFailure) {}
}

const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

// Clear the way for a new non-directory at p: a file or symlink there (from a
// lower layer or an earlier entry) is unlinked, never followed; a directory
// means the caller's model is wrong, so stop.
function clearWay(p: string): void {
  if (fs.lstatSync(p).isDirectory()) throw new Stop({ kind: 'directory' });
  fs.unlinkSync(p);
}

function retryOnExist<R>(p: string, make: () => R): R {
  try {
    return make();
  } catch (err) {
    if (errCode(err) !== 'EEXIST') throw err;
  }
  clearWay(p);
  return make();
}

function writeAll(fd: number, data: Uint8Array, pos: number): number {
  let off = 0;
  while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off, pos + off);
  return pos + off;
}

function finishFile(fd: number, j: FileJob | CloseJob): void {
  if (j.owner) fs.fchownSync(fd, j.owner.uid, j.owner.gid);
  if (j.chmod !== undefined) fs.fchmodSync(fd, j.chmod);
  if (j.mtime !== undefined) fs.futimesSync(fd, j.mtime, j.mtime);
}

/** The large file being written piece by piece, if any. */
let open: { fd: number; pos: number } | null = null;

function file(j: FileJob): void {
  const fd = retryOnExist(j.path, () => fs.openSync(j.path, CREATE, j.openMode));
  if (j.keepOpen) {
    open = { fd, pos: 0 };
    open.pos = writeAll(fd, j.data, 0);
    return;
  }
  try {
    writeAll(fd, j.data, 0);
    finishFile(fd, j);
  } finally {
    fs.closeSync(fd);
  }
}

function append(j: AppendJob): void {
  if (!open) throw new Error('append without an open file');
  open.pos = writeAll(open.fd, j.data, open.pos);
}

function close(j: CloseJob): void {
  if (!open) throw new Error('close without an open file');
  const { fd } = open;
  open = null;
  try {
    finishFile(fd, j);
  } finally {
    fs.closeSync(fd);
  }
}

function mkdir(j: MkdirJob): void {
  try {
    fs.mkdirSync(j.path, 0o700);
    return;
  } catch (err) {
    if (errCode(err) !== 'EEXIST') throw err;
  }
  if (fs.lstatSync(j.path).isDirectory()) return;
  fs.unlinkSync(j.path);
  fs.mkdirSync(j.path, 0o700);
}

function symlink(j: SymlinkJob): void {
  retryOnExist(j.path, () => fs.symlinkSync(j.target, j.path));
  if (j.owner) fs.lchownSync(j.path, j.owner.uid, j.owner.gid);
  if (j.mtime !== undefined) fs.lutimesSync(j.path, j.mtime, j.mtime);
}

function link(j: LinkJob): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(j.target);
  } catch (err) {
    if (errCode(err) === 'ENOENT') throw new Stop({ kind: 'missing' });
    throw err;
  }
  if (st.isDirectory()) throw new Stop({ kind: 'target-directory' });
  // link(2) does not follow a symlink target on Linux, so linking to a link is safe.
  retryOnExist(j.path, () => fs.linkSync(j.target, j.path));
}

function dirmeta(j: DirMetaJob): void {
  for (const d of j.dirs) {
    let fd: number;
    try {
      fd = fs.openSync(d.path, OPEN_DIR);
    } catch (err) {
      // Gone or replaced by a non-directory in a later layer: nothing to apply.
      const code = errCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') continue;
      throw err;
    }
    try {
      if (d.owner) fs.fchownSync(fd, d.owner.uid, d.owner.gid);
      fs.fchmodSync(fd, d.mode);
      if (d.mtime !== undefined) fs.futimesSync(fd, d.mtime, d.mtime);
    } finally {
      fs.closeSync(fd);
    }
  }
}

function run(j: WriteJob): void {
  switch (j.t) {
    case 'file':
      return file(j);
    case 'append':
      return append(j);
    case 'close':
      return close(j);
    case 'mkdir':
      return mkdir(j);
    case 'symlink':
      return symlink(j);
    case 'link':
      return link(j);
    case 'dirmeta':
      return dirmeta(j);
  }
}

/** What the thread answers per batch: the last job id it got to, and the first failure. */
export interface WriteAnswer {
  upTo: number;
  failedId?: number;
  failure?: WriteFailure;
}

let stopped = false;
parentPort!.on('message', (jobs: (WriteJob & { id: number })[]) => {
  let failure: WriteFailure | undefined;
  let failedId: number | undefined;
  for (const j of jobs) {
    if (stopped) break;
    try {
      run(j);
    } catch (err) {
      stopped = true;
      failedId = j.id;
      if (open) {
        try {
          fs.closeSync(open.fd);
        } catch {
          /* failing already */
        }
        open = null;
      }
      const e = err as NodeJS.ErrnoException;
      failure =
        err instanceof Stop
          ? err.failure
          : {
              kind: 'errno',
              code: String(e.code),
              errno: (e.errno ?? 0) | 0,
              syscall: String(e.syscall ?? ''),
              path: String(e.path ?? ('path' in j ? j.path : '')),
              message: e.message,
            };
    }
  }
  const answer: WriteAnswer = {
    upTo: jobs[jobs.length - 1]!.id,
    ...(failedId === undefined ? {} : { failedId }),
    ...(failure ? { failure } : {}),
  };
  parentPort!.postMessage(answer);
});
