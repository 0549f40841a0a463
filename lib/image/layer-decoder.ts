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
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { DigestCheck, parseDigest } from './digest.js';
import { ImageError, type ImageErrorCode } from './errors.js';
import type { Compression } from './manifest.js';

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

// The thread's source: plain CommonJS, evaluated as-is, so it needs neither a
// build step nor the test loaders (as in write-thread.ts).
const WORKER_SOURCE = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const zlib = require('node:zlib');
const { PassThrough, Transform } = require('node:stream');
const tar = require(workerData.tarStream);
const { OUT_WINDOW, SMALL_FILE, ARENA, SPARE_ARENAS, POST_RECORDS, POST_BYTES } = workerData.limits;
const CHUNK = 256 << 10;

// Hashes the uncompressed stream and throws at the end if it is not the
// diff_id (before the consumer is told the stream ended cleanly). The blob's
// own digest and size are checked on the loop thread (DigestCheck).
function diffIdChecker(expected, algorithm) {
  const hash = createHash(algorithm);
  return {
    update(chunk) { hash.update(chunk); },
    end() {
      const actual = algorithm + ':' + hash.digest('hex');
      if (actual !== expected) throw { image: 'DIGEST_MISMATCH', digest: expected, message: 'diff_id ' + expected + ': content hashes to ' + actual };
    },
  };
}

// fzstd does not check the frame's content checksum; the diff_id (checked
// after this stage) covers the decompressed bytes instead.
function zstdStream() {
  const { Decompress } = require(workerData.fzstd);
  let out;
  const dec = new Decompress((data) => out.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
  const wrap = (err) => ({ code: 'ZSTD_DATA_ERROR', message: 'zstd: ' + (err && err.message || String(err)) });
  out = new Transform({
    transform(chunk, _e, cb) { try { dec.push(chunk); cb(); } catch (err) { cb(wrap(err)); } },
    flush(cb) { try { dec.push(new Uint8Array(0), true); cb(); } catch (err) { cb(wrap(err)); } },
  });
  return out;
}

let job; // the one job in progress

// Entry records go out in messages of up to POST_RECORDS records or
// POST_BYTES of content. Contents are copied once, from the decoded stream
// into SharedArrayBuffer arenas: the loop thread and the write thread see
// the same memory, so nothing is copied or detached on the way to the disk.
//
// Arenas are reused once the loop thread says nothing refers to them any
// more ('free' messages): fresh memory costs a page fault per 4 KiB, which
// measured as much as the copy itself. Arena ids only grow, and entries use
// them in order, so 'free below N' releases every arena before N.
let nextArena = 1, current = 0;
const inUse = new Map();
const spare = [];
function freeBelow(n) {
  for (const [id, a] of inUse) {
    if (id >= n || id === current) continue;
    inUse.delete(id);
    if (spare.length < SPARE_ARENAS) spare.push(a);
  }
}
function recorder(self) {
  let records = [], bytes = 0, arena = null, used = 0;
  // A view for n bytes of content, and the arena it is in (0: its own buffer).
  const alloc = (n) => {
    if (n > ARENA) return [new Uint8Array(new SharedArrayBuffer(n)), 0];
    if (!arena || used + n > ARENA) {
      arena = spare.pop() || new Uint8Array(new SharedArrayBuffer(ARENA));
      used = 0;
      current = nextArena++;
      inUse.set(current, arena);
    }
    const view = arena.subarray(used, used + n);
    used += n;
    return [view, current];
  };
  const post = () => {
    if (records.length === 0) return;
    self.credits--;
    parentPort.postMessage({ type: 'entries', id: self.id, records });
    records = []; bytes = 0;
  };
  const add = (r, n) => {
    records.push(r);
    bytes += n;
    if (records.length >= POST_RECORDS || bytes >= POST_BYTES) post();
  };
  return { alloc, add, post };
}

// Consumes a tar-stream entry: its record, then (small files) its content
// in one view, or (large files) a record per piece and an end record.
function onEntry(rec, h, stream, next) {
  const r = { kind: 'entry', name: h.name, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.size,
    mtime: h.mtime ? h.mtime.getTime() / 1000 : undefined, linkname: h.linkname || undefined,
    devmajor: h.devmajor, devminor: h.devminor };
  // A PAX sparse file (GNU.sparse.* records): tar-stream hands over its raw
  // stored form (a map and the data segments, under GNUSparseFile.N/NAME).
  // Flag it, with its real name, so that the layer is refused, not unpacked
  // as a different file. (A GNU 'S' sparse entry comes with type null.)
  if (h.pax) for (const k of Object.keys(h.pax)) if (k.startsWith('GNU.sparse.')) { r.sparse = h.pax['GNU.sparse.name'] || h.name; break; }
  const size = h.size || 0;
  // The parser reports a broken entry itself (extract 'error'); the entry's own
  // error event must not become an uncaught exception that kills this thread.
  stream.on('error', () => {});
  if ((h.type !== 'file' && h.type !== 'contiguous-file') || size === 0 || r.sparse) {
    rec.add(r, 0);
    stream.on('end', () => next());
    stream.resume();
    return;
  }
  if (size <= SMALL_FILE) {
    const [data, arena] = rec.alloc(size);
    r.arena = arena;
    let off = 0;
    stream.on('data', (c) => { const n = Math.min(c.length, size - off); data.set(n === c.length ? c : c.subarray(0, n), off); off += n; });
    stream.on('end', () => { r.data = off === size ? data : data.subarray(0, off); rec.add(r, off); next(); });
    return;
  }
  r.large = true;
  rec.add(r, 0);
  stream.on('data', (c) => { const [d, arena] = rec.alloc(c.length); d.set(c); rec.add({ kind: 'piece', data: d, arena }, c.length); });
  stream.on('end', () => { rec.add({ kind: 'end' }, 0); next(); });
}

// Why not pipeline(): a zlib stream hands each inflated piece synchronously to
// a piped consumer before it sends the next inflate to the thread pool, so
// hashing and parsing would take turns with inflating. Read through the
// async iterator instead: the piece is buffered, the next inflate starts, and
// this thread hashes and parses while the pool thread inflates.
function start(m) {
  const self = { id: m.id, codec: undefined, credits: OUT_WINDOW, wake: undefined, aborted: false };
  job = self;
  const diff = m.diffId ? diffIdChecker(m.diffId, m.diffIdAlgorithm) : undefined;
  const hwm = { readableHighWaterMark: 4 * CHUNK };
  const codec = m.compression === 'gzip' ? zlib.createGunzip({ chunkSize: CHUNK, ...hwm })
    : m.compression === 'zstd' ? zstdStream()
      : new PassThrough(hwm);
  self.codec = codec;
  self.take = (buf) => {
    // Each compressed chunk the codec has consumed frees one input credit.
    codec.write(buf, () => { if (!self.aborted) parentPort.postMessage({ type: 'credit', id: self.id }); });
  };
  self.end = () => codec.end();
  const rec = recorder(self);
  const extract = tar.extract();
  self.extract = extract;
  let tarError, drained = true, finished = false, closed = false;
  let signal;
  const poke = () => { const s = signal; signal = undefined; if (s) s(); };
  extract.on('entry', (h, stream, next) => onEntry(rec, h, stream, next));
  extract.on('error', (err) => { tarError = err; poke(); });
  extract.on('drain', () => { drained = true; poke(); });
  extract.on('finish', () => { finished = true; poke(); });
  extract.on('close', () => { closed = true; poke(); });
  // Wait for the tar parser (streamx) to drain or finish; its failure is the job's.
  const until = async (ready) => {
    while (!ready() && tarError === undefined && !closed && !self.aborted) await new Promise((resolve) => { signal = resolve; });
    if (tarError !== undefined) throw tarError;
    if (!ready() && !self.aborted) throw new Error('tar stream closed before its end');
  };
  (async () => {
    for await (const chunk of codec) {
      if (diff) diff.update(chunk);
      if (!extract.write(chunk)) { drained = false; await until(() => drained); }
      if (tarError !== undefined) throw tarError;
      // The loop thread has taken everything sent: it is waiting, so send what there is.
      if (self.credits === OUT_WINDOW) rec.post();
      while (self.credits <= 0 && !self.aborted) await new Promise((resolve) => { self.wake = resolve; });
      if (self.aborted) return;
    }
    if (diff) diff.end();
    extract.end();
    await until(() => finished);
    rec.post();
  })().then(() => {
    if (job === self) job = undefined;
    if (!self.aborted) parentPort.postMessage({ type: 'end', id: self.id });
  }, (err) => {
    if (job === self) job = undefined;
    if (self.aborted) return;
    parentPort.postMessage({ type: 'error', id: self.id, error: {
      image: err.image, digest: err.digest, code: err.code === undefined ? undefined : String(err.code),
      message: String(err.message || err),
    } });
  });
}

parentPort.on('message', (m) => {
  if (m.type === 'start') return start(m);
  if (m.type === 'free') return freeBelow(m.below);
  if (!job || job.id !== m.id) return;
  if (m.type === 'data') job.take(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
  else if (m.type === 'end') job.end();
  else if (m.type === 'ack') {
    job.credits += m.n;
    const wake = job.wake;
    if (wake && job.credits > 0) { job.wake = undefined; wake(); }
  } else if (m.type === 'abort') {
    const j = job;
    j.aborted = true;
    job = undefined;
    j.codec.destroy();
    j.extract.destroy();
    if (j.wake) j.wake();
  }
});
`;

interface WorkerError { image?: ImageErrorCode; digest?: string; code?: string; message: string }

/** A tar entry's header, as the decode thread sends it. */
export interface EntryRecord {
  kind: 'entry';
  name: string;
  type: string;
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
    const req = createRequire(import.meta.url);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true, name: 'nodularity-layer-decoder',
      workerData: { fzstd: req.resolve('fzstd'), tarStream: req.resolve('tar-stream'), limits: { OUT_WINDOW, SMALL_FILE, ARENA, SPARE_ARENAS, POST_RECORDS, POST_BYTES } },
    });
    worker.on('message', (m: FromWorker) => this.active?.(m));
    const fail = (err: Error): void => {
      this.crashed ??= err;
      this.active?.({ type: 'error', id: 0, error: { message: `layer decode thread failed: ${err.message}` } });
    };
    worker.on('error', fail);
    worker.on('exit', (code) => { if (this.worker === worker) fail(new Error(`exited with code ${code}`)); });
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
    const id = this.nextId++;
    const queue: TarRecord[][] = [];
    // The blob's own digest is checked here, as it is read: this thread has
    // time to spare, the decode thread has not.
    const blob = new DigestCheck(spec.digest, { what: 'layer', ...(spec.size === undefined ? {} : { size: spec.size }) });
    let inFlight = 0;
    /** The thread has sent its last message for this job (or will not: aborted). */
    let done = false;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const poke = (): void => { const w = wake; wake = undefined; w?.(); };
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
    worker.postMessage({
      type: 'start', id, compression: spec.compression,
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
      worker.postMessage({ type: 'data', id, data }, [data.buffer as ArrayBuffer]);
      if (++inFlight >= IN_WINDOW) source.pause();
    });
    source.on('end', () => {
      if (done || failure) return;
      // A wrong digest fails the layer before the thread may report a clean end.
      const bad = blob.end();
      if (bad) return fail(bad);
      worker.postMessage({ type: 'end', id });
    });
    source.on('error', fail);
    try {
      for (;;) {
        const records = queue.shift();
        if (records) {
          // Taking a batch gives the thread back its credit.
          if (!done) worker.postMessage({ type: 'ack', id, n: 1 });
          yield records;
          continue;
        }
        if (failure) throw failure;
        if (done) return;
        await new Promise<void>((resolve) => { wake = resolve; });
      }
    } finally {
      if (!done) worker.postMessage({ type: 'abort', id });
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
    this.worker?.postMessage({ type: 'free', below });
  }

  /** Stop the thread (an unfinished decode is abandoned). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.active = undefined;
    await w?.terminate();
  }
}
