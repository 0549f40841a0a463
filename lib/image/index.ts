// Public surface of the image subsystem.
export {
  pullImage,
  inspectImage,
  type PullOptions,
  type PulledImage,
  type ImageInspection,
  type PullProgress,
} from './pull.js';
export {
  parseImageConfig,
  resolveImageUser,
  imageProcessDefaults,
  readFileInRoot,
  type ImageConfig,
  type ResolvedUser,
  type ImageProcessDefaults,
} from './config.js';
export {
  ImageCache,
  defaultCacheDir,
  CACHE_CONTENT_TYPES,
  type CachedImage,
  type CachedImageMeta,
  type CachedBlob,
  type CacheHold,
  type CacheContentType,
  type CleanOptions,
  type CleanResult,
  type HeldEntry,
} from './cache.js';
export {
  parseSource,
  formatSource,
  type ImageSource,
  type OciLayoutSource,
  type DockerArchiveSource,
  type RegistrySource,
} from './reference.js';
export {
  unpackLayers,
  removeTree,
  RootfsWriter,
  type LayerInput,
  type KeepOptions,
  type UnpackOptions,
  type UnpackStats,
} from './unpack.js';
export { ImageError, type ImageErrorCode } from './errors.js';
export { hostPlatform, type Platform, type Descriptor, type ImageManifest } from './manifest.js';
export { type RegistryOptions, type RegistryCredentials } from './registry.js';
