// OCI image layout directories (image-spec "image-layout.md"): oci-layout,
// index.json, blobs/ALG/HEX. Blobs are read in place, never copied.
import * as path from 'node:path';
import { ImageError } from './errors.js';
import { MAX_JSON, openImageFile, openImageStream, readImageFile } from './image-file.js';
import { parseDigest, verifyBuffer } from './digest.js';
import {
  hostPlatform,
  layerCompression,
  parseManifest,
  selectPlatform,
  type Descriptor,
  type ImageIndex,
  type Platform,
} from './manifest.js';
import type { OciLayoutSource } from './reference.js';
import { formatSource } from './reference.js';
import type { ResolvedImage } from './source.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

/** Path of a blob inside a layout; the digest is validated first so it cannot escape. */
export function blobPath(dir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return path.join(dir, 'blobs', algorithm, hex);
}

async function readBlob(dir: string, d: Descriptor, what: string): Promise<Buffer> {
  if (d.size > MAX_JSON)
    throw new ImageError('BAD_MANIFEST', `${what} ${d.digest}: ${d.size} bytes is too large for JSON`, {
      digest: d.digest,
    });
  let data: Buffer;
  try {
    // A regular file of the declared size (not a FIFO, not a link to /dev/zero), read no further.
    data = await readImageFile(blobPath(dir, d.digest), {
      what: `${what} ${d.digest}`,
      code: 'BAD_MANIFEST',
      digest: d.digest,
      size: d.size,
      max: MAX_JSON,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new ImageError('NOT_FOUND', `${what} ${d.digest}: blob missing from layout ${dir}`, { digest: d.digest });
    throw err;
  }
  verifyBuffer(data, d.digest, d.size, what);
  return data;
}

/** Pick the index.json entry matching the tag (or the only one). */
function pickTagged(index: ImageIndex, src: OciLayoutSource): Descriptor {
  if (src.tag !== undefined) {
    const found = index.manifests.filter((m) => m.annotations?.[REF_NAME] === src.tag);
    if (found.length === 0) {
      const tags = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
      throw new ImageError(
        'NOT_FOUND',
        `${formatSource(src)}: no image tagged \`${src.tag}\` in ${src.dir}/index.json (tags: ${tags.join(', ') || 'none'})`,
        { source: formatSource(src) },
      );
    }
    return found[0]!;
  }
  if (index.manifests.length === 1) return index.manifests[0]!;
  const tags = index.manifests.map((m) => m.annotations?.[REF_NAME] ?? m.digest);
  throw new ImageError(
    'BAD_SOURCE',
    `${formatSource(src)}: the layout holds ${index.manifests.length} images; name one with oci:DIR:TAG (${tags.join(', ')})`,
    { source: formatSource(src) },
  );
}

/** Open an image in an OCI layout directory, resolved to `platform`. */
export async function openOciLayout(src: OciLayoutSource, platform: Platform = hostPlatform()): Promise<ResolvedImage> {
  const name = formatSource(src);
  let layoutFile: string;
  try {
    layoutFile = (await readImageFile(path.join(src.dir, 'oci-layout'), { what: name, max: MAX_JSON })).toString(
      'utf8',
    );
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(
      'BAD_SOURCE',
      `${name}: ${src.dir} is not an OCI image layout (no oci-layout file: ${(err as NodeJS.ErrnoException).code})`,
      { source: name, cause: err },
    );
  }
  try {
    const v = (JSON.parse(layoutFile) as { imageLayoutVersion?: string }).imageLayoutVersion;
    if (v !== '1.0.0') throw new Error(`imageLayoutVersion ${v}`);
  } catch (err) {
    throw new ImageError('BAD_SOURCE', `${name}: unsupported oci-layout file (${(err as Error).message})`, {
      source: name,
    });
  }
  let indexBytes: Buffer;
  try {
    indexBytes = await readImageFile(path.join(src.dir, 'index.json'), { what: name, max: MAX_JSON });
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(
      'BAD_SOURCE',
      `${name}: cannot read ${path.join(src.dir, 'index.json')} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      { source: name, cause: err },
    );
  }
  const top = parseManifest(indexBytes, undefined, `${src.dir}/index.json`);
  if (!('index' in top)) throw new ImageError('BAD_MANIFEST', `${src.dir}/index.json is not an image index`);
  let desc = pickTagged(top.index, src);
  let indexDigest: string | undefined;
  // Nested indexes are allowed by the spec; a small bound keeps a cycle from looping.
  for (let depth = 0; ; depth++) {
    if (depth > 4) throw new ImageError('BAD_MANIFEST', `${name}: indexes nested too deeply`);
    const bytes = await readBlob(src.dir, desc, 'manifest');
    const parsed = parseManifest(bytes, desc.mediaType, `manifest ${desc.digest}`);
    if ('index' in parsed) {
      indexDigest = desc.digest;
      desc = selectPlatform(parsed.index, platform, `${name} index ${desc.digest}`);
      continue;
    }
    const manifest = parsed.manifest;
    const configBytes = await readBlob(src.dir, manifest.config, 'image config');
    const image: ResolvedImage = {
      source: name,
      manifestDigest: desc.digest,
      manifest,
      manifestBytes: bytes,
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
      async fetchLayer(layer) {
        const p = blobPath(src.dir, layer.digest);
        const o = { what: `layer ${layer.digest}`, code: 'BAD_LAYER' as const, digest: layer.digest, size: layer.size };
        // Checked now (present, regular, not larger than declared), and again when opened to be read.
        try {
          const { fh, size } = await openImageFile(p, o);
          await fh.close();
          if (size > layer.size)
            throw new ImageError(
              'SIZE_MISMATCH',
              `layer ${layer.digest}: ${p} has ${size} bytes, its descriptor declares ${layer.size}`,
              { digest: layer.digest },
            );
        } catch (err) {
          if (err instanceof ImageError) throw err;
          if ((err as NodeJS.ErrnoException).code === 'ENOENT')
            throw new ImageError('NOT_FOUND', `layer ${layer.digest}: blob missing from layout ${src.dir}`, {
              digest: layer.digest,
              cause: err,
            });
          throw err;
        }
        return () => openImageStream(p, o);
      },
      async close() {
        /* nothing held open */
      },
    };
    if (indexDigest) image.indexDigest = indexDigest;
    return image;
  }
}
