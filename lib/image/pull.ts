// pullImage / inspectImage: source -> resolved manifest -> (cache hit | unpack
// under the lock into a temp dir -> rename) -> rootfs + image config.
import { writeSandboxFiles } from './sandbox.js';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { digestOf } from './digest.js';
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
import { sweepDeadTemps } from './tmp-sweep.js';
import { removeTree, RootfsWriter, UMASK, type KeepOptions, type UnpackStats } from './unpack.js';

/** Progress of a pull, one event per step or chunk. */
export type PullProgress =
  | { type: 'resolved'; manifestDigest: string; layers: Descriptor[] }
  | { type: 'cached'; manifestDigest: string }
  | { type: 'download'; index: number; digest: string; bytes: number; total: number }
  | { type: 'unpack'; index: number; digest: string; bytes: number; total: number }
  | { type: 'layer-done'; index: number; digest: string }
  /** Image content left out for safety (see PullOptions.keepDevices / keepSetid), once, after the last layer. */
  | { type: 'dropped'; devicesSkipped: number; setidDropped: number }
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
  /** Keep layer ownership (uid/gid); default: when running as root. */
  preserveOwnership?: boolean;
  /**
   * Create the image's character and block device nodes (root only).
   * Default false: they are skipped and counted (stats.devicesSkipped), in
   * the cache and at `dest` alike. For trusted, root-owned images only: a
   * device node in an image is the host's device of that number. A root
   * made with devices is a cache entry of its own.
   */
  keepDevices?: boolean;
  /**
   * Keep setuid/setgid bits. Default: kept by root inside the cache (a 0700
   * directory no one else can reach), dropped at `dest` (which others may
   * reach: a setuid-root binary there is every local user's root shell) and
   * for unprivileged callers. Counted in stats.setidDropped when dropped.
   */
  keepSetid?: boolean;
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
    case 'oci':
      return await openOciLayout(src, platform);
    case 'docker-archive':
      return await openDockerArchive(src, cache);
    case 'docker':
      return await openRegistryImage(src, cache, options, platform);
  }
}

/**
 * What an unpack keeps of an image's privileged content. Devices: never by
 * default. setuid/setgid: kept by root in the cache, whose directories are
 * 0700 (no one else reaches the binaries); dropped at a DEST, which other
 * users may reach, and for unprivileged callers (as before).
 */
function keepOptions(options: PullOptions, where: 'cache' | 'dest'): Required<KeepOptions> {
  const root = process.getuid?.() === 0;
  return {
    preserveOwnership: options.preserveOwnership ?? root,
    keepDevices: (options.keepDevices ?? false) && root,
    keepSetid: options.keepSetid ?? (root && where === 'cache'),
  };
}

/**
 * The cache key of an unpacked root: its manifest digest when unpacked with
 * the default keep options, else a digest of the manifest digest and the
 * options (a root made with device nodes is not the default root, and a
 * later default pull must never be handed it).
 */
function cacheKey(manifestDigest: string, options: PullOptions): string {
  const want = keepOptions(options, 'cache');
  const dflt = keepOptions({}, 'cache');
  if (
    want.preserveOwnership === dflt.preserveOwnership &&
    want.keepDevices === dflt.keepDevices &&
    want.keepSetid === dflt.keepSetid
  )
    return manifestDigest;
  const variant = `ownership=${want.preserveOwnership},devices=${want.keepDevices},setid=${want.keepSetid}`;
  return digestOf(`nodularity unpack variant\n${manifestDigest}\n${variant}\n`);
}

/** A `docker://…@digest` already in the cache, found with no network access. */
async function cachedByDigest(
  src: ImageSource,
  cache: ImageCache,
  platform: Platform,
  options: PullOptions,
): Promise<CachedImage | undefined> {
  if (src.kind !== 'docker' || !src.digest) return undefined;
  const hit = await cache.lookup(cacheKey(src.digest, options));
  if (hit) return hit;
  const alias = await cache.readAlias(src.digest, platform);
  return alias ? await cache.lookup(cacheKey(alias, options)) : undefined;
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
async function unpackInto(
  image: ResolvedImage,
  config: ImageConfig,
  dir: string,
  options: PullOptions,
  where: 'cache' | 'dest',
): Promise<CachedImageMeta> {
  const layers = image.manifest.layers;
  if (config.diffIds.length !== 0 && config.diffIds.length !== layers.length) {
    throw new ImageError(
      'BAD_MANIFEST',
      `${image.source}: ${layers.length} layers in the manifest but ${config.diffIds.length} rootfs.diff_ids in the config`,
    );
  }
  const compressions = layers.map((l) => image.compression(l));
  const report = options.onProgress;
  const ahead = Math.max(1, options.parallelDownloads ?? 3);
  const fetches: (ReturnType<ResolvedImage['fetchLayer']> | undefined)[] = [];
  const startFetch = (i: number): void => {
    if (i >= layers.length || fetches[i]) return;
    const l = layers[i]!;
    let got = 0;
    fetches[i] = image.fetchLayer(
      l,
      report
        ? (n) => {
            got += n;
            report({ type: 'download', index: i, digest: l.digest, bytes: got, total: l.size });
          }
        : undefined,
    );
    // Errors are awaited in order below; keep an early one from being "unhandled".
    fetches[i]!.catch(() => undefined);
  };
  for (let i = 0; i < Math.min(ahead, layers.length); i++) startFetch(i);

  const rootfs = path.join(dir, 'rootfs');
  const keep = keepOptions(options, where);
  const writer = new RootfsWriter(rootfs, keep);
  try {
    await fsp.mkdir(rootfs);
    for (let i = 0; i < layers.length; i++) {
      const l = layers[i]!;
      const open = await fetches[i]!;
      startFetch(i + ahead);
      let done = 0;
      const input = {
        digest: l.digest,
        size: l.size,
        compression: compressions[i]!,
        open,
        ...(config.diffIds[i] ? { diffId: config.diffIds[i]! } : {}),
      };
      await writer.applyLayer(
        input,
        report
          ? (n) => {
              done += n;
              report({ type: 'unpack', index: i, digest: l.digest, bytes: done, total: l.size });
            }
          : undefined,
      );
      report?.({ type: 'layer-done', index: i, digest: l.digest });
    }
    await writer.finish();
    const { devicesSkipped, setidDropped } = writer.stats;
    if (devicesSkipped || setidDropped) report?.({ type: 'dropped', devicesSkipped, setidDropped });
  } catch (err) {
    // Downloads still running would keep writing after the caller cleaned up.
    await Promise.allSettled(fetches.filter((f) => f !== undefined));
    throw err;
  } finally {
    await writer.close();
  }
  const meta: CachedImageMeta & { keep: Required<KeepOptions> } = {
    manifestDigest: image.manifestDigest,
    source: image.source,
    unpacked: new Date().toISOString(),
    manifest: image.manifest,
    config: JSON.parse(image.configBytes.toString('utf8')),
    stats: writer.stats,
    unpackedBy: process.getuid?.() ?? 0,
    // What was kept of devices, setuid bits and owners: entries that differ are different cache keys.
    keep,
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
    const early = await cachedByDigest(src, cache, platform, options);
    if (early) {
      options.onProgress?.({ type: 'cached', manifestDigest: early.meta.manifestDigest });
      return fromCache(early, true);
    }
  }
  const dest = options.dest ? path.resolve(options.dest) : undefined;
  if (dest) await checkDest(dest);
  // What killed pulls left in tmp/ (a staged docker-archive is hundreds of MB).
  await sweepDeadTemps(cache.dir);
  const image = await resolve(src, cache, options);
  try {
    const config = parseImageConfig(image.configBytes);
    if (image.indexDigest && src.kind === 'docker')
      await cache.writeAlias(image.indexDigest, platform, image.manifestDigest);
    options.onProgress?.({ type: 'resolved', manifestDigest: image.manifestDigest, layers: image.manifest.layers });
    if (dest) {
      // A sibling temp dir, so the final rename stays on one filesystem;
      // 0700 while it is written, so no one else can reach (or run) a thing
      // in it before it is complete; then DEST's usual 0755 and the rename.
      const tmp = `${dest}.nodularity-${process.pid}-${randomBytes(4).toString('hex')}`;
      try {
        await fsp.mkdir(tmp, 0o700);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new ImageError(
          'BAD_SOURCE',
          `destination ${dest}: ${code === 'ENOENT' ? 'its parent directory does not exist' : `cannot create a directory next to it (${code})`}`,
          { cause: err },
        );
      }
      try {
        const meta = await unpackInto(image, config, tmp, options, 'dest');
        // DEST/rootfs is a Singularity sandbox (env script, runscript), as apptainer build --sandbox makes.
        writeSandboxFiles(path.join(tmp, 'rootfs'), config);
        await checkDest(dest);
        await fsp.rm(dest, { recursive: true, force: true }); // empty or absent, checked above
        // Renamed while still 0700, then opened up through an fd taken
        // before the rename: it is our directory, whatever DEST's parent holds.
        const fh = await fsp.open(tmp, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
        try {
          await fsp.rename(tmp, dest);
          await fh.chmod(0o755 & ~(UMASK === 0o777 ? 0o022 : UMASK));
        } finally {
          await fh.close();
        }
        options.onProgress?.({ type: 'done', manifestDigest: image.manifestDigest, rootfs: path.join(dest, 'rootfs') });
        return {
          ...fromCache(
            { manifestDigest: image.manifestDigest, dir: dest, rootfs: path.join(dest, 'rootfs'), meta },
            false,
          ),
          config,
        };
      } catch (err) {
        await removeTree(tmp);
        throw await forgetBadBlob(err, cache, src);
      }
    }
    const key = cacheKey(image.manifestDigest, options);
    const hit = await cache.lookup(key);
    if (hit) {
      options.onProgress?.({ type: 'cached', manifestDigest: image.manifestDigest });
      return fromCache(hit, true);
    }
    const entry = await cache.withLock(key, async () => {
      // Someone may have finished while we waited for the lock.
      const again = await cache.lookup(key);
      if (again) return { hit: again, cached: true };
      const tmp = await cache.makeTemp(`unpack-${key.split(':')[1]!.slice(0, 16)}`);
      try {
        await unpackInto(image, config, tmp, options, 'cache');
        await cache.commit(tmp, key);
      } catch (err) {
        await removeTree(tmp);
        throw await forgetBadBlob(err, cache, src);
      }
      const made = await cache.lookup(key);
      if (!made)
        throw new ImageError(
          'CACHE',
          `cache entry for ${image.manifestDigest} vanished right after it was made (a concurrent \`cache clean\`?)`,
        );
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
  if (
    src.kind === 'docker' &&
    err instanceof ImageError &&
    (err.reason === 'DIGEST_MISMATCH' || err.reason === 'SIZE_MISMATCH') &&
    err.digest
  ) {
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
    throw new ImageError(
      'BAD_SOURCE',
      `destination ${dest}: ${code === 'ENOTDIR' ? 'exists and is not a directory' : (err as Error).message}`,
      { cause: err },
    );
  }
  if (names.length > 0)
    throw new ImageError('BAD_SOURCE', `destination ${dest} exists and is not empty; refusing to overwrite it`);
}

/**
 * Describe an image (manifest, config, layers, sizes) without unpacking it.
 * A `docker://…@digest` that is in the cache is described from the cache.
 */
export async function inspectImage(source: string, options: PullOptions = {}): Promise<ImageInspection> {
  const src = parseSource(source);
  const cache = new ImageCache(options.cacheDir);
  const platform = options.platform ?? hostPlatform();
  const describe = (
    s: string,
    manifestDigest: string,
    manifest: ImageManifest,
    rawConfigBytes: Buffer,
    cachedRootfs?: string,
    indexDigest?: string,
  ): ImageInspection => {
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
  const early = await cachedByDigest(src, cache, platform, options);
  if (early)
    return describe(
      early.meta.source,
      early.meta.manifestDigest,
      early.meta.manifest as ImageManifest,
      Buffer.from(JSON.stringify(early.meta.config)),
      early.rootfs,
    );
  const image = await resolve(src, cache, options);
  try {
    const hit = await cache.lookup(cacheKey(image.manifestDigest, options));
    return describe(
      image.source,
      image.manifestDigest,
      image.manifest,
      image.configBytes,
      hit?.rootfs,
      image.indexDigest,
    );
  } finally {
    await image.close();
  }
}

export { formatSource };
