// The decode thread's body (see layer-decoder.ts for why a thread, the
// credits and the arenas): decompresses one layer at a time, hashes the
// uncompressed stream against its diff_id, parses the tar and sends entry
// records whose contents sit in SharedArrayBuffer arenas.
import { createHash } from 'node:crypto';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { parentPort, workerData } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { Decompress } from 'fzstd';
import tar from 'tar-stream';
import type { ExtractEvents, Header } from 'tar-stream';
import type { ImageErrorCode } from './errors.js';
import type { Compression } from './manifest.js';
import type { EntryRecord, TarRecord, WorkerError } from './layer-decoder.js';

/** What the loop thread sends (see LayerDecoder.decode). */
export type ToDecoder =
  | { type: 'start'; id: number; compression: Compression; diffId?: string; diffIdAlgorithm?: string }
  | { type: 'free'; below: number }
  | { type: 'data'; id: number; data: Uint8Array }
  | { type: 'end'; id: number }
  | { type: 'ack'; id: number; n: number }
  | { type: 'abort'; id: number };

/** The windows and sizes, set by the loop thread (workerData.limits). */
export interface DecoderLimits {
  OUT_WINDOW: number;
  SMALL_FILE: number;
  ARENA: number;
  SPARE_ARENAS: number;
  POST_RECORDS: number;
  POST_BYTES: number;
}

const port = parentPort!;
const { OUT_WINDOW, SMALL_FILE, ARENA, SPARE_ARENAS, POST_RECORDS, POST_BYTES } = (
  workerData as { limits: DecoderLimits }
).limits;
const CHUNK = 256 << 10;

/** A failure as it crosses the thread boundary: an ImageError's code, or an errno-style code. */
type Failure = { image?: ImageErrorCode; digest?: string; code?: string | number; message?: string };

// Hashes the uncompressed stream and throws at the end if it is not the
// diff_id (before the consumer is told the stream ended cleanly). The blob's
// own digest and size are checked on the loop thread (DigestCheck).
function diffIdChecker(expected: string, algorithm: string) {
  const hash = createHash(algorithm);
  return {
    update(chunk: Buffer): void {
      hash.update(chunk);
    },
    end(): void {
      const actual = `${algorithm}:${hash.digest('hex')}`;
      if (actual !== expected) {
        const f: Failure = {
          image: 'DIGEST_MISMATCH',
          digest: expected,
          message: `diff_id ${expected}: content hashes to ${actual}`,
        };
        throw f;
      }
    },
  };
}

// fzstd does not check the frame's content checksum; the diff_id (checked
// after this stage) covers the decompressed bytes instead.
function zstdStream(): Transform {
  const wrap = (err: unknown): Failure => ({
    code: 'ZSTD_DATA_ERROR',
    message: `zstd: ${(err as Error)?.message || String(err)}`,
  });
  const out: Transform = new Transform({
    transform(chunk: Buffer, _e, cb) {
      try {
        dec.push(chunk);
        cb();
      } catch (err) {
        cb(wrap(err) as Error);
      }
    },
    flush(cb) {
      try {
        dec.push(new Uint8Array(0), true);
        cb();
      } catch (err) {
        cb(wrap(err) as Error);
      }
    },
  });
  const dec = new Decompress((data) => out.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
  return out;
}

interface Job {
  id: number;
  codec: Readable & { write(b: Buffer, cb: () => void): boolean; end(): void; destroy(): void };
  extract: ReturnType<typeof tar.extract>;
  credits: number;
  wake: (() => void) | undefined;
  aborted: boolean;
  take(buf: Buffer): void;
  end(): void;
}

let job: Job | undefined; // the one job in progress

// Entry records go out in messages of up to POST_RECORDS records or
// POST_BYTES of content. Contents are copied once, from the decoded stream
// into SharedArrayBuffer arenas: the loop thread and the write thread see
// the same memory, so nothing is copied or detached on the way to the disk.
//
// Arenas are reused once the loop thread says nothing refers to them any
// more ('free' messages): fresh memory costs a page fault per 4 KiB, which
// measured as much as the copy itself. Arena ids only grow, and entries use
// them in order, so 'free below N' releases every arena before N.
let nextArena = 1;
let current = 0;
const inUse = new Map<number, Uint8Array>();
const spare: Uint8Array[] = [];

function freeBelow(n: number): void {
  for (const [id, a] of inUse) {
    if (id >= n || id === current) continue;
    inUse.delete(id);
    if (spare.length < SPARE_ARENAS) spare.push(a);
  }
}

interface Recorder {
  alloc(n: number): [Uint8Array, number];
  add(r: TarRecord, n: number): void;
  post(): void;
}

function recorder(self: Job): Recorder {
  let records: TarRecord[] = [];
  let bytes = 0;
  let arena: Uint8Array | null = null;
  let used = 0;
  // A view for n bytes of content, and the arena it is in (0: its own buffer).
  const alloc = (n: number): [Uint8Array, number] => {
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
  const post = (): void => {
    if (records.length === 0) return;
    self.credits--;
    port.postMessage({ type: 'entries', id: self.id, records });
    records = [];
    bytes = 0;
  };
  const add = (r: TarRecord, n: number): void => {
    records.push(r);
    bytes += n;
    if (records.length >= POST_RECORDS || bytes >= POST_BYTES) post();
  };
  return { alloc, add, post };
}

/** An entry's content stream (a streamx Readable). */
type EntryStream = ExtractEvents['entry'][1];

// Consumes a tar-stream entry: its record, then (small files) its content
// in one view, or (large files) a record per piece and an end record.
function onEntry(rec: Recorder, h: Header, stream: EntryStream, next: () => void): void {
  const r: EntryRecord = {
    kind: 'entry',
    name: h.name,
    type: h.type ?? null,
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size: h.size,
    mtime: h.mtime ? h.mtime.getTime() / 1000 : undefined,
    linkname: h.linkname || undefined,
    devmajor: h.devmajor,
    devminor: h.devminor,
  };
  // A PAX sparse file (GNU.sparse.* records): tar-stream hands over its raw
  // stored form (a map and the data segments, under GNUSparseFile.N/NAME).
  // Flag it, with its real name, so that the layer is refused, not unpacked
  // as a different file. (A GNU 'S' sparse entry comes with type null.)
  if (h.pax) {
    for (const k of Object.keys(h.pax)) {
      if (k.startsWith('GNU.sparse.')) {
        r.sparse = (h.pax as Record<string, string>)['GNU.sparse.name'] || h.name;
        break;
      }
    }
  }
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
    stream.on('data', (chunk) => {
      const c = chunk as Buffer;
      const n = Math.min(c.length, size - off);
      data.set(n === c.length ? c : c.subarray(0, n), off);
      off += n;
    });
    stream.on('end', () => {
      r.data = off === size ? data : data.subarray(0, off);
      rec.add(r, off);
      next();
    });
    return;
  }
  r.large = true;
  rec.add(r, 0);
  stream.on('data', (chunk) => {
    const c = chunk as Buffer;
    const [d, arena] = rec.alloc(c.length);
    d.set(c);
    rec.add({ kind: 'piece', data: d, arena }, c.length);
  });
  stream.on('end', () => {
    rec.add({ kind: 'end' }, 0);
    next();
  });
}

// Why not pipeline(): a zlib stream hands each inflated piece synchronously to
// a piped consumer before it sends the next inflate to the thread pool, so
// hashing and parsing would take turns with inflating. Read through the
// async iterator instead: the piece is buffered, the next inflate starts, and
// this thread hashes and parses while the pool thread inflates.
function start(m: Extract<ToDecoder, { type: 'start' }>): void {
  const diff = m.diffId ? diffIdChecker(m.diffId, m.diffIdAlgorithm!) : undefined;
  const hwm = { readableHighWaterMark: 4 * CHUNK };
  const codec = (
    m.compression === 'gzip'
      ? zlib.createGunzip({ chunkSize: CHUNK, ...hwm })
      : m.compression === 'zstd'
        ? zstdStream()
        : new PassThrough(hwm)
  ) as Job['codec'];
  const extract = tar.extract();
  const self: Job = {
    id: m.id,
    codec,
    extract,
    credits: OUT_WINDOW,
    wake: undefined,
    aborted: false,
    // Each compressed chunk the codec has consumed frees one input credit.
    take: (buf) =>
      codec.write(buf, () => {
        if (!self.aborted) port.postMessage({ type: 'credit', id: self.id });
      }),
    end: () => codec.end(),
  };
  job = self;
  const rec = recorder(self);
  let tarError: unknown;
  let drained = true;
  let finished = false;
  let closed = false;
  let signal: (() => void) | undefined;
  const poke = (): void => {
    const s = signal;
    signal = undefined;
    if (s) s();
  };
  extract.on('entry', (h, stream, next) => onEntry(rec, h, stream, next));
  extract.on('error', (err) => {
    tarError = err;
    poke();
  });
  extract.on('drain', () => {
    drained = true;
    poke();
  });
  extract.on('finish', () => {
    finished = true;
    poke();
  });
  extract.on('close', () => {
    closed = true;
    poke();
  });
  // Wait for the tar parser (streamx) to drain or finish; its failure is the job's.
  const until = async (ready: () => boolean): Promise<void> => {
    while (!ready() && tarError === undefined && !closed && !self.aborted)
      await new Promise<void>((resolve) => {
        signal = resolve;
      });
    if (tarError !== undefined) throw tarError;
    if (!ready() && !self.aborted) throw new Error('tar stream closed before its end');
  };
  (async () => {
    for await (const chunk of codec as AsyncIterable<Buffer>) {
      if (diff) diff.update(chunk);
      if (!extract.write(chunk)) {
        drained = false;
        await until(() => drained);
      }
      if (tarError !== undefined) throw tarError;
      // The loop thread has taken everything sent: it is waiting, so send what there is.
      if (self.credits === OUT_WINDOW) rec.post();
      while (self.credits <= 0 && !self.aborted)
        await new Promise<void>((resolve) => {
          self.wake = resolve;
        });
      if (self.aborted) return;
    }
    if (diff) diff.end();
    extract.end(undefined); // streamx's types want an argument; none ends the stream
    await until(() => finished);
    rec.post();
  })().then(
    () => {
      if (job === self) job = undefined;
      if (!self.aborted) port.postMessage({ type: 'end', id: self.id });
    },
    (err: Failure) => {
      if (job === self) job = undefined;
      if (self.aborted) return;
      const error: WorkerError = {
        ...(err.image ? { image: err.image } : {}),
        ...(err.digest ? { digest: err.digest } : {}),
        ...(err.code === undefined ? {} : { code: String(err.code) }),
        message: String(err.message || err),
      };
      port.postMessage({ type: 'error', id: self.id, error });
    },
  );
}

port.on('message', (m: ToDecoder) => {
  if (m.type === 'start') return start(m);
  if (m.type === 'free') return freeBelow(m.below);
  if (!job || job.id !== m.id) return;
  if (m.type === 'data') job.take(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
  else if (m.type === 'end') job.end();
  else if (m.type === 'ack') {
    job.credits += m.n;
    const wake = job.wake;
    if (wake && job.credits > 0) {
      job.wake = undefined;
      wake();
    }
  } else if (m.type === 'abort') {
    const j = job;
    j.aborted = true;
    job = undefined;
    j.codec.destroy();
    j.extract.destroy();
    if (j.wake) j.wake();
  }
});
