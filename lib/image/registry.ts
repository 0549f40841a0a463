// Client for the OCI distribution API (v2), on Node's fetch (undici).
//
// Auth follows the registry's own challenge: a 401 carries
// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` (token server,
// fetched with basic credentials when we have them) or `Basic realm=...`.
// Tokens are kept per scope for the life of the client.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageError } from './errors.js';
import { digestOf, parseDigest, verifyBuffer } from './digest.js';
import { MANIFEST_ACCEPT } from './manifest.js';

/** Credentials for a registry. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryOptions {
  /** Talk plain http (only for registries you trust on the path, e.g. 127.0.0.1). */
  insecure?: boolean;
  /**
   * Basic credentials, used for Basic challenges and to get bearer tokens.
   * Default: `NODULARITY_DOCKER_USERNAME` / `NODULARITY_DOCKER_PASSWORD`.
   */
  credentials?: RegistryCredentials;
  /** Attempts for a request that fails transiently (network, 429, 5xx). Default 4. */
  attempts?: number;
  /** First backoff delay in ms, doubled each retry (with jitter). Default 250. */
  backoffMs?: number;
}

/** Credentials from options, else from the environment, else none. */
export function credentialsFrom(options: RegistryOptions, env: NodeJS.ProcessEnv = process.env): RegistryCredentials | undefined {
  if (options.credentials) return options.credentials;
  const username = env.NODULARITY_DOCKER_USERNAME;
  const password = env.NODULARITY_DOCKER_PASSWORD;
  if (username !== undefined && password !== undefined) return { username, password };
  if (username !== undefined || password !== undefined) {
    throw new ImageError('AUTH', 'NODULARITY_DOCKER_USERNAME and NODULARITY_DOCKER_PASSWORD must be set together');
  }
  return undefined;
}

/** Parse a WWW-Authenticate header into scheme and parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\S+)\s*(.*)$/.exec(header);
  const scheme = (m?.[1] ?? '').toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m?.[2] ?? ''); p; p = re.exec(m?.[2] ?? '')) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme, params };
}

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

class TransientError extends Error {
  constructor(message: string, readonly retryAfterMs?: number) { super(message); }
}

/** A manifest as fetched: bytes, the media type the server declared, its digest. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string | undefined;
  digest: string;
}

/** Distribution API client for one repository on one registry. */
export class RegistryClient {
  readonly registry: string;
  readonly repository: string;
  private readonly base: string;
  private readonly credentials: RegistryCredentials | undefined;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private authorization: string | undefined;

  constructor(registry: string, repository: string, options: RegistryOptions = {}) {
    this.registry = registry;
    this.repository = repository;
    this.base = `${options.insecure ? 'http' : 'https'}://${registry}/v2/${repository}`;
    this.credentials = credentialsFrom(options);
    this.attempts = Math.max(1, options.attempts ?? 4);
    this.backoffMs = options.backoffMs ?? 250;
  }

  private get where(): string {
    return `${this.registry}/${this.repository}`;
  }

  /**
   * Fetch with auth and retries. Transient failures (network errors, 429,
   * 5xx) are retried with exponential backoff; a 401 is answered once per
   * attempt by getting the credentials the challenge asks for.
   */
  async request(url: string, init: { method?: string; headers?: Record<string, string> } = {}, what: string): Promise<Response> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) {
        const wait = lastError instanceof TransientError && lastError.retryAfterMs !== undefined
          ? Math.min(lastError.retryAfterMs, 10_000)
          : this.backoffMs * 2 ** (attempt - 1) * (0.75 + Math.random() / 2);
        await sleep(wait);
      }
      try {
        let res = await this.send(url, init);
        if (res.status === 401) {
          const challenge = res.headers.get('www-authenticate');
          await res.body?.cancel();
          if (!challenge) throw new ImageError('AUTH', `${what} on ${this.where}: 401 Unauthorized without a WWW-Authenticate challenge`);
          await this.answer(challenge, what);
          res = await this.send(url, init);
          if (res.status === 401) {
            await res.body?.cancel();
            throw new ImageError('AUTH', `${what} on ${this.where}: credentials refused (401)${this.credentials ? ` for user \`${this.credentials.username}\`` : '; set NODULARITY_DOCKER_USERNAME/PASSWORD or pass credentials'}`);
          }
        }
        if (TRANSIENT_STATUS.has(res.status)) {
          const ra = res.headers.get('retry-after');
          await res.body?.cancel();
          throw new TransientError(`${what} on ${this.where}: HTTP ${res.status}`, ra && /^\d+$/.test(ra) ? Number(ra) * 1000 : undefined);
        }
        if (res.status === 404) {
          const detail = await errorDetail(res);
          throw new ImageError('NOT_FOUND', `${what} on ${this.where}: not found (404${detail})`);
        }
        if (!res.ok) {
          const detail = await errorDetail(res);
          throw new ImageError(res.status === 403 ? 'AUTH' : 'REGISTRY', `${what} on ${this.where}: HTTP ${res.status}${detail}`);
        }
        return res;
      } catch (err) {
        if (err instanceof ImageError) throw err;
        // fetch() rejects with a TypeError for connection-level failures.
        lastError = err instanceof TransientError ? err : new TransientError(`${what} on ${this.where}: ${(err as Error).message}${(err as Error).cause ? ` (${String((err as { cause?: { code?: string; message?: string } }).cause?.code ?? (err as { cause?: Error }).cause?.message)})` : ''}`);
      }
    }
    throw new ImageError('REGISTRY', `${(lastError as Error).message}; gave up after ${this.attempts} attempts`, { cause: lastError });
  }

  private async send(url: string, init: { method?: string; headers?: Record<string, string> }): Promise<Response> {
    const headers: Record<string, string> = { 'user-agent': 'nodularity', ...init.headers };
    if (this.authorization) headers.authorization = this.authorization;
    return await fetch(url, { method: init.method ?? 'GET', headers, redirect: 'follow' });
  }

  /** Get what a WWW-Authenticate challenge asks for and keep it for later requests. */
  private async answer(challenge: string, what: string): Promise<void> {
    const { scheme, params } = parseChallenge(challenge);
    const basic = this.credentials ? 'Basic ' + Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64') : undefined;
    if (scheme === 'basic') {
      if (!basic) throw new ImageError('AUTH', `${what} on ${this.where}: the registry requires a login; set NODULARITY_DOCKER_USERNAME/PASSWORD or pass credentials`);
      this.authorization = basic;
      return;
    }
    if (scheme !== 'bearer') throw new ImageError('AUTH', `${what} on ${this.where}: unsupported auth scheme \`${scheme}\``);
    if (!params.realm) throw new ImageError('AUTH', `${what} on ${this.where}: bearer challenge without a realm`);
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', params.scope ?? `repository:${this.repository}:pull`);
    let res: Response | undefined;
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.attempts && !res; attempt++) {
      if (attempt > 0) await sleep(this.backoffMs * 2 ** (attempt - 1));
      try {
        const r = await fetch(tokenUrl, { headers: basic ? { authorization: basic, 'user-agent': 'nodularity' } : { 'user-agent': 'nodularity' } });
        if (TRANSIENT_STATUS.has(r.status)) { await r.body?.cancel(); lastErr = new Error(`HTTP ${r.status}`); continue; }
        res = r;
      } catch (err) {
        lastErr = err;
      }
    }
    if (!res) throw new ImageError('AUTH', `${what} on ${this.where}: token server ${tokenUrl.origin} unreachable (${(lastErr as Error)?.message})`, { cause: lastErr });
    if (!res.ok) {
      const detail = await errorDetail(res);
      const refused = res.status === 401 || res.status === 403;
      const who = refused && this.credentials ? `credentials for user \`${this.credentials.username}\` refused by ` : '';
      throw new ImageError('AUTH', `${what} on ${this.where}: ${who}token server ${tokenUrl.origin}${who ? '' : ' refused'} (HTTP ${res.status}${detail})${basic ? '' : '; set NODULARITY_DOCKER_USERNAME/PASSWORD or pass credentials'}`);
    }
    const body = (await res.json()) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new ImageError('AUTH', `${what} on ${this.where}: token server answered without a token`);
    this.authorization = `Bearer ${token}`;
  }

  /**
   * Get a manifest (or index) by tag or digest. A manifest asked for by
   * digest is verified against it; one asked for by tag gets its digest
   * computed (and checked against Docker-Content-Digest when sent).
   */
  async getManifest(reference: string): Promise<FetchedManifest> {
    const byDigest = reference.includes(':');
    const what = `manifest ${reference}`;
    const res = await this.request(`${this.base}/manifests/${encodeURIComponent(reference).replace(/%3A/g, ':')}`, { headers: { accept: MANIFEST_ACCEPT } }, what);
    const bytes = Buffer.from(await res.arrayBuffer());
    if (bytes.length > 16 << 20) throw new ImageError('BAD_MANIFEST', `${what} on ${this.where}: ${bytes.length} bytes is too large`);
    const mediaType = res.headers.get('content-type')?.split(';')[0]?.trim() || undefined;
    let digest: string;
    if (byDigest) {
      verifyBuffer(bytes, reference, undefined, `manifest`);
      digest = reference;
    } else {
      const header = res.headers.get('docker-content-digest');
      const algorithm = header ? parseDigest(header, 'Docker-Content-Digest').algorithm : 'sha256';
      digest = digestOf(bytes, algorithm);
      if (header && header !== digest) {
        throw new ImageError('DIGEST_MISMATCH', `${what} on ${this.where}: Docker-Content-Digest says ${header}, content hashes to ${digest}`, { digest: header });
      }
    }
    return { bytes, mediaType, digest };
  }

  /** Open a blob for streaming. The caller verifies the digest while it reads. */
  async openBlob(digest: string, what = 'blob'): Promise<Readable> {
    parseDigest(digest, what);
    const res = await this.request(`${this.base}/blobs/${digest}`, {}, `${what} ${digest}`);
    if (!res.body) throw new ImageError('REGISTRY', `${what} ${digest} on ${this.where}: empty response body`, { digest });
    return Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>, { highWaterMark: 1 << 20 });
  }

  /** Get a small blob (config) fully, verified. */
  async getBlob(digest: string, size: number | undefined, what: string): Promise<Buffer> {
    const res = await this.request(`${this.base}/blobs/${digest}`, {}, `${what} ${digest}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    verifyBuffer(bytes, digest, size, what);
    return bytes;
  }
}

/** Short detail from a registry's JSON error body, e.g. ` MANIFEST_UNKNOWN: manifest unknown`. */
async function errorDetail(res: Response): Promise<string> {
  try {
    const text = await res.text();
    const json = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const e = json.errors?.[0];
    if (e) return `: ${e.code ?? ''}${e.message ? ': ' + e.message : ''}`;
    return text ? `: ${text.slice(0, 200)}` : '';
  } catch {
    return '';
  }
}
