// A docker:// image as a ResolvedImage: manifests and config over the
// distribution API, layer blobs downloaded into the blob cache (verified on
// the way in) and unpacked from there.
import * as fs from 'node:fs';
import { ImageError } from './errors.js';
import type { ImageCache } from './cache.js';
import { hostPlatform, layerCompression, parseManifest, selectPlatform, type Platform } from './manifest.js';
import { formatSource, type RegistrySource } from './reference.js';
import { RegistryClient, type RegistryOptions } from './registry.js';
import type { ResolvedImage } from './source.js';

/** Resolve a docker:// reference to its platform manifest and config. */
export async function openRegistryImage(src: RegistrySource, cache: ImageCache, options: RegistryOptions = {}, platform: Platform = hostPlatform()): Promise<ResolvedImage> {
  const name = formatSource(src);
  const client = new RegistryClient(src.registry, src.repository, options);
  let fetched = await client.getManifest(src.digest ?? src.tag ?? 'latest');
  let parsed = parseManifest(fetched.bytes, fetched.mediaType, `${name} manifest ${fetched.digest}`);
  let indexDigest: string | undefined;
  if ('index' in parsed) {
    indexDigest = fetched.digest;
    const desc = selectPlatform(parsed.index, platform, `${name} index ${fetched.digest}`);
    fetched = await client.getManifest(desc.digest);
    parsed = parseManifest(fetched.bytes, fetched.mediaType ?? desc.mediaType, `${name} manifest ${fetched.digest}`);
    if ('index' in parsed) throw new ImageError('BAD_MANIFEST', `${name}: index ${indexDigest} points to another index ${fetched.digest}`);
  }
  const manifest = parsed.manifest;
  const configBytes = await client.getBlob(manifest.config.digest, manifest.config.size, 'image config');
  const attempts = Math.max(1, options.attempts ?? 4);
  const image: ResolvedImage = {
    source: name,
    manifestDigest: fetched.digest,
    manifest,
    manifestBytes: fetched.bytes,
    configBytes,
    compression(layer) {
      const c = layerCompression(layer.mediaType);
      if (!c) throw new ImageError('UNSUPPORTED_MEDIA_TYPE', `layer ${layer.digest}: media type ${layer.mediaType} is not a layer type we can unpack`, { digest: layer.digest });
      return c;
    },
    async fetchLayer(layer, onBytes) {
      if (!(await cache.hasBlob(layer.digest))) {
        // The body can fail after the headers came back; start the blob over
        // (a digest mismatch is not transient and ends it at once).
        for (let attempt = 1; ; attempt++) {
          try {
            const body = await client.openBlob(layer.digest, 'layer');
            // A 'data' listener starts the flow at once, and ingestBlob awaits
            // (mkdir) before it pipes: what flowed meanwhile was lost and the
            // blob came out short ("expected N bytes, got 0"). Paused, the
            // body waits for the pipe; the listener still sees every chunk.
            if (onBytes) { body.on('data', (c: Buffer) => onBytes(c.length)); body.pause(); }
            await cache.ingestBlob(layer.digest, layer.size, body, 'layer');
            break;
          } catch (err) {
            if (err instanceof ImageError || attempt >= attempts) throw err;
          }
        }
      } else {
        onBytes?.(layer.size);
      }
      const file = cache.blobPath(layer.digest);
      return () => fs.createReadStream(file, { highWaterMark: 1 << 20 });
    },
    async close() { /* blobs stay in the cache */ },
  };
  if (indexDigest) image.indexDigest = indexDigest;
  return image;
}
