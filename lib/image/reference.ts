import * as path from 'node:path';
import { ImageError } from './errors.js';
import { parseDigest } from './digest.js';

/** `oci:DIR[:TAG]`: an OCI image layout directory. */
export interface OciLayoutSource {
  kind: 'oci';
  /** Absolute path of the layout directory. */
  dir: string;
  /** `org.opencontainers.image.ref.name` to select; undefined means "the only image". */
  tag?: string;
}

/** `docker-archive:FILE[:NAME:TAG]`: a `docker save` style tar. */
export interface DockerArchiveSource {
  kind: 'docker-archive';
  /** Absolute path of the archive. */
  file: string;
  /** RepoTags entry to select; undefined means "the only image". */
  ref?: string;
}

/** `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`: an image in a registry. */
export interface RegistrySource {
  kind: 'docker';
  /** Registry host as used in URLs, e.g. `127.0.0.1:5000`, `registry-1.docker.io`. */
  registry: string;
  /** Repository path, e.g. `library/busybox`. */
  repository: string;
  /** Tag, when the reference has no digest. */
  tag?: string;
  /** Manifest digest pinned by the reference. */
  digest?: string;
}

export type ImageSource = OciLayoutSource | DockerArchiveSource | RegistrySource;

const DOCKER_HUB = 'registry-1.docker.io';
// Same grammar as the distribution reference package, minus the parts we do not accept.
const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/**
 * Parse an image source string. Relative paths are resolved against `cwd`.
 * Paths containing `:` are not supported in `oci:` and `docker-archive:`
 * sources (the same limit as containers/image transports).
 */
export function parseSource(source: string, cwd = process.cwd()): ImageSource {
  if (source.startsWith('oci:')) {
    const rest = source.slice(4);
    const colon = rest.indexOf(':');
    const dir = colon < 0 ? rest : rest.slice(0, colon);
    const tag = colon < 0 ? undefined : rest.slice(colon + 1);
    if (!dir) throw new ImageError('BAD_SOURCE', `\`${source}\`: oci: needs a directory (oci:DIR[:TAG])`, { source });
    if (tag !== undefined && !tag)
      throw new ImageError('BAD_SOURCE', `\`${source}\`: empty tag after the directory`, { source });
    return tag === undefined
      ? { kind: 'oci', dir: path.resolve(cwd, dir) }
      : { kind: 'oci', dir: path.resolve(cwd, dir), tag };
  }
  if (source.startsWith('docker-archive:')) {
    const rest = source.slice('docker-archive:'.length);
    const colon = rest.indexOf(':');
    const file = colon < 0 ? rest : rest.slice(0, colon);
    const ref = colon < 0 ? undefined : rest.slice(colon + 1);
    if (!file)
      throw new ImageError(
        'BAD_SOURCE',
        `\`${source}\`: docker-archive: needs a file (docker-archive:FILE[:NAME:TAG])`,
        { source },
      );
    return ref
      ? { kind: 'docker-archive', file: path.resolve(cwd, file), ref }
      : { kind: 'docker-archive', file: path.resolve(cwd, file) };
  }
  if (source.startsWith('docker://')) return parseRegistryReference(source.slice('docker://'.length), source);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(source);
  // A Docker name without a scheme (`ubuntu:22.04`, `quay.io/x/y`): say how to write it.
  const bare =
    !scheme &&
    /^(?:[a-zA-Z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/.test(
      source,
    );
  const what = scheme ? `the \`${scheme[1]}://\` scheme is not supported` : 'unknown image source';
  throw new ImageError(
    'BAD_SOURCE',
    `\`${source}\`: ${what}; use oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG] or docker://HOST/REPO[:TAG|@DIGEST]` +
      (bare ? ` (for a registry image: docker://${source})` : ''),
    { source },
  );
}

/** Parse the part after `docker://`, normalising Docker Hub short names as docker does. */
function parseRegistryReference(ref: string, source: string): RegistrySource {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    parseDigest(digest, `digest in \`${source}\``);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ImageError('BAD_SOURCE', `\`${source}\`: invalid tag \`${tag}\``, { source });
  }
  const parts = rest.split('/');
  let registry: string;
  // A first component is a host if it looks like one (docker's rule).
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
  } else {
    registry = DOCKER_HUB;
  }
  if (registry === 'docker.io' || registry === 'index.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  if (parts.length === 0 || parts.some((p) => !REPO_COMPONENT.test(p))) {
    throw new ImageError(
      'BAD_SOURCE',
      `\`${source}\`: invalid repository \`${parts.join('/')}\` (lowercase letters, digits and . _ - separators)`,
      { source },
    );
  }
  const out: RegistrySource = { kind: 'docker', registry, repository: parts.join('/') };
  if (digest) out.digest = digest;
  else out.tag = tag ?? 'latest';
  if (digest && tag) out.tag = tag;
  return out;
}

/** Render a source back to a canonical string, for logs and cache metadata. */
export function formatSource(s: ImageSource): string {
  switch (s.kind) {
    case 'oci':
      return `oci:${s.dir}${s.tag ? ':' + s.tag : ''}`;
    case 'docker-archive':
      return `docker-archive:${s.file}${s.ref ? ':' + s.ref : ''}`;
    case 'docker':
      return `docker://${s.registry}/${s.repository}${s.tag ? ':' + s.tag : ''}${s.digest ? '@' + s.digest : ''}`;
  }
}
