// Layer decoding and tar parsing on a worker thread: decompression (gzip
// with Node's zlib on the libuv pool, zstd with fzstd), the diff_id digest
// of the uncompressed tar, and tar-stream's parser all run beside the loop
// thread, which gets entry records and checks them (unpack.ts). The blob's
// own digest and size are checked on the loop thread as it reads the blob.
//
// Why a thread: Node's zlib stream pushes each piece of output synchronously
// down the pipe before it sends the next inflate to the pool, so on one
// thread decompression, hashing and parsing take turns instead of
// overlapping; and with the parser on the loop thread the loop thread was
// the busiest of all. GNU tar gets the overlap from its separate gzip
// process; this thread is that process, and the tar parser too.
//
// File contents are copied once, from the decoded stream into
// SharedArrayBuffer arenas that the loop thread and the write thread
// (write-thread.ts) read without copying. Arenas are reused once the loop
// thread says every write from them is done (release()).
//
// Flow control is by credits both ways: the loop thread keeps at most
// IN_WINDOW compressed chunks unconsumed in the thread, and the thread sends
// at most OUT_WINDOW record messages ahead of the loop thread. Memory stays
// bounded by those windows plus the write thread's in-flight budget.
//
// Failures cross the thread boundary as plain data and are rebuilt here: an
// ImageError keeps its code and digest (so the caller can tell a blob digest
// from a diff_id mismatch), a zlib or zstd error keeps its code.
// The thread's body is layer-decoder-worker.ts.
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { DigestCheck, parseDigest } from './digest.js';
import { ImageError, type ImageErrorCode } from './errors.js';
import type { Compression } from './manifest.js';
import type { DecoderLimits, ToDecoder } from './layer-decoder-worker.js';
import { workerUrl } from './worker-url.js';

/** What to decode and what it must hash to. */
export interface DecodeSpec {
  compression: Compression;
  /** Digest of the blob as stored, checked while streaming. */
  digest: string;
  /** Blob size from the descriptor, checked too when given. */
  size?: number;
  /** Digest of the uncompressed stream (config `rootfs.diff_ids`), checked when given. */
  diffId?: string;
}

const IN_WINDOW = 4;
// Entry messages the thread may send ahead of the loop thread.
const OUT_WINDOW = 4;
// Files up to this size arrive whole, in one view; larger ones in pieces.
const SMALL_FILE = 4 << 20;
const ARENA = 2 << 20;
const SPARE_ARENAS = 16;
const POST_RECORDS = 512;
const POST_BYTES = 2 << 20;

/** A failure from the thread, as plain data (rebuilt into an ImageError or an Error with its code). */
export interface WorkerError {
  image?: ImageErrorCode;
  digest?: string;
  code?: string;
  message: string;
}

/** A tar entry's header, as the decode thread sends it. */
export interface EntryRecord {
  kind: 'entry';
  name: string;
  /** tar-stream's type name; null for a type it does not know (a GNU 'S' sparse entry). */
  type: string | null;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** A regular file's whole content (files up to SMALL_FILE), in shared memory. */
  data?: Uint8Array;
  /** The arena `data` is in (0: a buffer of its own); see {@link LayerDecoder.release}. */
  arena?: number;
  /** A larger file: its content follows as `piece` records, then an `end` record. */
  large?: boolean;
  /** A PAX-format GNU sparse file: its real name (GNU.sparse.name). Its content is not sent. */
  sparse?: string;
}

export type TarRecord = EntryRecord | { kind: 'piece'; data: Uint8Array; arena: number } | { kind: 'end' };

type FromWorker =
  | { type: 'credit'; id: number }
  | { type: 'entries'; id: number; records: TarRecord[] }
  | { type: 'end'; id: number }
  | { type: 'error'; id: number; error: WorkerError };

function rebuild(e: WorkerError): Error {
  if (e.image) return new ImageError(e.image, e.message, e.digest === undefined ? {} : { digest: e.digest });
  return Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code });
}

/**
 * One decode thread, used for one layer at a time (layers are applied in
 * order). Started on first use; close() stops it.
 */
export class LayerDecoder {
  private worker: Worker | undefined;
  private nextId = 1;
  private active: ((m: FromWorker) => void) | undefined;
  private crashed: Error | undefined;

  private ensureWorker(): Worker {
    if (this.crashed) throw new Error(`layer decode thread failed: ${this.crashed.message}`);
    if (this.worker) return this.worker;
    const limits: DecoderLimits = { OUT_WINDOW, SMALL_FILE, ARENA, SPARE_ARENAS, POST_RECORDS, POST_BYTES };
    const worker = new Worker(workerUrl('layer-decoder-worker', import.meta.url), {
      name: 'nodularity-layer-decoder',
      workerData: { limits },
    });
    worker.on('message', (m: FromWorker) => this.active?.(m));
    const fail = (err: Error): void => {
      this.crashed ??= err;
      this.active?.({ type: 'error', id: 0, error: { message: `layer decode thread failed: ${err.message}` } });
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (this.worker === worker) fail(new Error(`exited with code ${code}`));
    });
    worker.unref();
    this.worker = worker;
    return worker;
  }

  /**
   * Decode and parse `source` (the compressed blob) per `spec`: yields the
   * tar's entries in order, in batches, and throws an ImageError on a digest
   * or size mismatch (after the last entry: the caller must not keep what it
   * unpacked), or the codec's or tar parser's error on a corrupt stream.
   * Leaving the loop early stops the decode and destroys `source`.
   * `onBytes` is told of each compressed chunk read.
   */
  async *decode(source: Readable, spec: DecodeSpec, onBytes?: (n: number) => void): AsyncGenerator<TarRecord[]> {
    if (this.active) throw new Error('LayerDecoder: one layer at a time');
    const worker = this.ensureWorker();
    const send = (m: ToDecoder, transfer?: ArrayBuffer[]): void => worker.postMessage(m, transfer);
    const id = this.nextId++;
    const queue: TarRecord[][] = [];
    // The blob's own digest is checked here, as it is read: this thread has
    // time to spare, the decode thread has not.
    const blob = new DigestCheck(spec.digest, {
      what: 'layer',
      ...(spec.size === undefined ? {} : { size: spec.size }),
    });
    let inFlight = 0;
    /** The thread has sent its last message for this job (or will not: aborted). */
    let done = false;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const poke = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    this.active = (m) => {
      if (m.id !== id && m.id !== 0) return;
      switch (m.type) {
        case 'credit':
          inFlight--;
          if (inFlight < IN_WINDOW && source.isPaused()) source.resume();
          return;
        case 'entries':
          queue.push(m.records);
          break;
        case 'end':
          done = true;
          break;
        case 'error':
          done = true;
          failure ??= rebuild(m.error);
          break;
      }
      poke();
    };
    worker.ref();
    send({
      type: 'start',
      id,
      compression: spec.compression,
      ...(spec.diffId ? { diffId: spec.diffId, diffIdAlgorithm: parseDigest(spec.diffId, 'diff_id').algorithm } : {}),
    });
    const fail = (err: Error): void => {
      failure ??= err;
      poke();
    };
    source.on('data', (chunk: Buffer) => {
      if (done || failure) return;
      onBytes?.(chunk.length);
      const bad = blob.update(chunk);
      if (bad) return fail(bad);
      // Copied, then the copy is transferred. The chunk is the source's,
      // not ours: another 'data' listener (a progress tap, a tee) may run
      // after this one, and a transferred buffer reads as empty there: a
      // layer "expected N bytes, got 0". Everything above reads the chunk
      // before this point; nothing may read `data` after postMessage. The
      // copy costs about 0.1 ms per MiB, next to gunzip's 5 to 10.
      const data = new Uint8Array(new ArrayBuffer(chunk.length));
      data.set(chunk);
      send({ type: 'data', id, data }, [data.buffer as ArrayBuffer]);
      if (++inFlight >= IN_WINDOW) source.pause();
    });
    source.on('end', () => {
      if (done || failure) return;
      // A wrong digest fails the layer before the thread may report a clean end.
      const bad = blob.end();
      if (bad) return fail(bad);
      send({ type: 'end', id });
    });
    source.on('error', fail);
    try {
      for (;;) {
        const records = queue.shift();
        if (records) {
          // Taking a batch gives the thread back its credit.
          if (!done) send({ type: 'ack', id, n: 1 });
          yield records;
          continue;
        }
        if (failure) throw failure;
        if (done) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      if (!done) send({ type: 'abort', id });
      done = true;
      this.active = undefined;
      worker.unref();
      source.destroy();
    }
  }

  /**
   * Let the thread reuse the arenas numbered below `below`: nothing refers
   * to their content any more (every write of it is done). Arenas are used
   * in entry order, so the arena of the last finished write is the bound.
   */
  release(below: number): void {
    this.worker?.postMessage({ type: 'free', below } satisfies ToDecoder);
  }

  /** Stop the thread (an unfinished decode is abandoned). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.active = undefined;
    await w?.terminate();
  }
}
