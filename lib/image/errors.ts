/**
 * Error raised for anything wrong with an image: a bad source string, a
 * registry answer, a digest mismatch, an unsafe layer entry. It names what is
 * at fault (the source, the layer digest, the entry path) so that a pilot's
 * log line is enough to find the broken image.
 */
export class ImageError extends Error {
  /** Machine-readable kind, e.g. `DIGEST_MISMATCH`, `UNSAFE_ENTRY`. */
  readonly reason: ImageErrorCode;
  /**
   * The errno name behind the failure (`ENOENT`, `EACCES`), when there is
   * one: `code` means the same on every error class of the library
   * (docs/error-model.md); the kind is `reason`.
   */
  readonly code?: string;
  /** Digest of the layer or blob at fault, when there is one. */
  readonly digest?: string;
  /** Path of the tar entry at fault, as written in the layer. */
  readonly entry?: string;
  /** The image source string the operation was given. */
  readonly source?: string;

  constructor(
    reason: ImageErrorCode,
    message: string,
    details: { digest?: string; entry?: string; source?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ImageError';
    this.reason = reason;
    const errno = (details.cause as { code?: unknown } | undefined)?.code;
    if (typeof errno === 'string' && /^E[A-Z0-9]+$/.test(errno)) this.code = errno;
    if (details.digest !== undefined) this.digest = details.digest;
    if (details.entry !== undefined) this.entry = details.entry;
    if (details.source !== undefined) this.source = details.source;
  }
}

export type ImageErrorCode =
  | 'BAD_SOURCE'
  | 'BAD_DIGEST'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'UNSAFE_ENTRY'
  | 'BAD_LAYER'
  | 'BAD_MANIFEST'
  | 'NOT_FOUND'
  | 'NO_PLATFORM'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'AUTH'
  | 'REGISTRY'
  | 'CACHE';
