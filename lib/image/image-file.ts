// Opening files that come with an image (a layout's oci-layout, index.json
// and blobs, a docker-archive's staged members, /etc/passwd in a root): none
// of them may hang the runtime or eat its memory.
//
// A FIFO as index.json blocks open(2) until a writer comes, forever; a blob
// symlinked to /dev/zero reads without end; a sparse file of a terabyte reads
// as a terabyte of zeros. So: open with O_NOFOLLOW (a symlink is refused, not
// followed to a device) and O_NONBLOCK (opening a FIFO does not wait), fstat
// the fd and require a regular file, then read at most the size the caller
// expects plus one byte, after refusing by fstat's size. O_NONBLOCK stays set:
// it has no effect on reads of a regular file (Linux ignores it there), and
// Node has no fcntl(F_SETFL) to clear it.
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ImageError, type ImageErrorCode } from './errors.js';

/** Manifests, configs, indexes and other JSON of an image: larger is broken or hostile. */
export const MAX_JSON = 16 << 20;

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK; // Node adds O_CLOEXEC itself

/** What a non-regular file is, for the message. */
export function fileKind(st: fs.Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

/** Which error code a problem with this file is (an image's blob is BAD_MANIFEST or BAD_LAYER, a layout file BAD_SOURCE). */
export interface ImageFileOptions {
  /** How to name the file in messages, e.g. `oci:DIR: index.json` or `layer sha256:...`. */
  what: string;
  code?: ImageErrorCode;
  digest?: string;
}

function fail(o: ImageFileOptions, why: string, cause?: unknown): ImageError {
  return new ImageError(o.code ?? 'BAD_SOURCE', `${o.what}: ${why}`, {
    ...(o.digest ? { digest: o.digest } : {}),
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * Open `file` as a regular file without following a symlink at its last
 * component and without blocking on a FIFO. ENOENT is passed through (the
 * callers say "missing" in their own words); everything else not a regular
 * file is an ImageError naming it.
 */
export async function openImageFile(file: string, o: ImageFileOptions): Promise<{ fh: fsp.FileHandle; size: number }> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw err;
    // ELOOP: the last component is a symlink (O_NOFOLLOW).
    if (code === 'ELOOP') throw fail(o, `${file} is a symlink; image files must be regular files (not followed)`, err);
    throw fail(o, `cannot open ${file} (${code ?? (err as Error).message})`, err);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw fail(o, `${file} is ${fileKind(st)}, not a regular file`);
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/**
 * Read a whole image file of at most `max` bytes (and exactly `size` bytes
 * when the caller knows it from a descriptor), refusing a bigger one by its
 * size, before reading it, and reading no more than the bound plus one byte
 * even if it grows meanwhile.
 */
export async function readImageFile(
  file: string,
  o: ImageFileOptions & { max: number; size?: number },
): Promise<Buffer> {
  const { fh, size } = await openImageFile(file, o);
  try {
    if (o.size !== undefined && size !== o.size) {
      throw new ImageError(
        'SIZE_MISMATCH',
        `${o.what}: ${file} has ${size} bytes, its descriptor declares ${o.size}`,
        o.digest ? { digest: o.digest } : {},
      );
    }
    if (size > o.max) throw fail(o, `${file} is ${size} bytes, more than the ${o.max} allowed`);
    const limit = Math.min(o.max, o.size ?? o.max) + 1;
    const buf = Buffer.allocUnsafe(Math.min(limit, size + 1));
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > Math.min(o.max, o.size ?? o.max)) throw fail(o, `${file} grew while it was read (past ${got - 1} bytes)`);
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/**
 * A stream of a blob file checked like readImageFile (regular, not larger
 * than `size`), reading at most `size + 1` bytes: the digest check after it
 * sees a file that grew as "more than declared", never an endless stream.
 */
export async function openImageStream(file: string, o: ImageFileOptions & { size: number }): Promise<Readable> {
  const { fh, size } = await openImageFile(file, o);
  if (size > o.size) {
    await fh.close();
    throw new ImageError(
      'SIZE_MISMATCH',
      `${o.what}: ${file} has ${size} bytes, its descriptor declares ${o.size}`,
      o.digest ? { digest: o.digest } : {},
    );
  }
  // `end` is inclusive: size + 1 bytes at most.
  return fh.createReadStream({ start: 0, end: o.size, highWaterMark: 1 << 20, autoClose: true });
}
