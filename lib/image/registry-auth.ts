// Which credentials a pull may use, and for which host.
//
// Credentials belong to one registry host. They come, first match wins, from:
//   1. the `credentials` option (for the registry being pulled from, or only
//      for `credentials.registry` when that is set);
//   2. NODULARITY_DOCKER_USERNAME / NODULARITY_DOCKER_PASSWORD, which (as
//      Apptainer's APPTAINER_DOCKER_USERNAME/PASSWORD) mean "the registry
//      this command pulls from";
//   3. the auth files skopeo and podman read, looked up by host (and
//      repository prefix): the `authFile` option or $REGISTRY_AUTH_FILE, else
//      ${XDG_RUNTIME_DIR}/containers/auth.json; then
//      ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json; then
//      $DOCKER_CONFIG/config.json or ~/.docker/config.json.
// Where they may be sent (only the registry's own origin and the token realm
// its challenge names, under conditions) is decided in registry.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageError } from './errors.js';

/** Credentials for a registry. */
export interface RegistryCredentials {
  username: string;
  password: string;
  /**
   * Registry host (`HOST[:PORT]`) these are for. When set, they are used only
   * when pulling from that host; when unset, for the registry of the source
   * being pulled.
   */
  registry?: string;
}

/** Credentials chosen for one registry, with where they came from (for messages). */
export interface ScopedCredentials {
  username: string;
  password: string;
  /** e.g. `the credentials option`, `auth file /root/.docker/config.json`. */
  from: string;
}

const DOCKER_HUB_NAMES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];
const AUTH_FILE_CAP = 1 << 20;

/** Hosts that name the same registry as `registry` in auth files (Docker Hub has three names). */
function hostAliases(registry: string): string[] {
  const host = registry.toLowerCase();
  return DOCKER_HUB_NAMES.includes(host) ? DOCKER_HUB_NAMES : [host];
}

/** A key of an auth file without a legacy `https://HOST/v1/` dressing. */
function normalizeKey(key: string): string {
  const m = /^https?:\/\/([^/]+)/i.exec(key);
  return (m ? m[1]! : key).toLowerCase();
}

/** The auth files to look in, in order (skopeo/podman order, then Docker's). */
export function authFilePaths(options: { authFile?: string }, env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || os.homedir();
  const out: string[] = [];
  if (options.authFile) out.push(path.resolve(options.authFile));
  else if (env.REGISTRY_AUTH_FILE) out.push(path.resolve(env.REGISTRY_AUTH_FILE));
  else if (env.XDG_RUNTIME_DIR) out.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  else out.push(path.join('/run/containers', String(process.getuid?.() ?? 0), 'auth.json'));
  out.push(path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'containers', 'auth.json'));
  out.push(env.DOCKER_CONFIG ? path.join(env.DOCKER_CONFIG, 'config.json') : path.join(home, '.docker', 'config.json'));
  return [...new Set(out)];
}

/** Read an auth file; undefined when it does not exist. */
function readAuthFile(
  file: string,
): { auths?: Record<string, { auth?: string; username?: string; password?: string }> } | undefined {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new ImageError('AUTH', `auth file ${file}: not a regular file`);
    if (st.size > AUTH_FILE_CAP)
      throw new ImageError(
        'AUTH',
        `auth file ${file}: ${st.size} bytes is more than the ${AUTH_FILE_CAP >> 20} MiB an auth file may have`,
      );
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ImageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ImageError('AUTH', `auth file ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const json = JSON.parse(text) as unknown;
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('not a JSON object');
    return json as ReturnType<typeof readAuthFile>;
  } catch (err) {
    throw new ImageError('AUTH', `auth file ${file}: invalid JSON (${(err as Error).message})`, { cause: err });
  }
}

/**
 * Credentials for `registry`/`repository` from the auth files: the most
 * specific key wins (`HOST/NS/REPO`, then `HOST/NS`, then `HOST`), first file
 * first. Entries for other hosts are never looked at.
 */
export function credentialsFromAuthFiles(
  registry: string,
  repository: string,
  files: string[],
): ScopedCredentials | undefined {
  const hosts = hostAliases(registry);
  const parts = repository.split('/');
  const wanted: string[] = [];
  for (let n = parts.length; n >= 1; n--) for (const h of hosts) wanted.push(`${h}/${parts.slice(0, n).join('/')}`);
  // For Docker Hub, `docker.io/busybox` means `library/busybox` to podman.
  if (hosts === DOCKER_HUB_NAMES && parts[0] === 'library')
    for (const h of hosts) wanted.push(`${h}/${parts.slice(1).join('/')}`);
  wanted.push(...hosts);
  for (const file of files) {
    const json = readAuthFile(file);
    if (!json?.auths || typeof json.auths !== 'object') continue;
    const byKey = new Map<string, { auth?: string; username?: string; password?: string }>();
    for (const [k, v] of Object.entries(json.auths)) {
      const key = normalizeKey(k);
      if (!byKey.has(key) && v && typeof v === 'object') byKey.set(key, v);
    }
    for (const key of wanted) {
      const entry = byKey.get(key);
      if (!entry) continue;
      if (typeof entry.auth === 'string' && entry.auth !== '') {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon <= 0)
          throw new ImageError('AUTH', `auth file ${file}: the \`auth\` of \`${key}\` is not base64 of USER:PASSWORD`);
        return {
          username: decoded.slice(0, colon),
          password: decoded.slice(colon + 1),
          from: `auth file ${file} (${key})`,
        };
      }
      if (typeof entry.username === 'string' && typeof entry.password === 'string') {
        return { username: entry.username, password: entry.password, from: `auth file ${file} (${key})` };
      }
      // An entry with only an identity token or a credential helper: not ours to use.
    }
  }
  return undefined;
}

/** Whether two registry names are the same host (Docker Hub's names are one). */
export function sameRegistry(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  return x === y || (DOCKER_HUB_NAMES.includes(x) && DOCKER_HUB_NAMES.includes(y));
}

/**
 * The credentials a pull from `registry`/`repository` uses, or undefined.
 * Never credentials given for another host.
 */
export function credentialsFor(
  registry: string,
  repository: string,
  options: { credentials?: RegistryCredentials; authFile?: string },
  env: NodeJS.ProcessEnv = process.env,
): ScopedCredentials | undefined {
  const c = options.credentials;
  if (c && (c.registry === undefined || sameRegistry(c.registry, registry)))
    return { username: c.username, password: c.password, from: 'the credentials option' };
  const username = env.NODULARITY_DOCKER_USERNAME;
  const password = env.NODULARITY_DOCKER_PASSWORD;
  if (username !== undefined && password !== undefined)
    return { username, password, from: 'NODULARITY_DOCKER_USERNAME/PASSWORD' };
  if (username !== undefined || password !== undefined) {
    throw new ImageError('AUTH', 'NODULARITY_DOCKER_USERNAME and NODULARITY_DOCKER_PASSWORD must be set together');
  }
  return credentialsFromAuthFiles(registry, repository, authFilePaths(options, env));
}
