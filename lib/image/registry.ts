// Client for the OCI distribution API (v2), on node:http/https.
//
// Auth follows the registry's own challenge: a 401 carries
// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` (token server,
// asked with basic credentials when we have them) or `Basic realm=...`.
// Tokens are kept per client (one repository) for its life.
//
// A registry is not trusted beyond what it serves, which is checked by
// digest. So the client bounds what it reads and where secrets go:
//
// - Credentials (registry-auth.ts) are for the registry being pulled from.
//   The Authorization header (basic or bearer) goes only to the registry's
//   own origin (scheme, host, port), including after redirects: a redirect
//   to another origin (blob storage) is followed without it, and a 401 from
//   another origin is not answered.
// - Basic credentials go to a token realm on another origin only over https.
//   A plain-http realm on another origin is asked anonymously; plain http to
//   the registry itself happens only when the caller marked it `insecure`.
// - Every response body is read through a meter: documents (manifests,
//   configs, tokens, error bodies) have a byte cap and the error names the URL
//   and the cap; a blob stops at one byte past its declared size.
// - Every request has a timeout for connect + response headers and for a
//   body that stops sending (not counting time the reader applies back
//   pressure). Sockets are never pooled: each one is closed when its
//   response ends or fails, so a failed pull leaves none open.
import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ImageError, type ImageErrorCode } from './errors.js';
import { digestOf, parseDigest, verifyBuffer } from './digest.js';
import { MANIFEST_ACCEPT } from './manifest.js';
import { credentialsFor, type RegistryCredentials, type ScopedCredentials } from './registry-auth.js';

export type { RegistryCredentials } from './registry-auth.js';

export interface RegistryOptions {
  /**
   * Talk plain http to the registry named in the source (only for
   * registries you trust on the path, e.g. 127.0.0.1). Credentials are then
   * sent to it over http too; never to any other plain-http origin.
   */
  insecure?: boolean;
  /**
   * Basic credentials, used for Basic challenges and to get bearer tokens,
   * for the registry being pulled from (or only for `credentials.registry`).
   * Default: `NODULARITY_DOCKER_USERNAME` / `NODULARITY_DOCKER_PASSWORD`,
   * else the auth files skopeo/podman/docker use, looked up by host.
   */
  credentials?: RegistryCredentials;
  /** Auth file (containers auth.json or Docker config.json) read first; default `$REGISTRY_AUTH_FILE`. */
  authFile?: string;
  /** Attempts for a request that fails transiently (network, timeout, 429, 5xx). Default 4. */
  attempts?: number;
  /** First backoff delay in ms, doubled each retry (with jitter). Default 250. */
  backoffMs?: number;
  /**
   * Timeout in ms for connecting and getting response headers, and for a
   * response body that stops sending. Default: `NODULARITY_REGISTRY_TIMEOUT`
   * (seconds), else 60 s.
   */
  timeoutMs?: number;
  /** Extra CA certificates (PEM) trusted for https registries and token servers, besides the system's. */
  tlsCa?: string | Buffer;
}

/** Byte caps on documents read whole. Blobs are bounded by their declared size instead. */
export const REGISTRY_LIMITS = {
  /** Manifests and indexes: distribution's own limit on push (and containers/image's). */
  manifest: 4 << 20,
  /** Image configs (their declared size must not be larger). */
  config: 16 << 20,
  /** Token server answers. */
  token: 1 << 20,
  /** Error bodies (only their first error is shown). */
  error: 64 << 10,
};

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_REDIRECTS = 10;

/** The timeout to use: option, else NODULARITY_REGISTRY_TIMEOUT (seconds), else 60 s. */
export function timeoutFrom(options: RegistryOptions, env: NodeJS.ProcessEnv = process.env): number {
  if (options.timeoutMs !== undefined) {
    if (!(options.timeoutMs > 0) || !Number.isFinite(options.timeoutMs))
      throw new ImageError(
        'BAD_SOURCE',
        `timeoutMs \`${options.timeoutMs}\`: must be a positive number of milliseconds`,
      );
    return options.timeoutMs;
  }
  const raw = env.NODULARITY_REGISTRY_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_TIMEOUT_MS;
  const s = Number(raw);
  if (!/^\s*\d*\.?\d+\s*$/.test(raw) || !(s > 0))
    throw new ImageError('BAD_SOURCE', `NODULARITY_REGISTRY_TIMEOUT \`${raw}\`: must be a positive number of seconds`);
  return s * 1000;
}

/** Parse a WWW-Authenticate header into scheme and parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\S+)\s*(.*)$/.exec(header);
  const scheme = (m?.[1] ?? '').toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m?.[2] ?? ''); p; p = re.exec(m?.[2] ?? ''))
    params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme, params };
}

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

class TransientError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** A URL for messages: no query string (presigned storage URLs carry signatures there). */
function shown(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function human(bytes: number): string {
  return bytes >= 1 << 20
    ? `${bytes / (1 << 20)} MiB`
    : bytes >= 1 << 10
      ? `${bytes / (1 << 10)} KiB`
      : `${bytes} bytes`;
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** A response, after redirects: where it came from, its status, headers, and body (unread). */
interface Exchange {
  url: URL;
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

/**
 * Pass-through between a response and its reader that fails the body when it
 * goes past `cap` bytes, or when no byte arrives for `idleMs` while the
 * reader is waiting for one (time the reader holds the stream paused by back
 * pressure does not count). Nothing flows before the first read, so bytes
 * are neither lost nor counted against the server before a reader is there;
 * an error before then is kept for that reader (see `finished`). Destroying
 * either end destroys the response, which closes its socket.
 */
class BodyMeter extends Transform {
  bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(
    private readonly res: http.IncomingMessage,
    private readonly cap: number,
    private readonly overCap: () => Error,
    private readonly idleMs: number,
    private readonly idle: () => Error,
    private readonly onBytes?: (n: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
    res.on('error', (err) => this.destroy(err));
    res.on('aborted', () => this.destroy(new TransientError('connection closed before the end of the body')));
    this.on('close', () => {
      clearTimeout(this.timer);
      res.destroy();
    });
    // A reader attached later (pipeline, for await) still gets the error from
    // the stream's state; this only keeps it from being an uncaught 'error'.
    this.on('error', () => undefined);
  }

  override _read(size: number): void {
    if (!this.started) {
      this.started = true;
      this.arm();
      this.res.pipe(this);
    }
    super._read(size);
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.destroyed) return;
      // Paused by our reader (pipe back pressure): not the server's fault.
      if (this.res.isPaused() || this.writableNeedDrain || this.readableLength >= this.readableHighWaterMark)
        this.arm();
      else this.destroy(this.idle());
    }, this.idleMs);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.cap) {
      cb(this.overCap());
      return;
    }
    this.arm();
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    clearTimeout(this.timer);
    cb();
  }
}

/** A manifest as fetched: bytes, the media type the server declared, its digest. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string | undefined;
  digest: string;
}

const NO_CREDENTIALS_HINT = 'set NODULARITY_DOCKER_USERNAME/PASSWORD or pass credentials';

/** Distribution API client for one repository on one registry. */
export class RegistryClient {
  readonly registry: string;
  readonly repository: string;
  /** Origin of the registry, e.g. `https://registry-1.docker.io`: the only one the Authorization header goes to. */
  readonly origin: string;
  private readonly base: string;
  private readonly options: RegistryOptions;
  private found: { creds: ScopedCredentials | undefined } | undefined;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly timeoutMs: number;
  private readonly agents: { http: http.Agent; https: https.Agent };
  private authorization: string | undefined;
  /** Why credentials were not sent to the token server, when they were not. */
  private withheld: string | undefined;

  constructor(registry: string, repository: string, options: RegistryOptions = {}) {
    this.registry = registry;
    this.repository = repository;
    const scheme = options.insecure ? 'http' : 'https';
    this.origin = new URL(`${scheme}://${registry}`).origin;
    this.base = `${this.origin}/v2/${repository}`;
    this.options = options;
    this.attempts = Math.max(1, options.attempts ?? 4);
    this.backoffMs = options.backoffMs ?? 250;
    this.timeoutMs = timeoutFrom(options);
    // No keep-alive: a socket lives for one response and is closed after it.
    this.agents = {
      http: new http.Agent({ keepAlive: false }),
      https: new https.Agent({
        keepAlive: false,
        ...(options.tlsCa ? { ca: [...tls.rootCertificates, options.tlsCa.toString()] } : {}),
      }),
    };
  }

  /** Credentials for this registry, looked up when a challenge first needs them (a bad auth file then fails only pulls that need one). */
  private get credentials(): ScopedCredentials | undefined {
    this.found ??= { creds: credentialsFor(this.registry, this.repository, this.options) };
    return this.found.creds;
  }

  private get where(): string {
    return `${this.registry}/${this.repository}`;
  }

  /** Close whatever sockets are still open (none once every body was read or destroyed). */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /**
   * One request and its redirects. `auth(url)` gives the Authorization
   * header for a URL (undefined: none); it is asked again for each hop, so
   * a redirect to another origin never carries the header.
   */
  private async exchange(
    start: URL,
    headers: Record<string, string>,
    auth: (url: URL) => string | undefined,
    what: string,
  ): Promise<Exchange> {
    let url = start;
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw new ImageError(
          'REGISTRY',
          `${what} on ${this.where}: refusing to follow a redirect to a ${url.protocol} URL`,
        );
      const h: Record<string, string> = { 'user-agent': 'nodularity', ...headers };
      const a = auth(url);
      if (a) h.authorization = a;
      const body = await this.send(url, h);
      const status = body.statusCode ?? 0;
      const location = body.headers.location;
      if (REDIRECT_STATUS.has(status) && location) {
        body.destroy();
        if (hop >= MAX_REDIRECTS)
          throw new ImageError(
            'REGISTRY',
            `${what} on ${this.where}: more than ${MAX_REDIRECTS} redirects (last to ${shown(url)})`,
          );
        try {
          url = new URL(location, url);
        } catch {
          throw new ImageError('REGISTRY', `${what} on ${this.where}: ${shown(url)} redirects to an invalid URL`);
        }
        continue;
      }
      return { url, status, headers: body.headers, body };
    }
  }

  /** Send one GET and wait for the response headers, within the timeout. */
  private send(url: URL, headers: Record<string, string>): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const https_ = url.protocol === 'https:';
      const late = (): TransientError =>
        new TransientError(`no response from ${shown(url)} within ${seconds(this.timeoutMs)}`);
      const req = (https_ ? https : http).request(url, {
        method: 'GET',
        headers,
        agent: https_ ? this.agents.https : this.agents.http,
        timeout: this.timeoutMs,
      });
      // Socket idle (connect) and an overall deadline for the headers (a
      // server can trickle header bytes to keep the socket busy).
      const deadline = setTimeout(() => req.destroy(late()), this.timeoutMs);
      req.on('timeout', () => req.destroy(late()));
      req.on('error', (err) => {
        clearTimeout(deadline);
        reject(err);
      });
      req.on('response', (res) => {
        clearTimeout(deadline);
        req.setTimeout(0);
        resolve(res);
      });
      req.end();
    });
  }

  /** A metered body: fails past `cap` bytes (with `overCap`) or when it stalls. */
  private meter(ex: Exchange, cap: number, overCap: () => Error, onBytes?: (n: number) => void): BodyMeter {
    return new BodyMeter(
      ex.body,
      cap,
      overCap,
      this.timeoutMs,
      () =>
        new TransientError(`${shown(ex.url)} sent nothing for ${seconds(this.timeoutMs)} in the middle of the body`),
      onBytes,
    );
  }

  /** Read a whole (small) body, at most `cap` bytes; `limit` names the cap in the error. */
  private async readCapped(
    ex: Exchange,
    cap: number,
    code: ImageErrorCode,
    what: string,
    limit: string,
    digest?: string,
  ): Promise<Buffer> {
    const overCap = (): ImageError =>
      new ImageError(
        code,
        `${what} on ${this.where}: the response from ${shown(ex.url)} is larger than ${limit}`,
        digest ? { digest } : {},
      );
    const announced = Number(ex.headers['content-length']);
    if (Number.isFinite(announced) && announced > cap) {
      ex.body.destroy();
      throw overCap();
    }
    const chunks: Buffer[] = [];
    for await (const c of this.meter(ex, cap, overCap)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** The Authorization header for a registry URL: only on the registry's own origin. */
  private registryAuth = (url: URL): string | undefined =>
    url.origin === this.origin ? this.authorization : undefined;

  /**
   * GET a path of the registry with auth and retries, and hand the response
   * to `consume` (which reads or returns its body). Transient failures
   * (network errors, timeouts, 429, 5xx, a body cut short) are retried with
   * exponential backoff; a 401 is answered once per attempt by getting the
   * credentials the challenge asks for.
   */
  async request<T>(
    url: string,
    headers: Record<string, string>,
    what: string,
    consume: (ex: Exchange) => Promise<T>,
  ): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) {
        const wait =
          lastError instanceof TransientError && lastError.retryAfterMs !== undefined
            ? Math.min(lastError.retryAfterMs, 10_000)
            : this.backoffMs * 2 ** (attempt - 1) * (0.75 + Math.random() / 2);
        await sleep(wait);
      }
      let ex: Exchange | undefined;
      try {
        ex = await this.exchange(new URL(url), headers, this.registryAuth, what);
        if (ex.status === 401) {
          const challenge = ex.headers['www-authenticate'];
          ex.body.destroy();
          if (ex.url.origin !== this.origin)
            throw new ImageError(
              'AUTH',
              `${what} on ${this.where}: ${ex.url.origin} (redirected to from the registry) asks for a login; credentials for ${this.registry} are never sent to another origin`,
            );
          if (!challenge)
            throw new ImageError(
              'AUTH',
              `${what} on ${this.where}: 401 Unauthorized without a WWW-Authenticate challenge`,
            );
          await this.answer(challenge, what);
          ex = await this.exchange(new URL(url), headers, this.registryAuth, what);
          if (ex.status === 401) {
            ex.body.destroy();
            const who = this.withheld
              ? `; ${this.withheld}`
              : this.credentials
                ? ` for user \`${this.credentials.username}\` (from ${this.credentials.from})`
                : `; ${NO_CREDENTIALS_HINT}`;
            throw new ImageError('AUTH', `${what} on ${this.where}: credentials refused (401)${who}`);
          }
        }
        if (TRANSIENT_STATUS.has(ex.status)) {
          const ra = ex.headers['retry-after'];
          ex.body.destroy();
          throw new TransientError(
            `${what} on ${this.where}: HTTP ${ex.status}`,
            ra && /^\d+$/.test(ra) ? Number(ra) * 1000 : undefined,
          );
        }
        if (ex.status === 404) {
          const detail = await this.errorDetail(ex);
          throw new ImageError('NOT_FOUND', `${what} on ${this.where}: not found (404${detail})`);
        }
        if (ex.status < 200 || ex.status > 299) {
          const detail = await this.errorDetail(ex);
          throw new ImageError(
            ex.status === 403 ? 'AUTH' : 'REGISTRY',
            `${what} on ${this.where}: HTTP ${ex.status}${detail}`,
          );
        }
        return await consume(ex);
      } catch (err) {
        ex?.body.destroy();
        if (err instanceof ImageError) throw err;
        const e = err as NodeJS.ErrnoException;
        // A plain-http registry answering our TLS hello: not worth retrying,
        // and the user needs to hear how to allow it.
        if (
          this.origin.startsWith('https:') &&
          /^(EPROTO|ERR_SSL_|ERR_TLS_)/.test(e.code ?? '') &&
          /ssl|tls|wrong version/i.test(e.message)
        )
          throw new ImageError(
            'REGISTRY',
            `${what} on ${this.where}: TLS handshake failed (${e.code}); if this registry speaks plain http, allow it with --no-https (or APPTAINER_NOHTTPS=1; insecure: true in the API)`,
          );
        lastError =
          err instanceof TransientError && err.message.startsWith(what)
            ? err
            : new TransientError(
                `${what} on ${this.where}: ${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ''}`,
                err instanceof TransientError ? err.retryAfterMs : undefined,
              );
      }
    }
    throw new ImageError(
      'REGISTRY',
      `${(lastError as Error).message}; gave up after ${this.attempts} attempt${this.attempts === 1 ? '' : 's'}`,
      { cause: lastError },
    );
  }

  /** Get what a WWW-Authenticate challenge asks for and keep it for later requests. */
  private async answer(challenge: string, what: string): Promise<void> {
    const { scheme, params } = parseChallenge(challenge);
    const basic = this.credentials
      ? 'Basic ' + Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')
      : undefined;
    if (scheme === 'basic') {
      // Only reached for a 401 from the registry's own origin (see request()).
      if (!basic)
        throw new ImageError('AUTH', `${what} on ${this.where}: the registry requires a login; ${NO_CREDENTIALS_HINT}`);
      this.authorization = basic;
      return;
    }
    if (scheme !== 'bearer')
      throw new ImageError('AUTH', `${what} on ${this.where}: unsupported auth scheme \`${scheme}\``);
    if (!params.realm) throw new ImageError('AUTH', `${what} on ${this.where}: bearer challenge without a realm`);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(params.realm);
    } catch {
      throw new ImageError('AUTH', `${what} on ${this.where}: bearer realm \`${params.realm}\` is not a URL`);
    }
    if (tokenUrl.protocol !== 'https:' && tokenUrl.protocol !== 'http:')
      throw new ImageError('AUTH', `${what} on ${this.where}: bearer realm \`${params.realm}\` is not an http(s) URL`);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', params.scope ?? `repository:${this.repository}:pull`);
    // Credentials go to the realm over https, or over http only when the
    // realm is the registry's own (insecure, by the caller's choice) origin.
    const realmOrigin = tokenUrl.origin;
    const mayAuth = basic !== undefined && (tokenUrl.protocol === 'https:' || realmOrigin === this.origin);
    this.withheld =
      basic && !mayAuth
        ? `credentials for ${this.registry} were not sent to token server ${realmOrigin}: plain http on another origin than the registry`
        : undefined;
    const tokenAuth = (url: URL): string | undefined => (mayAuth && url.origin === realmOrigin ? basic : undefined);
    const tokenWhat = `${what} on ${this.where}: token server ${realmOrigin}`;
    const token = await this.fetchToken(tokenUrl, tokenAuth, tokenWhat, what, basic !== undefined && mayAuth);
    this.authorization = `Bearer ${token}`;
  }

  private async fetchToken(
    tokenUrl: URL,
    auth: (url: URL) => string | undefined,
    tokenWhat: string,
    what: string,
    sentCredentials: boolean,
  ): Promise<string> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      if (attempt > 0) await sleep(this.backoffMs * 2 ** (attempt - 1));
      let ex: Exchange | undefined;
      try {
        ex = await this.exchange(tokenUrl, {}, auth, tokenWhat);
        if (TRANSIENT_STATUS.has(ex.status)) {
          ex.body.destroy();
          lastErr = new Error(`HTTP ${ex.status}`);
          continue;
        }
        if (ex.status < 200 || ex.status > 299) {
          const detail = await this.errorDetail(ex);
          const refused = ex.status === 401 || ex.status === 403;
          const who =
            refused && sentCredentials ? `credentials for user \`${this.credentials!.username}\` refused by ` : '';
          const hint = this.withheld ? `; ${this.withheld}` : sentCredentials ? '' : `; ${NO_CREDENTIALS_HINT}`;
          throw new ImageError(
            'AUTH',
            `${what} on ${this.where}: ${who}token server ${tokenUrl.origin}${who ? '' : ' refused'} (HTTP ${ex.status}${detail})${hint}`,
          );
        }
        const bytes = await this.readCapped(
          ex,
          REGISTRY_LIMITS.token,
          'AUTH',
          what,
          `the ${human(REGISTRY_LIMITS.token)} limit on token server answers`,
        );
        let body: { token?: unknown; access_token?: unknown };
        try {
          body = JSON.parse(bytes.toString('utf8')) as typeof body;
        } catch {
          throw new ImageError(
            'AUTH',
            `${what} on ${this.where}: token server ${tokenUrl.origin} answered with something that is not JSON`,
          );
        }
        const token = body?.token ?? body?.access_token;
        if (typeof token !== 'string' || !token)
          throw new ImageError(
            'AUTH',
            `${what} on ${this.where}: token server ${tokenUrl.origin} answered without a token`,
          );
        if (/[\r\n]/.test(token))
          throw new ImageError(
            'AUTH',
            `${what} on ${this.where}: token server ${tokenUrl.origin} answered with a token containing a line break`,
          );
        return token;
      } catch (err) {
        ex?.body.destroy();
        if (err instanceof ImageError) throw err;
        lastErr = err;
      }
    }
    throw new ImageError(
      'AUTH',
      `${what} on ${this.where}: token server ${tokenUrl.origin} unreachable (${(lastErr as Error)?.message}); gave up after ${this.attempts} attempt${this.attempts === 1 ? '' : 's'}`,
      { cause: lastErr },
    );
  }

  /**
   * Get a manifest (or index) by tag or digest, at most 4 MiB. A manifest
   * asked for by digest is verified against it; one asked for by tag gets
   * its digest computed (and checked against Docker-Content-Digest when sent).
   */
  async getManifest(reference: string): Promise<FetchedManifest> {
    const byDigest = reference.includes(':');
    const what = `manifest ${reference}`;
    const url = `${this.base}/manifests/${encodeURIComponent(reference).replace(/%3A/g, ':')}`;
    const { bytes, headers } = await this.request(url, { accept: MANIFEST_ACCEPT }, what, async (ex) => ({
      bytes: await this.readCapped(
        ex,
        REGISTRY_LIMITS.manifest,
        'BAD_MANIFEST',
        what,
        `the ${human(REGISTRY_LIMITS.manifest)} limit on manifests`,
      ),
      headers: ex.headers,
    }));
    const mediaType = headers['content-type']?.split(';')[0]?.trim() || undefined;
    let digest: string;
    if (byDigest) {
      verifyBuffer(bytes, reference, undefined, `manifest`);
      digest = reference;
    } else {
      const header = headers['docker-content-digest'];
      const h = typeof header === 'string' ? header : undefined;
      const algorithm = h ? parseDigest(h, 'Docker-Content-Digest').algorithm : 'sha256';
      digest = digestOf(bytes, algorithm);
      if (h && h !== digest) {
        throw new ImageError(
          'DIGEST_MISMATCH',
          `${what} on ${this.where}: Docker-Content-Digest says ${h}, content hashes to ${digest}`,
          { digest: h },
        );
      }
    }
    return { bytes, mediaType, digest };
  }

  /**
   * Open a blob for streaming. The caller verifies the digest while it
   * reads; with `size`, the stream fails with SIZE_MISMATCH as soon as the
   * body goes past it (and at once when Content-Length says it will).
   * Errors of the body other than ImageError are transient (worth a retry).
   * `onBytes` sees each chunk as it is read (for progress).
   */
  async openBlob(digest: string, what = 'blob', size?: number, onBytes?: (n: number) => void): Promise<Readable> {
    parseDigest(digest, what);
    const w = `${what} ${digest}`;
    return await this.request(`${this.base}/blobs/${digest}`, {}, w, async (ex) => {
      const overCap = (): ImageError =>
        new ImageError(
          'SIZE_MISMATCH',
          `${w} on ${this.where}: ${shown(ex.url)} sent more than the ${size} bytes the descriptor declares`,
          { digest },
        );
      const announced = Number(ex.headers['content-length']);
      if (
        size !== undefined &&
        ex.headers['content-length'] !== undefined &&
        Number.isFinite(announced) &&
        announced !== size
      ) {
        ex.body.destroy();
        throw new ImageError(
          'SIZE_MISMATCH',
          `${w} on ${this.where}: ${shown(ex.url)} announces ${announced} bytes, the descriptor declares ${size}`,
          { digest },
        );
      }
      return this.meter(ex, size ?? Number.MAX_SAFE_INTEGER, overCap, onBytes);
    });
  }

  /** Get a small blob (config) fully, verified; its declared size must be within the 16 MiB cap. */
  async getBlob(digest: string, size: number | undefined, what: string): Promise<Buffer> {
    parseDigest(digest, what);
    const w = `${what} ${digest}`;
    if (size !== undefined && size > REGISTRY_LIMITS.config)
      throw new ImageError(
        'BAD_MANIFEST',
        `${w} on ${this.where}: declared size ${size} is larger than the ${human(REGISTRY_LIMITS.config)} limit on ${what}s`,
        { digest },
      );
    const cap = size ?? REGISTRY_LIMITS.config;
    const bytes = await this.request(
      `${this.base}/blobs/${digest}`,
      {},
      w,
      async (ex) =>
        await this.readCapped(
          ex,
          cap,
          size === undefined ? 'BAD_MANIFEST' : 'SIZE_MISMATCH',
          w,
          size === undefined ? `the ${human(cap)} limit on ${what}s` : `the ${size} bytes its descriptor declares`,
          digest,
        ),
    );
    verifyBuffer(bytes, digest, size, what);
    return bytes;
  }

  /** Short detail from a registry's JSON error body, e.g. ` MANIFEST_UNKNOWN: manifest unknown`. */
  private async errorDetail(ex: Exchange): Promise<string> {
    let text: string;
    try {
      // Only the start of an error body matters; a longer one is cut, not refused.
      const chunks: Buffer[] = [];
      let got = 0;
      const meter = this.meter(ex, Number.MAX_SAFE_INTEGER, () => new Error('unreachable'));
      for await (const c of meter) {
        chunks.push(c as Buffer);
        got += (c as Buffer).length;
        if (got >= REGISTRY_LIMITS.error) {
          meter.destroy();
          break;
        }
      }
      text = Buffer.concat(chunks).subarray(0, REGISTRY_LIMITS.error).toString('utf8');
    } catch {
      return '';
    }
    try {
      const json = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      const e = json.errors?.[0];
      if (e)
        return `: ${String(e.code ?? '')}${e.message ? ': ' + String(e.message) : ''}`
          .replace(/[\x00-\x1f\x7f]/g, ' ')
          .slice(0, 300);
    } catch {
      /* not JSON */
    }
    return text ? `: ${text.slice(0, 200).replace(/[\x00-\x1f\x7f]/g, ' ')}` : '';
  }
}
