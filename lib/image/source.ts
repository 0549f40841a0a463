import type { Readable } from 'node:stream';
import type { Compression, Descriptor, ImageManifest } from './manifest.js';

/**
 * An image resolved to one platform manifest, whatever it came from. The
 * manifest and config are already fetched and verified; layers are opened
 * on demand and verified by the unpacker while they stream.
 */
export interface ResolvedImage {
  /** Canonical source string (for metadata and messages). */
  source: string;
  /** Digest of the platform manifest: the cache key. */
  manifestDigest: string;
  /** Digest of the index the manifest was chosen from, if any. */
  indexDigest?: string;
  manifest: ImageManifest;
  manifestBytes: Buffer;
  /** Raw image config JSON (verified against manifest.config.digest). */
  configBytes: Buffer;
  /** Compression of a layer of this image. */
  compression(layer: Descriptor): Compression;
  /**
   * Make a layer blob available and return a function that opens it. Registry
   * sources download here (into the blob cache); local sources return at once.
   */
  fetchLayer(layer: Descriptor, onBytes?: (n: number) => void): Promise<() => Readable | Promise<Readable>>;
  /** Release resources (temp files of a docker-archive import). */
  close(): Promise<void>;
}
