// A docker:// image as a ResolvedImage: manifests and config over the
// distribution API, layer blobs downloaded into the blob cache (verified on
// the way in) and unpacked from there.
import type { Readable } from 'node:stream';
import { ImageError } from './errors.js';
import type { ImageCache } from './cache.js';
import { hostPlatform, layerCompression, parseManifest, selectPlatform, type Platform } from './manifest.js';
import { formatSource, type RegistrySource } from './reference.js';
import { RegistryClient, type RegistryOptions } from './registry.js';
import type { ResolvedImage } from './source.js';

/** Resolve a docker:// reference to its platform manifest and config. */
export async function openRegistryImage(
  src: RegistrySource,
  cache: ImageCache,
  options: RegistryOptions = {},
  platform: Platform = hostPlatform(),
): Promise<ResolvedImage> {
  const name = formatSource(src);
  const client = new RegistryClient(src.registry, src.repository, options);
  try {
    return await resolveWith(client, src, name, cache, options, platform);
  } catch (err) {
    client.close();
    throw err;
  }
}

async function resolveWith(
  client: RegistryClient,
  src: RegistrySource,
  name: string,
  cache: ImageCache,
  options: RegistryOptions,
  platform: Platform,
): Promise<ResolvedImage> {
  let fetched = await client.getManifest(src.digest ?? src.tag ?? 'latest');
  let parsed = parseManifest(fetched.bytes, fetched.mediaType, `${name} manifest ${fetched.digest}`);
  let indexDigest: string | undefined;
  if ('index' in parsed) {
    indexDigest = fetched.digest;
    const desc = selectPlatform(parsed.index, platform, `${name} index ${fetched.digest}`);
    fetched = await client.getManifest(desc.digest);
    parsed = parseManifest(fetched.bytes, fetched.mediaType ?? desc.mediaType, `${name} manifest ${fetched.digest}`);
    if ('index' in parsed)
      throw new ImageError('BAD_MANIFEST', `${name}: index ${indexDigest} points to another index ${fetched.digest}`);
  }
  const manifest = parsed.manifest;
  const configBytes = await client.getBlob(manifest.config.digest, manifest.config.size, 'image config');
  const attempts = Math.max(1, options.attempts ?? 4);
  /** Blobs opened by fetchLayer that no one streamed (a failed pull): closed by close(). */
  const unread = new Set<import('node:fs/promises').FileHandle>();
  const image: ResolvedImage = {
    source: name,
    manifestDigest: fetched.digest,
    manifest,
    manifestBytes: fetched.bytes,
    configBytes,
    compression(layer) {
      const c = layerCompression(layer.mediaType);
      if (!c)
        throw new ImageError(
          'UNSUPPORTED_MEDIA_TYPE',
          `layer ${layer.digest}: media type ${layer.mediaType} is not a layer type we can unpack`,
          { digest: layer.digest },
        );
      return c;
    },
    async fetchLayer(layer, onBytes) {
      // Opened at once and read from the fd: a `cache clean` meanwhile
      // unlinks the name, not the content this pull is about to unpack.
      let fh = await cache.openBlob(layer.digest);
      if (fh) onBytes?.(layer.size);
      for (let again = 0; !fh; again++) {
        // The body can fail after the headers came back (cut short, stalled
        // past the timeout); start the blob over. A digest or size mismatch
        // is not transient and ends it at once.
        for (let attempt = 1; ; attempt++) {
          let body: Readable | undefined;
          try {
            // Progress is counted inside the stream: a 'data' listener here
            // would start it flowing before ingestBlob pipes it, losing bytes.
            body = await client.openBlob(layer.digest, 'layer', layer.size, onBytes);
            await cache.ingestBlob(layer.digest, layer.size, body, 'layer');
            break;
          } catch (err) {
            body?.destroy(); // closes the socket if ingestBlob failed before reading it
            if (err instanceof ImageError) throw err;
            if (attempt >= attempts) {
              throw new ImageError(
                'REGISTRY',
                `layer ${layer.digest} on ${src.registry}/${src.repository}: ${(err as Error).message}; gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}`,
                { digest: layer.digest, cause: err },
              );
            }
          }
        }
        fh = await cache.openBlob(layer.digest);
        if (!fh && again >= attempts)
          throw new ImageError(
            'CACHE',
            `layer ${layer.digest}: removed from the cache (${cache.dir}) right after each download; is a \`cache clean\` running in a loop?`,
            { digest: layer.digest },
          );
      }
      const handle = fh;
      unread.add(handle);
      return () => {
        unread.delete(handle);
        return handle.createReadStream({ highWaterMark: 1 << 20 }); // closes the fd at its end
      };
    },
    async close() {
      client.close(); /* blobs stay in the cache */
      for (const fh of unread) await fh.close().catch(() => undefined);
      unread.clear();
    },
  };
  if (indexDigest) image.indexDigest = indexDigest;
  return image;
}
