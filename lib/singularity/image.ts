// The IMAGE argument: a directory (plain rootfs or Singularity sandbox), or
// an image reference (oci:, docker-archive:, docker://) that goes through the
// image cache and comes back as an unpacked rootfs with its config.
import { AsyncLocalStorage } from 'node:async_hooks';
import { lstatSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { SpecError } from '../errors.js';
// The image code (registry client, tar and layer decoders, the cache) is
// loaded when an IMAGE needs it, not for a directory: `exec DIR` starts as
// fast as the launch itself allows.
import type { CacheHold, ImageConfig, PullOptions } from '../image/index.js';

export interface ResolvedRunImage {
  /** What the caller gave. */
  ref: string;
  /** Absolute host path of the root file system. */
  rootfs: string;
  /** Has /.singularity.d (a Singularity sandbox). */
  sandbox: boolean;
  /** OCI image config when the image came through the cache. */
  config?: ImageConfig;
  /** Manifest digest when the image came through the cache. */
  digest?: string;
  /**
   * The hold on the cache entry (image through the cache): `cache clean`
   * leaves the entry alone until it is released. exec()/runscript()/...
   * release it when the container exits; a caller of compileLaunch() or
   * resolveRunImage() who spawns by itself releases it then too.
   */
  hold?: CacheHold;
}

/**
 * Holds taken by resolveRunImage() within one launch, so that the launch can
 * release them when it fails after the image was resolved (compileLaunch
 * throwing on a later option) and the caller never sees the image.
 */
export const launchHolds = new AsyncLocalStorage<CacheHold[]>();

/**
 * An image already resolved for this launch: a process joining an instance
 * runs with the instance's image as recorded at its start (not resolved, nor
 * pulled, again).
 */
export const presetImage = new AsyncLocalStorage<ResolvedRunImage>();

const REFERENCE = /^(oci|docker-archive|oci-archive|docker):/;

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const SUPPORTED = 'a directory, oci:DIR[:TAG], docker-archive:FILE[:NAME:TAG] or docker://HOST/REPO[:TAG|@DIGEST]';
// What a Docker reference without a scheme looks like: [HOST/]NAME[/NAME...][:TAG][@DIGEST].
const BARE_REFERENCE =
  /^(?:[a-zA-Z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;

/**
 * For an IMAGE that is no existing path: the line saying which references
 * are supported, when it looks like a reference (a scheme such as library://
 * or shub://, or a bare Docker name with a tag), else undefined.
 */
export function unsupportedScheme(image: string): string | undefined {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(image);
  const bare = BARE_REFERENCE.test(image) && (image.includes(':') || image.includes('@'));
  if (!m && !bare) return undefined;
  const scheme =
    m && !bare ? `the \`${m[1]}:\` scheme is not supported` : 'no such directory, and a reference needs a scheme';
  return (
    `image \`${image}\`: ${scheme}; give ${SUPPORTED}` + (bare ? ` (for a registry image: docker://${image})` : '')
  );
}

export async function resolveRunImage(
  image: string,
  pull: PullOptions = {},
  option = 'image',
): Promise<ResolvedRunImage> {
  if (typeof image !== 'string' || image === '')
    throw new SpecError(option, 'an image is required (a directory, oci:DIR, docker-archive:FILE or docker://REF)');
  const preset = presetImage.getStore();
  if (preset && preset.ref === image) return preset;
  if (image.startsWith('instance://'))
    throw new SpecError(option, `${image}: an instance is joined by exec, run, shell or test, not started from`);
  if (REFERENCE.test(image)) {
    // The entry is held from here until the container exits. A clean
    // between the pull and the hold removed it: pull again (rarely more than once).
    const { ImageCache, ImageError, pullImage } = await import('../image/index.js');
    const cache = new ImageCache(pull.cacheDir);
    for (let attempt = 1; ; attempt++) {
      const p = await pullImage(image, pull);
      const hold = p.dir === cache.entryDir(p.manifestDigest) ? await cache.hold(p.manifestDigest) : undefined;
      if (hold) launchHolds.getStore()?.push(hold);
      else if (!pull.dest) {
        if (attempt < 3) continue;
        throw new ImageError(
          'CACHE',
          `${image}: the cache entry ${p.manifestDigest} was removed each time right after it was pulled (a \`cache clean\` running in a loop?)`,
        );
      }
      return {
        ref: image,
        rootfs: p.rootfs,
        sandbox: isDir(resolve(p.rootfs, '.singularity.d')),
        config: p.config,
        digest: p.manifestDigest,
        ...(hold ? { hold } : {}),
      };
    }
  }
  const path = resolve(image);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      const scheme = unsupportedScheme(image);
      if (scheme) throw new SpecError(option, scheme);
    }
    throw new SpecError(option, `image ${image} does not exist (${code})`);
  }
  if (!st.isDirectory()) {
    throw new SpecError(
      option,
      `image ${image} is a file: SIF and other image files are not supported; give an unpacked directory (\`apptainer build --sandbox\`), oci:DIR, docker-archive:FILE or docker://REF`,
    );
  }
  // What `pull SRC DEST` wrote: DEST/rootfs with the image config in
  // DEST/image.json, so `exec DEST` runs with the config as a cached image does.
  const pulledConfig = resolve(path, 'image.json');
  if (isDir(resolve(path, 'rootfs')) && isFile(pulledConfig)) {
    let config: ImageConfig, digest: string;
    const [{ parseImageConfig }, { MAX_JSON, readImageFile }] = await Promise.all([
      import('../image/config.js'),
      import('../image/image-file.js'),
    ]);
    try {
      const meta = JSON.parse(
        (await readImageFile(pulledConfig, { what: pulledConfig, code: 'BAD_MANIFEST', max: MAX_JSON })).toString(
          'utf8',
        ),
      ) as { manifestDigest: string; config: unknown };
      config = parseImageConfig(Buffer.from(JSON.stringify(meta.config)));
      digest = meta.manifestDigest;
    } catch (e) {
      throw new SpecError(
        option,
        `image ${image}: ${pulledConfig} is not the image.json of a pull (${(e as Error).message})`,
      );
    }
    const rootfs = resolve(path, 'rootfs');
    return { ref: image, rootfs, sandbox: isDir(resolve(rootfs, '.singularity.d')), config, digest };
  }
  return { ref: image, rootfs: path, sandbox: isDir(resolve(path, '.singularity.d')) };
}

function isFile(p: string): boolean {
  try {
    return lstatSync(p).isFile();
  } catch {
    return false;
  }
}
