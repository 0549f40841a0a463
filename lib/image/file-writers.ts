// A small pool of worker threads that each create, fill and close one
// regular file per job with synchronous system calls.
//
// Why: through fs.promises a small file costs 4 to 6 libuv thread-pool round
// trips (open, write, chown, chmod, futimes, close), each a hand-off between
// the loop thread and a pool thread. Profiles of the minbase unpack showed
// that hand-off, not the kernel work, as the loop thread's largest cost, and
// the thread switches as extra system time. A writer thread does the whole
// file in one go and answers with one message, while the loop thread goes on
// parsing the tar.
//
// Safety stays with the caller (lib/image/unpack.ts): it has checked every
// parent directory before it submits a job, and the worker only opens with
// O_CREAT|O_EXCL|O_NOFOLLOW at the absolute path it is given, so a planted
// symlink at the final component is replaced, never followed.
import { Worker } from 'node:worker_threads';

/** One file to write. Paths are absolute and already checked by the caller. */
export interface FileJob {
  path: string;
  /** Mode passed to open(2) (before the umask). */
  openMode: number;
  /** The whole content, in a buffer the pool may take over (it is transferred). */
  data: Uint8Array;
  /** fchown to these when set. */
  owner?: { uid: number; gid: number };
  /** fchmod to this when set (after chown, which may clear setuid bits). */
  chmod?: number;
  /** mtime in seconds since the epoch, set with futimes when given. */
  mtime?: number;
}

/** Why a job failed: either a directory stood in the way, or a system error. */
export type FileJobFailure =
  | { kind: 'directory' }
  | { kind: 'errno'; code: string; errno: number; syscall: string; message: string };

// The thread's own source: plain CommonJS, evaluated as-is, so it needs no
// build step and no module loader (the library also runs from TypeScript
// sources under test loaders, which a worker file would have to share).
const WORKER_SOURCE = String.raw`
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const C = fs.constants;
const FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW | (C.O_CLOEXEC || 0);
function openNew(p, mode) {
  try { return fs.openSync(p, FLAGS, mode); } catch (err) { if (err.code !== 'EEXIST') throw err; }
  // Something non-directory from a lower layer (or an earlier entry): unlink
  // removes a symlink itself, never its target.
  if (fs.lstatSync(p).isDirectory()) return -1;
  fs.unlinkSync(p);
  return fs.openSync(p, FLAGS, mode);
}
function run(j) {
  let fd = -1;
  try {
    fd = openNew(j.path, j.openMode);
    if (fd < 0) return { id: j.id, failure: { kind: 'directory' } };
    let off = 0;
    while (off < j.data.length) off += fs.writeSync(fd, j.data, off, j.data.length - off, off);
    if (j.owner) fs.fchownSync(fd, j.owner.uid, j.owner.gid);
    if (j.chmod !== undefined) fs.fchmodSync(fd, j.chmod);
    if (j.mtime !== undefined) fs.futimesSync(fd, j.mtime, j.mtime);
    return { id: j.id };
  } catch (err) {
    return { id: j.id, failure: { kind: 'errno', code: String(err.code), errno: err.errno | 0, syscall: String(err.syscall || ''), message: err.message } };
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
parentPort.on('message', (jobs) => parentPort.postMessage(jobs.map(run)));
`;

interface Slot {
  worker: Worker;
  /** Jobs sent and not answered, by id. */
  waiting: Map<number, (failure: FileJobFailure | undefined) => void>;
}

/**
 * Writer threads, started on first use. Jobs go to the least busy thread; the
 * promise of each job settles with its failure (or undefined), never rejects,
 * so the caller decides how to name the entry at fault.
 */
export class FileWriterPool {
  private slots: Slot[] = [];
  private nextId = 1;
  private closed = false;
  private crashed: Error | undefined;

  // One thread by default: on this project's test machine (ext4, 2 CPUs) a
  // second one made the kernel contend on inode allocation and added system
  // time without shortening the unpack.
  constructor(private readonly size = 1) {}

  private start(): void {
    for (let i = 0; i < this.size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, name: 'nodularity-file-writer' });
      const slot: Slot = { worker, waiting: new Map() };
      worker.on('message', (results: { id: number; failure?: FileJobFailure }[]) => {
        for (const r of results) {
          const done = slot.waiting.get(r.id);
          slot.waiting.delete(r.id);
          done?.(r.failure);
        }
        if (slot.waiting.size === 0) worker.unref();
      });
      const fail = (err: Error): void => {
        this.crashed ??= err;
        const failure: FileJobFailure = { kind: 'errno', code: 'EWORKER', errno: 0, syscall: 'worker', message: `file writer thread failed: ${err.message}` };
        for (const done of slot.waiting.values()) done(failure);
        slot.waiting.clear();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => { if (!this.closed) fail(new Error(`exited with code ${code}`)); });
      // An idle pool must not keep alive a process that forgot to close it.
      worker.unref();
      this.slots.push(slot);
    }
  }

  /** Queue one file; resolves when it is written and closed, with the failure if any. */
  write(job: FileJob): Promise<FileJobFailure | undefined> {
    if (this.closed) throw new Error('FileWriterPool used after close()');
    if (this.crashed) return Promise.resolve({ kind: 'errno', code: 'EWORKER', errno: 0, syscall: 'worker', message: `file writer thread failed: ${this.crashed.message}` });
    if (this.slots.length === 0) this.start();
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.waiting.size < slot.waiting.size) slot = s;
    const id = this.nextId++;
    const promise = new Promise<FileJobFailure | undefined>((resolve) => slot.waiting.set(id, resolve));
    // Referenced while it owes an answer: the caller may be awaiting nothing else.
    if (slot.waiting.size === 1) slot.worker.ref();
    const transfer = job.data.byteOffset === 0 && job.data.byteLength === job.data.buffer.byteLength && job.data.buffer instanceof ArrayBuffer ? [job.data.buffer] : [];
    slot.worker.postMessage([{ ...job, id }], transfer);
    return promise;
  }

  /** Stop the threads. Callers wait for their jobs first; anything still queued is abandoned. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
