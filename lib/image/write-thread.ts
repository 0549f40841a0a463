// One worker thread that applies a layer's filesystem changes with
// synchronous system calls, in the order they were submitted.
//
// Why: through fs.promises every call is a hand-off between the loop thread
// and a libuv pool thread, and the unpack awaited them one entry after the
// other: a small file cost 4 to 6 round trips (open, write, chown, chmod,
// futimes, close), a symlink 3, a directory 1 to 2. Profiles of the minbase
// unpack showed the loop thread idle more than half the time, waiting on
// those round trips. Here the loop thread parses the tar, checks every path
// and submits jobs in batches; this thread runs them back to back and
// answers once per batch.
//
// Safety. The caller (lib/image/unpack.ts) keeps a model of the rootfs: the
// set of directories it has made or verified. It submits a job only when
// every parent of the job's path is in that set, so the job's path resolves
// through real directories this unpack made; the final component is created
// with O_EXCL|O_NOFOLLOW (files), symlink(2), link(2) or mkdir(2), none of
// which follows a link there. Jobs run strictly in order, and the thread
// stops at the first job that fails: every later job is skipped, so a job
// whose premise (an earlier mkdir) did not hold never runs. Whenever the
// caller touches the filesystem itself (whiteouts, device nodes, a
// parent it has not verified) it first waits until no job is in flight.
// The thread's body is write-worker.ts.
import { Worker } from 'node:worker_threads';
import { workerUrl } from './worker-url.js';
import type { WriteAnswer } from './write-worker.js';

export interface Owner {
  uid: number;
  gid: number;
}

/** Create and fill a regular file (replacing a non-directory in the way). */
export interface FileJob {
  t: 'file';
  path: string;
  /** Mode passed to open(2) (before the umask). */
  openMode: number;
  /** The content (in shared memory: it is not copied on the way). */
  data: Uint8Array;
  /** More content follows in `append` jobs, then a `close` job applies owner, mode and mtime. */
  keepOpen?: boolean;
  owner?: Owner;
  /** fchmod to this when set (after chown, which may clear setuid bits). */
  chmod?: number;
  /** mtime in seconds since the epoch. */
  mtime?: number;
}

/** More content for the file a `keepOpen` file job left open. */
export interface AppendJob {
  t: 'append';
  data: Uint8Array;
}

/** Finish the file a `keepOpen` file job left open. */
export interface CloseJob {
  t: 'close';
  owner?: Owner;
  chmod?: number;
  mtime?: number;
}

/** Make a directory 0700 (owner-writable while unpacking), replacing a non-directory in the way. */
export interface MkdirJob {
  t: 'mkdir';
  path: string;
}

/** Create a symlink (replacing a non-directory in the way). */
export interface SymlinkJob {
  t: 'symlink';
  path: string;
  target: string;
  owner?: Owner;
  mtime?: number;
}

/** Hard-link `path` to the existing non-directory `target` (replacing a non-directory at `path`). */
export interface LinkJob {
  t: 'link';
  path: string;
  target: string;
}

/** Final directory metadata, applied in the given order (deepest first). */
export interface DirMetaJob {
  t: 'dirmeta';
  dirs: { path: string; mode: number; owner?: Owner; mtime?: number }[];
}

export type WriteJob = FileJob | AppendJob | CloseJob | MkdirJob | SymlinkJob | LinkJob | DirMetaJob;

/** Why a job failed. */
export type WriteFailure =
  /** A directory is where a file, symlink or link was to be made. */
  | { kind: 'directory' }
  /** The target of a link job does not exist. */
  | { kind: 'missing' }
  /** The target of a link job is a directory. */
  | { kind: 'target-directory' }
  | { kind: 'errno'; code: string; errno: number; syscall: string; path: string; message: string };

// Jobs go out in batches: a message per job would cost more than most jobs
// (on 2 busy CPUs a postMessage measured 0.15 to 0.6 ms). A batch goes out
// when it is full, or at the next turn of the loop while the thread has
// fewer than QUEUED batches to work on; otherwise it grows until the thread
// answers one.
const BATCH = 256;
const QUEUED = 2;

interface InFlight<T> {
  id: number;
  bytes: number;
  tag: T;
}

/**
 * The write thread, started on first use. Jobs carry a caller-chosen tag
 * (the tar entry they came from); the first failure is reported once, with
 * its tag, to the `onFailure` callback, and every job after it is dropped.
 */
export class WriteThread<T> {
  private worker: Worker | undefined;
  private nextId = 1;
  private batch: (WriteJob & { id: number })[] = [];
  private flushScheduled = false;
  /** Batches sent and not answered. */
  private sent = 0;
  /** Submitted and not yet answered, oldest first. */
  private inFlight: InFlight<T>[] = [];
  private head = 0;
  private bytes = 0;
  private waiters: { jobs: number; bytes: number; wake: () => void }[] = [];
  private failed = false;
  private closed = false;

  /**
   * `onFailure` hears of the first failure; `onDone`, once per answer from
   * the thread, of the last job it finished.
   */
  constructor(
    private readonly onFailure: (failure: WriteFailure, tag: T) => void,
    private readonly onDone?: (tag: T) => void,
  ) {}

  /** Jobs submitted and not yet done. */
  get pending(): number {
    return this.inFlight.length - this.head;
  }

  /** Queue a job. `bytes` counts against the in-flight memory budget. */
  submit(job: WriteJob, tag: T, bytes = 0): void {
    if (this.closed) throw new Error('WriteThread used after close()');
    if (this.failed) return;
    const id = this.nextId++;
    this.batch.push({ ...job, id });
    this.inFlight.push({ id, bytes, tag });
    this.bytes += bytes;
    if (this.batch.length >= BATCH) this.flush();
    else if (!this.flushScheduled && this.sent < QUEUED) {
      this.flushScheduled = true;
      setImmediate(() => {
        if (this.sent < QUEUED) this.flush();
        else this.flushScheduled = false;
      });
    }
  }

  private start(): Worker {
    const worker = new Worker(workerUrl('write-worker', import.meta.url), { name: 'nodularity-writer' });
    worker.on('message', (r: WriteAnswer) => this.answered(r));
    const crash = (err: Error): void => {
      if (this.closed) return;
      this.sent = 0;
      this.batch = [];
      const failedId = this.inFlight[this.head]?.id;
      this.answered({
        upTo: this.nextId - 1,
        ...(failedId === undefined ? {} : { failedId }),
        failure: {
          kind: 'errno',
          code: 'EWORKER',
          errno: 0,
          syscall: 'worker',
          path: '',
          message: `write thread failed: ${err.message}`,
        },
      });
    };
    worker.on('error', crash);
    worker.on('exit', (code) => crash(new Error(`exited with code ${code}`)));
    worker.unref();
    return worker;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0 || this.closed) return;
    const worker = (this.worker ??= this.start());
    // Referenced while it owes an answer: the caller may be awaiting nothing else.
    worker.ref();
    worker.postMessage(this.batch);
    this.sent++;
    this.batch = [];
  }

  private answered(r: WriteAnswer): void {
    this.sent = Math.max(0, this.sent - 1);
    if (this.batch.length > 0 && this.sent < QUEUED) this.flush();
    let last: InFlight<T> | undefined;
    while (this.head < this.inFlight.length && this.inFlight[this.head]!.id <= r.upTo) {
      const job = this.inFlight[this.head++]!;
      last = job;
      this.bytes -= job.bytes;
      if (r.failure && job.id === r.failedId && !this.failed) {
        this.failed = true;
        this.onFailure(r.failure, job.tag);
      }
    }
    if (last) this.onDone?.(last.tag);
    if (r.failure && !this.failed) {
      // A crash with nothing in flight.
      this.failed = true;
    }
    if (this.head > 4096 && this.head * 2 > this.inFlight.length) {
      this.inFlight = this.inFlight.slice(this.head);
      this.head = 0;
    }
    if (this.pending === 0) this.worker?.unref();
    this.waiters = this.waiters.filter((w) => {
      if (this.pending > w.jobs || this.bytes > w.bytes) return true;
      w.wake();
      return false;
    });
  }

  /** Resolve once at most `jobs` jobs and `bytes` bytes are in flight (0, 0: all done). */
  below(jobs: number, bytes: number): Promise<void> | undefined {
    if (this.pending <= jobs && this.bytes <= bytes) return undefined;
    this.flush();
    return new Promise((wake) => this.waiters.push({ jobs, bytes, wake }));
  }

  /** Resolve once every submitted job has run, failed or been dropped. */
  async idle(): Promise<void> {
    await this.below(0, 0);
  }

  /** Stop the thread. Call idle() first; anything still queued is abandoned. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    for (const w of this.waiters) w.wake();
    this.waiters = [];
    await worker?.terminate();
  }
}
