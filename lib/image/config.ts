// The image config (image-spec config.md) as a run needs it, and the lookup
// of a named User through the image's own /etc/passwd and /etc/group.
import { readFileInRoot as readInRoot, type InRootReadError } from '../plan/inroot.js';
import * as path from 'node:path';
import { MAX_JSON } from './image-file.js';
import { ImageError } from './errors.js';
import { DEFAULT_PATH } from '../oci/defaults.js';

/** What a run takes from an image config. Field names follow the image spec, camelCased. */
export interface ImageConfig {
  /** `KEY=value` entries, in image order. */
  env: string[];
  entrypoint: string[];
  cmd: string[];
  /** Absolute working directory, or '' when the image sets none. */
  workingDir: string;
  /** The raw `User` string: `name`, `uid`, `name:group`, `uid:gid`, or ''. */
  user: string;
  labels: Record<string, string>;
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  stopSignal?: string;
  exposedPorts: string[];
  volumes: string[];
  /** Layer diff_ids, for checking layers after decompression. */
  diffIds: string[];
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw new ImageError('BAD_MANIFEST', `image config: ${what} must be an array of strings`);
  return v as string[];
}

/** Parse an image config blob. */
export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new ImageError('BAD_MANIFEST', `image config is not JSON (${(err as Error).message})`, { cause: err });
  }
  const c = (json.config ?? {}) as Record<string, unknown>;
  const labels: Record<string, string> = {};
  if (c.Labels && typeof c.Labels === 'object')
    for (const [k, v] of Object.entries(c.Labels as object)) labels[k] = String(v);
  const env = strings(c.Env, 'config.Env');
  for (const e of env)
    if (!e.includes('=')) throw new ImageError('BAD_MANIFEST', `image config: Env entry \`${e}\` has no '='`);
  const rootfs = (json.rootfs ?? {}) as { diff_ids?: unknown };
  const out: ImageConfig = {
    env,
    entrypoint: strings(c.Entrypoint, 'config.Entrypoint'),
    cmd: strings(c.Cmd, 'config.Cmd'),
    workingDir: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
    user: typeof c.User === 'string' ? c.User : '',
    labels,
    architecture: typeof json.architecture === 'string' ? json.architecture : '',
    os: typeof json.os === 'string' ? json.os : '',
    exposedPorts: c.ExposedPorts && typeof c.ExposedPorts === 'object' ? Object.keys(c.ExposedPorts) : [],
    volumes: c.Volumes && typeof c.Volumes === 'object' ? Object.keys(c.Volumes) : [],
    diffIds: strings(rootfs.diff_ids, 'rootfs.diff_ids'),
  };
  if (typeof json.variant === 'string') out.variant = json.variant;
  if (typeof json.created === 'string') out.created = json.created;
  if (typeof c.StopSignal === 'string') out.stopSignal = c.StopSignal;
  return out;
}

/**
 * Read a file of the image as the container would see it: openat2 with
 * RESOLVE_IN_ROOT from the rootfs (lib/plan/inroot.ts), so an image cannot
 * make us read a host file; regular files only, at most 16 MiB (a FIFO as
 * /etc/passwd would hang, /dev/zero never end). ENOENT stays ENOENT.
 */
export async function readFileInRoot(rootfs: string, file: string): Promise<Buffer> {
  try {
    return readInRoot(path.resolve(rootfs), file, MAX_JSON);
  } catch (e) {
    const code = (e as InRootReadError).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw Object.assign(new Error(`${file} in the image: not found`), { code });
    throw new ImageError('BAD_MANIFEST', (e as Error).message);
  }
}

/** A resolved process user, in OCI runtime-spec field names. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Home directory from passwd, when the user was found there. */
  home?: string;
}

async function readTable(rootfs: string, file: string): Promise<string[][]> {
  try {
    return (await readFileInRoot(rootfs, file))
      .toString('utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
}

const NUMERIC = /^\d+$/;

/**
 * Resolve an image `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) to
 * numeric ids through the image's /etc/passwd and /etc/group, as docker and
 * runc do. A number not in passwd is allowed (gid then defaults to 0 unless
 * given); a name not in passwd is an error naming the file.
 */
export async function resolveImageUser(rootfs: string, user: string): Promise<ResolvedUser> {
  if (!user) user = '0';
  const [u, g] = user.split(':', 2) as [string, string | undefined];
  const passwd = await readTable(rootfs, '/etc/passwd');
  const entry = NUMERIC.test(u) ? passwd.find((f) => f[2] === u) : passwd.find((f) => f[0] === u);
  if (!entry && !NUMERIC.test(u))
    throw new ImageError('BAD_MANIFEST', `image User \`${user}\`: no user \`${u}\` in the image's /etc/passwd`);
  const uid = entry ? Number(entry[2]) : Number(u);
  let gid = entry ? Number(entry[3]) : 0;
  const groups = await readTable(rootfs, '/etc/group');
  if (g !== undefined && g !== '') {
    if (NUMERIC.test(g)) gid = Number(g);
    else {
      const grp = groups.find((f) => f[0] === g);
      if (!grp)
        throw new ImageError('BAD_MANIFEST', `image User \`${user}\`: no group \`${g}\` in the image's /etc/group`);
      gid = Number(grp[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid))
    throw new ImageError('BAD_MANIFEST', `image User \`${user}\`: bad id in /etc/passwd or /etc/group`);
  // Supplementary groups only come from /etc/group when the user was named
  // and no group was forced (docker's rule).
  const additionalGids: number[] = [];
  if (entry && g === undefined) {
    for (const f of groups) {
      const members = (f[3] ?? '').split(',');
      const id = Number(f[2]);
      if (members.includes(entry[0]!) && Number.isSafeInteger(id) && id !== gid && !additionalGids.includes(id))
        additionalGids.push(id);
    }
  }
  const out: ResolvedUser = { uid, gid, additionalGids };
  if (entry?.[5]) out.home = entry[5];
  return out;
}

/** OCI runtime-spec `process` defaults built from an image config. */
export interface ImageProcessDefaults {
  args: string[];
  env: string[];
  cwd: string;
  user: ResolvedUser;
}

/**
 * The `process` fields a run gets from the image: args = Entrypoint + Cmd
 * (or Entrypoint + `args` when given), env with a default PATH, cwd = WorkingDir
 * or `/`, and the User resolved through the image's own files.
 */
export async function imageProcessDefaults(
  config: ImageConfig,
  rootfs: string,
  args?: string[],
): Promise<ImageProcessDefaults> {
  const env = [...config.env];
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(`PATH=${DEFAULT_PATH}`);
  return {
    args: [...config.entrypoint, ...(args && args.length ? args : config.cmd)],
    env,
    cwd: config.workingDir || '/',
    user: await resolveImageUser(rootfs, config.user),
  };
}
