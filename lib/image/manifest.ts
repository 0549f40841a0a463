import { ImageError } from './errors.js';
import { parseDigest } from './digest.js';

/** Media types we read. Docker schema 2 and OCI are structurally the same. */
export const MediaType = {
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNonDistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNonDist: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** What an `Accept` header should list when fetching a manifest by tag. */
export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.OciManifest,
  MediaType.DockerManifestList,
  MediaType.DockerManifest,
].join(', ');

/** Layer compression, from the media type (and, for docker-archive, sniffed). */
export type Compression = 'none' | 'gzip' | 'zstd';

/** An OCI content descriptor (only the fields we use). */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

/** A single-platform image manifest, OCI or Docker schema 2. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** A multi-platform index: OCI image index or Docker manifest list. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

function fail(what: string, msg: string, digest?: string): never {
  throw new ImageError('BAD_MANIFEST', `${what}: ${msg}`, digest ? { digest } : {});
}

function checkDescriptor(d: unknown, what: string): Descriptor {
  if (!d || typeof d !== 'object') fail(what, 'not a descriptor object');
  const o = d as Record<string, unknown>;
  if (typeof o.mediaType !== 'string') fail(what, 'mediaType missing');
  if (typeof o.digest !== 'string') fail(what, 'digest missing');
  parseDigest(o.digest, `${what} digest`);
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0)
    fail(what, 'size missing or invalid', o.digest);
  return o as unknown as Descriptor;
}

/**
 * Parse manifest bytes. Returns either an index or a manifest; which one is
 * decided by the media type in the body, falling back to the one the server
 * or the parent descriptor declared (OCI manifests may omit mediaType).
 */
export function parseManifest(
  body: Uint8Array,
  declaredType: string | undefined,
  what: string,
): { index: ImageIndex } | { manifest: ImageManifest } {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(Buffer.from(body).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ImageError('BAD_MANIFEST', `${what}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (json.schemaVersion !== 2)
    fail(what, `schemaVersion ${String(json.schemaVersion)} is not supported (only 2: OCI and Docker schema 2)`);
  const type = typeof json.mediaType === 'string' ? json.mediaType : declaredType?.split(';')[0]?.trim();
  const isIndex =
    type === MediaType.OciIndex ||
    type === MediaType.DockerManifestList ||
    (type === undefined && Array.isArray(json.manifests));
  if (isIndex) {
    if (!Array.isArray(json.manifests)) fail(what, 'index has no manifests array');
    const manifests = json.manifests.map((m, i) => checkDescriptor(m, `${what} manifests[${i}]`));
    return { index: { schemaVersion: 2, mediaType: type ?? MediaType.OciIndex, manifests } };
  }
  if (type !== undefined && type !== MediaType.OciManifest && type !== MediaType.DockerManifest) {
    throw new ImageError('UNSUPPORTED_MEDIA_TYPE', `${what}: media type ${type} is not an image manifest or index`);
  }
  const config = checkDescriptor(json.config, `${what} config`);
  if (!Array.isArray(json.layers)) fail(what, 'layers array missing');
  const layers = json.layers.map((l, i) => checkDescriptor(l, `${what} layers[${i}]`));
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: type ?? MediaType.OciManifest, config, layers };
  if (json.annotations && typeof json.annotations === 'object')
    manifest.annotations = json.annotations as Record<string, string>;
  return { manifest };
}

/** Compression of a layer from its media type; undefined if it is not a layer we can apply. */
export function layerCompression(mediaType: string): Compression | undefined {
  switch (mediaType) {
    case MediaType.OciLayer:
    case MediaType.OciLayerNonDist:
      return 'none';
    case MediaType.OciLayerGzip:
    case MediaType.OciLayerNonDistGzip:
    case MediaType.DockerLayerGzip:
    case MediaType.DockerLayerForeignGzip:
      return 'gzip';
    case MediaType.OciLayerZstd:
      return 'zstd';
    default:
      return undefined;
  }
}

/** The host's platform in OCI/Go terms. */
export function hostPlatform(): Platform {
  const arch: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
    loong64: 'loong64',
    mips64el: 'mips64le',
  };
  const p: Platform = { os: 'linux', architecture: arch[process.arch] ?? process.arch };
  if (process.arch === 'arm')
    p.variant = `v${(process.config.variables as { arm_version?: string }).arm_version ?? '7'}`;
  return p;
}

/**
 * Choose the index entry for `want`. An exact variant match wins; an entry
 * without a variant is accepted (amd64 images rarely declare one). Attestation
 * manifests (BuildKit's `unknown/unknown`) never match a real platform.
 */
export function selectPlatform(index: ImageIndex, want: Platform, what: string): Descriptor {
  const candidates = index.manifests.filter(
    (m) => m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture,
  );
  const exact = candidates.find((m) => (m.platform!.variant ?? '') === (want.variant ?? ''));
  const chosen = exact ?? candidates.find((m) => !m.platform!.variant) ?? candidates[0];
  if (chosen) return chosen;
  // An index without platform fields (umoci writes these) with one manifest is unambiguous.
  const bare = index.manifests.filter((m) => !m.platform);
  if (bare.length === 1) return bare[0]!;
  const have = index.manifests
    .map((m) =>
      m.platform
        ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? '/' + m.platform.variant : ''}`
        : '(no platform)',
    )
    .join(', ');
  throw new ImageError(
    'NO_PLATFORM',
    `${what}: no manifest for ${want.os}/${want.architecture}${want.variant ? '/' + want.variant : ''} (has: ${have || 'none'})`,
  );
}
