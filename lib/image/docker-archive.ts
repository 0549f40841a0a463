// docker-archive tarballs (`docker save`, `skopeo copy ... docker-archive:`).
//
// The archive has no digests of its own and its manifest.json usually comes
// last, so one sequential pass copies every member to a private temp dir
// while hashing it; the image is then described as an OCI manifest over
// those files (config by its sha256, layers by theirs, checked against the
// config's rootfs.diff_ids when they are uncompressed).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { ImageError } from './errors.js';
import { ImageCache } from './cache.js';
import { digestOf } from './digest.js';
import { MediaType, type Compression, type Descriptor, type ImageManifest } from './manifest.js';
import { formatSource, type DockerArchiveSource } from './reference.js';
import type { ResolvedImage } from './source.js';
import { removeTree } from './unpack.js';
import { fileKind, MAX_JSON, readImageFile } from './image-file.js';

interface ArchiveManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

interface Member {
  file: string;
  digest: string;
  size: number;
}

/** Resolve `..` and `.` in an archive member name (names are not paths on disk). */
function memberName(name: string, base = ''): string {
  const out: string[] = [];
  for (const p of (base ? base + '/' + name : name).split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return out.join('/');
}

async function sniff(file: string): Promise<Compression> {
  const fh = await fsp.open(file, 'r');
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(4), 0, 4, 0);
    if (bytesRead >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return 'gzip';
    if (bytesRead === 4 && buffer.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    await fh.close();
  }
}

/**
 * Open the archive itself: a regular file, or a FIFO (\`docker save IMG |
 * nodularity pull docker-archive:/dev/stdin\` is a fair use: the archive is
 * read once, in order, so a pipe works). The path is the user's own, so a
 * symlink to it is followed (/dev/stdin is one). Anything else (a device
 * such as /dev/zero, a directory, a socket) is refused before reading.
 * Opening a FIFO waits for its writer, as \`tar -xf FIFO\` does: asked for.
 */
async function openArchive(file: string, name: string): Promise<Readable> {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait before we know it is one.
    fd = await promisify(fs.open)(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw new ImageError(
      'BAD_SOURCE',
      `${name}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      { source: name, cause: err },
    );
  }
  let st: fs.Stats;
  try {
    st = await promisify(fs.fstat)(fd);
  } catch (err) {
    fs.close(fd, () => undefined);
    throw err;
  }
  // O_NONBLOCK does nothing to reads of a regular file.
  if (st.isFile()) return fs.createReadStream('', { fd, highWaterMark: 1 << 20, autoClose: true });
  // A FIFO is read as Node reads a piped stdin, through a libuv pipe handle
  // that waits for readability: no blocking read, no thread held, and no
  // early EOF before the writer comes (Linux reports no hangup on a FIFO
  // until a writer has been and gone).
  if (st.isFIFO()) return new net.Socket({ fd, readable: true, writable: false });
  fs.close(fd, () => undefined);
  throw new ImageError(
    'BAD_SOURCE',
    `${name}: ${file} is ${fileKind(st)}; a docker-archive is a regular file or a pipe`,
    { source: name },
  );
}

/** Open a docker-archive, staging its members under the cache's tmp/. */
export async function openDockerArchive(src: DockerArchiveSource, cache: ImageCache): Promise<ResolvedImage> {
  const name = formatSource(src);
  const archive = await openArchive(src.file, name);
  let staging: string;
  try {
    staging = await cache.makeTemp('archive');
  } catch (err) {
    archive.destroy();
    throw err;
  }
  try {
    const members = new Map<string, Member>();
    const links = new Map<string, string>();
    let count = 0;
    const extract = tar.extract();
    const flowing = pipeline(archive, extract);
    for await (const entry of extract) {
      const h = entry.header;
      const n = memberName(h.name);
      if (h.type === 'symlink' || h.type === 'link') {
        // Newer `docker save` links legacy names to blobs/sha256/...
        links.set(
          n,
          h.type === 'symlink'
            ? memberName(h.linkname, path.posix.dirname(n) === '.' ? '' : path.posix.dirname(n))
            : memberName(h.linkname),
        );
        entry.resume();
        continue;
      }
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      const file = path.join(staging, String(count++));
      const { digest, size } = await ImageCache.writeHashed(entry as unknown as import('node:stream').Readable, file);
      members.set(n, { file, digest, size });
    }
    await flowing;

    const lookup = (ref: string, what: string): Member => {
      let n = memberName(ref);
      for (let hops = 0; links.has(n) && hops < 16; hops++) n = links.get(n)!;
      const m = members.get(n);
      if (!m)
        throw new ImageError('BAD_MANIFEST', `${name}: ${what} \`${ref}\` is not in the archive`, { source: name });
      return m;
    };
    const manifestMember = members.get('manifest.json');
    if (!manifestMember)
      throw new ImageError('BAD_SOURCE', `${name}: no manifest.json; is this a docker-archive (docker save) file?`, {
        source: name,
      });
    let entries: ArchiveManifestEntry[];
    try {
      entries = JSON.parse(
        (
          await readImageFile(manifestMember.file, {
            what: `${name}: manifest.json`,
            code: 'BAD_MANIFEST',
            max: MAX_JSON,
          })
        ).toString('utf8'),
      ) as ArchiveManifestEntry[];
      if (!Array.isArray(entries)) throw new Error('not an array');
    } catch (err) {
      if (err instanceof ImageError) throw err;
      throw new ImageError('BAD_MANIFEST', `${name}: manifest.json is invalid (${(err as Error).message})`, {
        source: name,
        cause: err,
      });
    }
    let chosen: ArchiveManifestEntry | undefined;
    if (src.ref) {
      const want = src.ref.includes(':') ? src.ref : `${src.ref}:latest`;
      chosen = entries.find((e) =>
        e.RepoTags?.some((t) => t === want || t === `docker.io/${want}` || t === `docker.io/library/${want}`),
      );
      if (!chosen)
        throw new ImageError(
          'NOT_FOUND',
          `${name}: no image tagged \`${want}\` (tags: ${entries.flatMap((e) => e.RepoTags ?? []).join(', ') || 'none'})`,
          { source: name },
        );
    } else if (entries.length === 1) {
      chosen = entries[0];
    } else {
      throw new ImageError(
        'BAD_SOURCE',
        `${name}: the archive holds ${entries.length} images; name one with docker-archive:FILE:NAME:TAG`,
        { source: name },
      );
    }
    if (!chosen || typeof chosen.Config !== 'string' || !Array.isArray(chosen.Layers)) {
      throw new ImageError('BAD_MANIFEST', `${name}: manifest.json entry lacks Config or Layers`, { source: name });
    }
    const configMember = lookup(chosen.Config, 'config');
    const configBytes = await readImageFile(configMember.file, {
      what: `${name}: image config ${chosen.Config}`,
      code: 'BAD_MANIFEST',
      max: MAX_JSON,
    });
    let diffIds: string[] = [];
    try {
      diffIds =
        (JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? [];
    } catch (err) {
      throw new ImageError('BAD_MANIFEST', `${name}: image config ${chosen.Config} is not JSON`, {
        source: name,
        cause: err,
      });
    }
    if (diffIds.length !== chosen.Layers.length) {
      throw new ImageError(
        'BAD_MANIFEST',
        `${name}: ${chosen.Layers.length} layers but ${diffIds.length} rootfs.diff_ids in the config`,
        { source: name },
      );
    }
    const layerFiles = new Map<string, Member>();
    const layers: Descriptor[] = [];
    for (const ref of chosen.Layers) {
      const m = lookup(ref, 'layer');
      const compression = await sniff(m.file);
      const mediaType =
        compression === 'gzip'
          ? MediaType.OciLayerGzip
          : compression === 'zstd'
            ? MediaType.OciLayerZstd
            : MediaType.OciLayer;
      layers.push({ mediaType, digest: m.digest, size: m.size });
      layerFiles.set(m.digest, m);
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configMember.digest, size: configMember.size },
      layers,
    };
    // The same serialisation skopeo would give is not needed: this digest only
    // has to be stable for the same archive content, to key the cache.
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    return {
      source: name,
      manifestDigest: digestOf(manifestBytes),
      manifest,
      manifestBytes,
      configBytes,
      compression(layer) {
        return layer.mediaType === MediaType.OciLayerGzip
          ? 'gzip'
          : layer.mediaType === MediaType.OciLayerZstd
            ? 'zstd'
            : 'none';
      },
      async fetchLayer(layer) {
        const m = layerFiles.get(layer.digest);
        if (!m)
          throw new ImageError('NOT_FOUND', `${name}: layer ${layer.digest} not staged`, { digest: layer.digest });
        return () => fs.createReadStream(m.file, { highWaterMark: 1 << 20 });
      },
      async close() {
        await removeTree(staging);
      },
    };
  } catch (err) {
    await removeTree(staging);
    if (err instanceof ImageError) throw err;
    throw new ImageError('BAD_SOURCE', `${name}: cannot read the archive: ${(err as Error).message}`, {
      source: name,
      cause: err,
    });
  }
}
