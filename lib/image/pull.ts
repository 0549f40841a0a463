// pullImage / inspectImage: source -> resolved manifest -> (cache hit | unpack
// under the lock into a temp dir -> rename) -> rootfs + image config.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ImageError } from './errors.js';
import { ImageCache, type CachedImage, type CachedImageMeta } from './cache.js';
import { parseImageConfig, type ImageConfig } from './config.js';
import { openDockerArchive } from './docker-archive.js';
import { openOciLayout } from './layout.js';
import { hostPlatform, type Descriptor, type ImageManifest, type Platform } from './manifest.js';
import { formatSource, parseSource, type ImageSource } from './reference.js';
import { openRegistryImage } from './registry-source.js';
import type { RegistryOptions } from './registry.js';
import type { ResolvedImage } from './source.js';
import { removeTree, RootfsWriter, type UnpackStats } from './unpack.js';

/** Progress of a pull, one event per step or chunk. */
export type PullProgress =
  | { type: 'resolved'; manifestDigest: string; layers: Descriptor[] }
  | { type: 'cached'; manifestDigest: string }
  | { type: 'download'; index: number; digest: string; bytes: number; total: number }
  | { type: 'unpack'; index: number; digest: string; bytes: number; total: number }
  | { type: 'layer-done'; index: number; digest: string }
  | { type: 'done'; manifestDigest: string; rootfs: string };

/** Options of {@link pullImage} and {@link inspectImage}. */
export interface PullOptions extends RegistryOptions {
  /** Cache directory; default `$NODULARITY_CACHE` or the XDG cache dir. */
  cacheDir?: string;
  /**
   * Unpack into this directory (created; must not exist or be empty) as
   * `DEST/rootfs` plus `DEST/image.json`, instead of into the cache.
   */
  dest?: string;
  /** Platform to pick from an index; default: the host's. */
  platform?: Platform;
  /** Keep layer ownership, setuid bits and device nodes; default: when running as root. */
  preserveOwnership?: boolean;
  /** Layers fetched ahead of the one being unpacked. Default 3. */
  parallelDownloads?: number;
  onProgress?: (event: PullProgress) => void;
}

/** An unpacked image, ready to run. */
export interface PulledImage {
  /** Absolute path of the unpacked root filesystem. */
  rootfs: string;
  /** Directory holding `rootfs/` and `image.json`. */
  dir: string;
  config: ImageConfig;
  /** The image config JSON as stored in the image. */
  rawConfig: unknown;
  manifestDigest: string;
  manifest: ImageManifest;
  source: string;
  /** True when the cache already had it (nothing was fetched or unpacked). */
  cached: boolean;
  stats: UnpackStats;
}

/** What {@link inspectImage} reports, without unpacking anything. */
export interface ImageInspection {
  source: string;
  manifestDigest: string;
  indexDigest?: string;
  mediaType: string;
  manifest: ImageManifest;
  config: ImageConfig;
  rawConfig: unknown;
  layers: { digest: string; mediaType: string; size: number }[];
  /** Sum of (compressed) layer sizes. */
  size: number;
  /** Where the unpacked root is cached, if it is. */
  cachedRootfs?: string;
}

async function resolve(src: ImageSource, cache: ImageCache, options: PullOptions): Promise<ResolvedImage> {
  const platform = options.platform ?? hostPlatform();
  switch (src.kind) {
    case 'oci': return await openOciLayout(src, platform);
    case 'docker-archive': return await openDockerArchive(src, cache);
    case 'docker': return await openRegistryImage(src, cache, options, platform);
  }
}

/** A `docker://…@digest` already in the cache, found with no network access. */
async function cachedByDigest(src: ImageSource, cache: ImageCache, platform: Platform): Promise<CachedImage | undefined> {
  if (src.kind !== 'docker' || !src.digest) return undefined;
  const hit = await cache.lookup(src.digest);
  if (hit) return hit;
  const alias = await cache.readAlias(src.digest, platform);
  return alias ? await cache.lookup(alias) : undefined;
}

function fromCache(hit: CachedImage, cached: boolean): PulledImage {
  const meta = hit.meta;
  return {
    rootfs: hit.rootfs,
    dir: hit.dir,
    config: parseImageConfig(Buffer.from(JSON.stringify(meta.config))),
    rawConfig: meta.config,
    manifestDigest: meta.manifestDigest,
    manifest: meta.manifest as ImageManifest,
    source: meta.source,
    cached,
    stats: meta.stats,
  };
}

/**
 * Unpack all layers of `image` into `dir/rootfs` and write `dir/image.json`.
 * Layers are fetched ahead (bounded) while earlier ones are unpacked.
 */
async function unpackInto(image: ResolvedImage, config: ImageConfig, dir: string, options: PullOptions): Promise<CachedImageMeta> {
  const layers = image.manifest.layers;
  if (config.diffIds.length !== 0 && config.diffIds.length !== layers.length) {
    throw new ImageError('BAD_MANIFEST', `${image.source}: ${layers.length} layers in the manifest but ${config.diffIds.length} rootfs.diff_ids in the config`);
  }
  const compressions = layers.map((l) => image.compression(l));
  const report = options.onProgress;
  const ahead = Math.max(1, options.parallelDownloads ?? 3);
  const fetches: (Promise<() => import("node:stream").Readable> | undefined)[] = [];
  const startFetch = (i: number): void => {
    if (i >= layers.length || fetches[i]) return;
    const l = layers[i]!;
    let got = 0;
    fetches[i] = image.fetchLayer(l, report ? (n) => { got += n; report({ type: 'download', index: i, digest: l.digest, bytes: got, total: l.size }); } : undefined);
    // Errors are awaited in order below; keep an early one from being "unhandled".
    fetches[i]!.catch(() => undefined);
  };
  for (let i = 0; i < Math.min(ahead, layers.length); i++) startFetch(i);

  const rootfs = path.join(dir, 'rootfs');
  const preserve = options.preserveOwnership ?? process.getuid?.() === 0;
  const writer = new RootfsWriter(rootfs, { preserveOwnership: preserve });
  try {
    await fsp.mkdir(rootfs);
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i]!;
      const open = await fetches[i]!;
      startFetch(i + ahead);
      let done = 0;
      const input = { digest: l.digest, size: l.size, compression: compressions[i]!, open, ...(config.diffIds[i] ? { diffId: config.diffIds[i]! } : {}) };
      await writer.applyLayer(input, report ? (n) => { done += n; report({ type: 'unpack', index: i, digest: l.digest, bytes: done, total: l.size }); } : undefined);
      report?.({ type: 'layer-done', index: i, digest: l.digest });
    }
    await writer.finish();
  } catch (err) {
    // Downloads still running would keep writing after the caller cleaned up.
    await Promise.allSettled(fetches);
    throw err;
  } finally {
    await writer.close();
  }
  const meta: CachedImageMeta = {
    manifestDigest: image.manifestDigest,
    source: image.source,
    unpacked: new Date().toISOString(),
    manifest: image.manifest,
    config: JSON.parse(image.configBytes.toString('utf8')),
    stats: writer.stats,
    unpackedBy: process.getuid?.() ?? 0,
  };
  await fsp.writeFile(path.join(dir, 'image.json'), JSON.stringify(meta, null, 2) + '\n');
  return meta;
}

/**
 * Pull an image and return its unpacked rootfs and config.
 *
 * `source` is `oci:DIR[:TAG]`, `docker-archive:FILE[:NAME:TAG]` or
 * `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`. Without `dest`, the result lives
 * in the cache keyed by the platform manifest digest: concurrent pulls of the
 * same image (in any processes) end with one entry, a killed pull leaves no
 * entry, and a pull by digest that is cached touches no network.
 *
 * @throws ImageError naming the source, layer digest or entry at fault; on
 * error no rootfs is left behind (neither in the cache nor at `dest`).
 */
export async function pullImage(source: string, options: PullOptions = {}): Promise<PulledImage> {
  const src = parseSource(source);
  const cache = new ImageCache(options.cacheDir);
  const platform = options.platform ?? hostPlatform();
  if (!options.dest) {
    const early = await cachedByDigest(src, cache, platform);
    if (early) {
      options.onProgress?.({ type: 'cached', manifestDigest: early.manifestDigest });
      return fromCache(early, true);
    }
  }
  const dest = options.dest ? path.resolve(options.dest) : undefined;
  if (dest) await checkDest(dest);
  const image = await resolve(src, cache, options);
  try {
    const config = parseImageConfig(image.configBytes);
    if (image.indexDigest && src.kind === 'docker') await cache.writeAlias(image.indexDigest, platform, image.manifestDigest);
    options.onProgress?.({ type: 'resolved', manifestDigest: image.manifestDigest, layers: image.manifest.layers });
    if (dest) {
      // A sibling temp dir, so the final rename stays on one filesystem.
      const tmp = `${dest}.nodularity-${process.pid}-${randomBytes(4).toString('hex')}`;
      await fsp.mkdir(tmp);
      try {
        const meta = await unpackInto(image, config, tmp, options);
        await checkDest(dest);
        await fsp.rm(dest, { recursive: true, force: true }); // empty or absent, checked above
        await fsp.rename(tmp, dest);
        options.onProgress?.({ type: 'done', manifestDigest: image.manifestDigest, rootfs: path.join(dest, 'rootfs') });
        return { ...fromCache({ manifestDigest: image.manifestDigest, dir: dest, rootfs: path.join(dest, 'rootfs'), meta }, false), config };
      } catch (err) {
        await removeTree(tmp);
        throw await forgetBadBlob(err, cache, src);
      }
    }
    const hit = await cache.lookup(image.manifestDigest);
    if (hit) {
      options.onProgress?.({ type: 'cached', manifestDigest: hit.manifestDigest });
      return fromCache(hit, true);
    }
    const entry = await cache.withLock(image.manifestDigest, async () => {
      // Someone may have finished while we waited for the lock.
      const again = await cache.lookup(image.manifestDigest);
      if (again) return { hit: again, cached: true };
      const tmp = await cache.makeTemp(`unpack-${image.manifestDigest.split(':')[1]!.slice(0, 16)}`);
      try {
        await unpackInto(image, config, tmp, options);
        await cache.commit(tmp, image.manifestDigest);
      } catch (err) {
        await removeTree(tmp);
        throw await forgetBadBlob(err, cache, src);
      }
      const made = await cache.lookup(image.manifestDigest);
      if (!made) throw new ImageError('CACHE', `cache entry for ${image.manifestDigest} vanished right after it was made (a concurrent \`cache clean\`?)`);
      return { hit: made, cached: false };
    });
    options.onProgress?.({ type: 'done', manifestDigest: image.manifestDigest, rootfs: entry.hit.rootfs });
    return fromCache(entry.hit, entry.cached);
  } finally {
    await image.close();
  }
}

/** A blob in the cache that failed its digest check must not be used again. */
async function forgetBadBlob(err: unknown, cache: ImageCache, src: ImageSource): Promise<unknown> {
  if (src.kind === 'docker' && err instanceof ImageError && (err.code === 'DIGEST_MISMATCH' || err.code === 'SIZE_MISMATCH') && err.digest) {
    await cache.dropBlob(err.digest).catch(() => undefined);
  }
  return err;
}

async function checkDest(dest: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new ImageError('BAD_SOURCE', `destination ${dest}: ${code === 'ENOTDIR' ? 'exists and is not a directory' : (err as Error).message}`, { cause: err });
  }
  if (names.length > 0) throw new ImageError('BAD_SOURCE', `destination ${dest} exists and is not empty; refusing to overwrite it`);
}

/**
 * Describe an image (manifest, config, layers, sizes) without unpacking it.
 * A `docker://…@digest` that is in the cache is described from the cache.
 */
export async function inspectImage(source: string, options: PullOptions = {}): Promise<ImageInspection> {
  const src = parseSource(source);
  const cache = new ImageCache(options.cacheDir);
  const platform = options.platform ?? hostPlatform();
  const describe = (s: string, manifestDigest: string, manifest: ImageManifest, rawConfigBytes: Buffer, cachedRootfs?: string, indexDigest?: string): ImageInspection => {
    const out: ImageInspection = {
      source: s,
      manifestDigest,
      mediaType: manifest.mediaType,
      manifest,
      config: parseImageConfig(rawConfigBytes),
      rawConfig: JSON.parse(rawConfigBytes.toString('utf8')),
      layers: manifest.layers.map((l) => ({ digest: l.digest, mediaType: l.mediaType, size: l.size })),
      size: manifest.layers.reduce((a, l) => a + l.size, 0),
    };
    if (cachedRootfs) out.cachedRootfs = cachedRootfs;
    if (indexDigest) out.indexDigest = indexDigest;
    return out;
  };
  const early = await cachedByDigest(src, cache, platform);
  if (early) return describe(early.meta.source, early.manifestDigest, early.meta.manifest as ImageManifest, Buffer.from(JSON.stringify(early.meta.config)), early.rootfs);
  const image = await resolve(src, cache, options);
  try {
    const hit = await cache.lookup(image.manifestDigest);
    return describe(image.source, image.manifestDigest, image.manifest, image.configBytes, hit?.rootfs, image.indexDigest);
  } finally {
    await image.close();
  }
}

export { formatSource };
