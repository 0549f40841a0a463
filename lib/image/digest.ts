import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { ImageError } from './errors.js';

/** Digest algorithms accepted in descriptors (OCI image-spec "registered algorithms"). */
export type DigestAlgorithm = 'sha256' | 'sha512';

/** A parsed `ALGORITHM:HEX` content digest. */
export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

/**
 * Parse and validate a digest. The hex part is checked strictly (lowercase,
 * exact length) because it becomes a file name in the cache and in layouts:
 * a loose check here would be a path-traversal hole there.
 */
export function parseDigest(digest: string, what = 'digest'): ParsedDigest {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(digest);
  if (!m) throw new ImageError('BAD_DIGEST', `${what} \`${digest}\` is not of the form ALGORITHM:HEX`, { digest });
  const algorithm = m[1] as DigestAlgorithm;
  const expected = HEX_LENGTH[algorithm];
  if (expected === undefined)
    throw new ImageError('BAD_DIGEST', `${what} \`${digest}\`: unsupported algorithm ${m[1]} (sha256 and sha512 are)`, {
      digest,
    });
  if (m[2]!.length !== expected)
    throw new ImageError(
      'BAD_DIGEST',
      `${what} \`${digest}\`: ${algorithm} needs ${expected} hex digits, got ${m[2]!.length}`,
      { digest },
    );
  return { algorithm, hex: m[2]! };
}

/** Digest of an in-memory blob (manifests, configs). */
export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}

/** Check an in-memory blob against its descriptor digest (and size when known). */
export function verifyBuffer(data: Uint8Array, digest: string, size: number | undefined, what: string): void {
  const { algorithm } = parseDigest(digest, what);
  if (size !== undefined && data.length !== size) {
    throw new ImageError('SIZE_MISMATCH', `${what} ${digest}: expected ${size} bytes, got ${data.length}`, { digest });
  }
  const actual = digestOf(data, algorithm);
  if (actual !== digest)
    throw new ImageError('DIGEST_MISMATCH', `${what} ${digest}: content hashes to ${actual}`, { digest });
}

/**
 * Hashes a blob as it streams and says what is wrong with it: more bytes
 * than the descriptor's size (as soon as that happens), or at the end a
 * different size or digest. Returns the error rather than throwing it, so a
 * stream can fail with it.
 */
export class DigestCheck {
  readonly expected: string;
  private readonly hash: Hash;
  private readonly algorithm: DigestAlgorithm;
  private readonly size: number | undefined;
  private readonly what: string;
  /** Bytes seen so far (for progress reporting). */
  bytes = 0;

  constructor(expected: string, options: { size?: number; what?: string } = {}) {
    this.what = options.what ?? 'blob';
    this.algorithm = parseDigest(expected, this.what).algorithm;
    this.expected = expected;
    this.size = options.size;
    this.hash = createHash(this.algorithm);
  }

  update(chunk: Uint8Array): ImageError | undefined {
    this.bytes += chunk.length;
    if (this.size !== undefined && this.bytes > this.size) {
      return new ImageError(
        'SIZE_MISMATCH',
        `${this.what} ${this.expected}: more than the ${this.size} bytes its descriptor declares`,
        { digest: this.expected },
      );
    }
    this.hash.update(chunk);
    return undefined;
  }

  end(): ImageError | undefined {
    if (this.size !== undefined && this.bytes !== this.size) {
      return new ImageError(
        'SIZE_MISMATCH',
        `${this.what} ${this.expected}: expected ${this.size} bytes, got ${this.bytes}`,
        { digest: this.expected },
      );
    }
    const actual = `${this.algorithm}:${this.hash.digest('hex')}`;
    if (actual !== this.expected)
      return new ImageError('DIGEST_MISMATCH', `${this.what} ${this.expected}: content hashes to ${actual}`, {
        digest: this.expected,
      });
    return undefined;
  }
}

/**
 * Pass-through stream that hashes what flows through it and fails at the end
 * if the digest (or the byte count) differs. Failing in flush() means the
 * error reaches the pipeline before the consumer sees a clean end, so a
 * corrupt blob can never be committed as complete.
 */
export class DigestVerifier extends Transform {
  private readonly check: DigestCheck;

  constructor(expected: string, options: { size?: number; what?: string } = {}) {
    super();
    this.check = new DigestCheck(expected, options);
  }

  get expected(): string {
    return this.check.expected;
  }

  /** Bytes seen so far (for progress reporting). */
  get bytes(): number {
    return this.check.bytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const err = this.check.update(chunk);
    if (err) cb(err);
    else cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    cb(this.check.end());
  }
}
