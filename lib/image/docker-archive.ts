// docker-archive tarballs (`docker save`, `skopeo copy ... docker-archive:`).
//
// The archive has no digests of its own and its manifest.json usually comes
// last, so one sequential pass copies every member to a private temp dir
// while hashing it; the image is then described as an OCI manifest over
// those files (config by its sha256, layers by theirs, checked against the
// config's rootfs.diff_ids when they are uncompressed).
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { ImageError } from './errors.js';
import { ImageCache } from './cache.js';
import { digestOf } from './digest.js';
import { MediaType, type Compression, type Descriptor, type ImageManifest } from './manifest.js';
import { formatSource, type DockerArchiveSource } from './reference.js';
import type { ResolvedImage } from './source.js';
import { removeTree } from './unpack.js';

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

/** Open a docker-archive, staging its members under the cache's tmp/. */
export async function openDockerArchive(src: DockerArchiveSource, cache: ImageCache): Promise<ResolvedImage> {
  const name = formatSource(src);
  try {
    await fsp.access(src.file, fs.constants.R_OK);
  } catch (err) {
    throw new ImageError('BAD_SOURCE', `${name}: cannot read ${src.file} (${(err as NodeJS.ErrnoException).code})`, { source: name, cause: err });
  }
  const staging = await cache.makeTemp('archive');
  try {
    const members = new Map<string, Member>();
    const links = new Map<string, string>();
    let count = 0;
    const extract = tar.extract();
    const flowing = pipeline(fs.createReadStream(src.file, { highWaterMark: 1 << 20 }), extract);
    for await (const entry of extract) {
      const h = entry.header;
      const n = memberName(h.name);
      if (h.type === 'symlink' || h.type === 'link') {
        // Newer `docker save` links legacy names to blobs/sha256/...
        links.set(n, h.type === 'symlink' ? memberName(h.linkname, path.posix.dirname(n) === '.' ? '' : path.posix.dirname(n)) : memberName(h.linkname));
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
      if (!m) throw new ImageError('BAD_MANIFEST', `${name}: ${what} \`${ref}\` is not in the archive`, { source: name });
      return m;
    };
    const manifestMember = members.get('manifest.json');
    if (!manifestMember) throw new ImageError('BAD_SOURCE', `${name}: no manifest.json; is this a docker-archive (docker save) file?`, { source: name });
    let entries: ArchiveManifestEntry[];
    try {
      entries = JSON.parse(await fsp.readFile(manifestMember.file, 'utf8')) as ArchiveManifestEntry[];
      if (!Array.isArray(entries)) throw new Error('not an array');
    } catch (err) {
      throw new ImageError('BAD_MANIFEST', `${name}: manifest.json is invalid (${(err as Error).message})`, { source: name, cause: err });
    }
    let chosen: ArchiveManifestEntry | undefined;
    if (src.ref) {
      const want = src.ref.includes(':') ? src.ref : `${src.ref}:latest`;
      chosen = entries.find((e) => e.RepoTags?.some((t) => t === want || t === `docker.io/${want}` || t === `docker.io/library/${want}`));
      if (!chosen) throw new ImageError('NOT_FOUND', `${name}: no image tagged \`${want}\` (tags: ${entries.flatMap((e) => e.RepoTags ?? []).join(', ') || 'none'})`, { source: name });
    } else if (entries.length === 1) {
      chosen = entries[0];
    } else {
      throw new ImageError('BAD_SOURCE', `${name}: the archive holds ${entries.length} images; name one with docker-archive:FILE:NAME:TAG`, { source: name });
    }
    if (!chosen || typeof chosen.Config !== 'string' || !Array.isArray(chosen.Layers)) {
      throw new ImageError('BAD_MANIFEST', `${name}: manifest.json entry lacks Config or Layers`, { source: name });
    }
    const configMember = lookup(chosen.Config, 'config');
    const configBytes = await fsp.readFile(configMember.file);
    let diffIds: string[] = [];
    try {
      diffIds = ((JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids) ?? [];
    } catch (err) {
      throw new ImageError('BAD_MANIFEST', `${name}: image config ${chosen.Config} is not JSON`, { source: name, cause: err });
    }
    if (diffIds.length !== chosen.Layers.length) {
      throw new ImageError('BAD_MANIFEST', `${name}: ${chosen.Layers.length} layers but ${diffIds.length} rootfs.diff_ids in the config`, { source: name });
    }
    const layerFiles = new Map<string, Member>();
    const layers: Descriptor[] = [];
    for (const ref of chosen.Layers) {
      const m = lookup(ref, 'layer');
      const compression = await sniff(m.file);
      const mediaType = compression === 'gzip' ? MediaType.OciLayerGzip : compression === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
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
        return layer.mediaType === MediaType.OciLayerGzip ? 'gzip' : layer.mediaType === MediaType.OciLayerZstd ? 'zstd' : 'none';
      },
      async fetchLayer(layer) {
        const m = layerFiles.get(layer.digest);
        if (!m) throw new ImageError('NOT_FOUND', `${name}: layer ${layer.digest} not staged`, { digest: layer.digest });
        return () => fs.createReadStream(m.file, { highWaterMark: 1 << 20 });
      },
      async close() {
        await removeTree(staging);
      },
    };
  } catch (err) {
    await removeTree(staging);
    if (err instanceof ImageError) throw err;
    throw new ImageError('BAD_SOURCE', `${name}: cannot read the archive: ${(err as Error).message}`, { source: name, cause: err });
  }
}
