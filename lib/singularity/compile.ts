// Apptainer-style options -> one OCI runtime spec plus spawn options, the
// same model an OCI bundle is read into (docs/architecture.md). What
// Apptainer does by default is done here by default: home, /tmp, /var/tmp
// and the working directory bound from the host, /etc/passwd and /etc/group
// carrying the caller, /etc/resolv.conf and /etc/hosts from the host, a
// read-only root, mount points missing in the image made in an overlay.
import {
  closeSync,
  constants as fsc,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { userInfo } from 'node:os';
import { isAbsolute, join, posix, resolve } from 'node:path';
import type { SpawnOptions } from '../container.js';
import { SpecError } from '../errors.js';
import type { PullOptions } from '../image/index.js';
import { createSpec } from '../oci/defaults.js';
import { resolveInRoot } from '../plan/resolve.js';
import { checkOverlayDir } from '../plan/root.js';
import type { SecurityOptions } from '../seccomp/types.js';
import { CAPS } from '../plan/flags.js';
import type { LinuxIDMapping, Mount, Spec } from '../oci/spec.js';
import { normalizeBinds, parseMountSpec, type BindSpec } from './binds.js';
import { CONTAINER_PATH, envOption, hostLayer, prefixedWarnings, readEnvFile, type EnvMap } from './environment.js';
import { CONTAINER_LIBS, gpuBinds } from './gpu.js';
import { resolveRunImage, type ResolvedRunImage } from './image.js';
import { groupFor, hostUser, makeSessionFiles, passwdFor, type SessionFiles } from './session-files.js';

export interface ExecOptions extends Omit<SpawnOptions, 'rootOverlay' | 'overlayDir' | 'bundleDir' | 'init'> {
  /** `src[:dst[:ro|rw]]` strings (comma lists allowed) or objects, as `-B`. */
  binds?: (string | BindSpec)[];
  /** `type=bind,source=...,destination=...[,ro]` strings, as `--mount`. */
  mounts?: string[];
  /** Fresh /tmp, /var/tmp and home; no host cwd. */
  contain?: boolean;
  /** contain + cleanenv (pid and ipc are always new here). */
  containall?: boolean;
  /** Do not pass the host environment (but for TERM and the proxies). */
  cleanenv?: boolean;
  /** Variables set inside, winning over everything else. */
  env?: Record<string, string> | string[];
  /** A file of KEY=VALUE lines. */
  envFile?: string;
  /** Home: `src[:dst]` (a host dir, and where it appears). */
  home?: string;
  noHome?: boolean;
  /** Working directory inside. */
  pwd?: string;
  /** Host directory backing /tmp, /var/tmp (and home with contain) and scratch dirs. */
  workdir?: string;
  /** Container paths that get a fresh scratch directory. */
  scratch?: string[];
  network?: 'host' | 'none';
  /** Accepted for compatibility: the PID, IPC and user namespaces are always new. */
  pid?: boolean;
  ipc?: boolean;
  userns?: boolean;
  hostname?: string;
  /**
   * uid 0 inside, mapped to the caller outside; ids 1..N mapped to the
   * caller's /etc/subuid and /etc/subgid ranges when it has them (through
   * newuidmap/newgidmap), else only uid 0 (Apptainer's root-mapped
   * namespace). Keeps the namespace's full capability set.
   */
  fakeroot?: boolean;
  /** A writable root: the image under an overlay on a tmpfs. */
  writableTmpfs?: boolean;
  /** Size of that tmpfs: MiB as a number or digits, or a tmpfs size (`512m`, `2g`); default 64 MiB as Apptainer. */
  /**
   * A persistent overlay directory, as `--overlay DIR[:ro]`: what the payload
   * writes stays in DIR/upper (DIR/work beside it; both made when missing);
   * `:ro` shows DIR/upper above the image, read-only. Overlay images are not
   * supported.
   */
  overlay?: string | string[];
  writableTmpfsSize?: number | string;
  /**
   * Leave out default mounts, as Apptainer's --no-mount: home, tmp, cwd,
   * hostfs (never mounted here), bind-paths (/etc/hosts, /etc/localtime),
   * sys, or one of /etc/hosts, /etc/localtime, /etc/resolv.conf.
   */
  noMount?: string[];
  /** Sets APPTAINER_NO_EVAL=1 inside; nodularity never shell-evaluates the prefixed variables or arguments anyway. */
  noEval?: boolean;
  /** Capabilities to add (root or fakeroot): names, `CAP_X` or `x`, or `all`; comma lists allowed. */
  addCaps?: string | string[];
  /** Capabilities to drop (root or fakeroot). */
  dropCaps?: string | string[];
  /** As root: keep the full capability set of the namespace. */
  keepPrivs?: boolean;
  /** Bind the host's NVIDIA driver libraries, programs and devices. */
  nv?: boolean;
  /** Bind the host's ROCm libraries, programs and devices. */
  rocm?: boolean;
  /** Run an init as PID 1 (default true). */
  init?: boolean;
  /** Host environment to start from (default process.env). */
  hostEnv?: NodeJS.ProcessEnv;
  /** Host working directory (default process.cwd()). */
  hostCwd?: string;
  /**
   * Called with each warning and INFO-level remark (what Apptainer says on
   * stderr) once the launch is compiled, before the payload starts; they are
   * also on the started container's `warnings` and `infos`.
   */
  onNotice?: (level: 'WARNING' | 'INFO', message: string) => void;
  /** Bound on the time the image's environment scripts may take, ms (default 10000). */
  envScriptTimeout?: number;
  /** How docker://, oci: and docker-archive: images are fetched. */
  pull?: PullOptions;
  /**
   * Give the payload a terminal of its own (a pty in the container, as
   * `process.terminal`): the Container's `terminal` stream, sized rows x
   * columns. The CLI does this when its stdin and stdout are terminals.
   */
  terminal?: boolean | { rows: number; columns: number };
  /** seccomp: 'default' when not given (docs/seccomp.md), 'docker-default', 'unconfined', a profile file or object. */
  security?: SecurityOptions;
}

export type ActionMode = 'exec' | 'run' | 'shell' | 'test';

/** A compiled launch: run {@link finishEnvironment} then spawn `spec` with `spawnOptions`. */
export interface CompiledLaunch {
  image: ResolvedRunImage;
  spec: Spec;
  spawnOptions: SpawnOptions;
  /** Environment before the image's scripts (layers 1-3 of environment.ts). */
  baseEnv: EnvMap;
  /** Image env scripts to evaluate, container paths in order. */
  envScripts: string[];
  envFile: EnvMap;
  envOption: EnvMap;
  hostEnv: NodeJS.ProcessEnv;
  envScriptTimeout: number;
  /** Null for `test` on an image without a test script. */
  runnable: boolean;
  /** Things not as asked that did not stop the launch. */
  warnings: string[];
  /** What Apptainer says as INFO (a fallback taken, a default chosen). */
  infos: string[];
  /** Release the session files and held bind sources. */
  dispose(): void;
}

const SYSTEM_DIRS = [
  '/',
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/sys',
  '/usr',
  '/var',
];
function isSystemDir(p: string): boolean {
  return (
    SYSTEM_DIRS.includes(p) ||
    ['/proc/', '/sys/', '/dev/', '/etc/', '/usr/', '/boot/', '/run/'].some((d) => p.startsWith(d))
  );
}

function bind(source: string, destination: string, readonly = false): Mount {
  return { destination, source, type: 'bind', options: ['rbind', 'rslave', readonly ? 'ro' : 'rw'] };
}
function tmpfs(destination: string, mode: string): Mount {
  return { destination, source: 'tmpfs', type: 'tmpfs', options: ['nosuid', 'nodev', `mode=${mode}`] };
}

function checkAbsolute(option: string, p: string | undefined): void {
  if (p !== undefined && !isAbsolute(p)) throw new SpecError(option, `${JSON.stringify(p)} must be an absolute path`);
}

function existingDir(option: string, p: string): string {
  let st;
  try {
    st = statSync(p);
  } catch (e) {
    throw new SpecError(option, `${p} does not exist (${(e as NodeJS.ErrnoException).code})`);
  }
  if (!st.isDirectory()) throw new SpecError(option, `${p} is not a directory`);
  return p;
}

/** A file of the image, looked at on the host (only for "is it there"). */
/**
 * Whether the image has `p` as a file or directory, resolved inside the image
 * (its symlinks restart at the image root, never at the host's).
 */
function imageHas(rootfs: string, p: string, kind: 'file' | 'dir'): boolean {
  return imagePath(rootfs, p, kind) !== undefined;
}

/** Host path of `p` resolved inside the image, when it is a `kind`. */
function imagePath(rootfs: string, p: string, kind: 'file' | 'dir'): string | undefined {
  try {
    const r = resolveInRoot(rootfs, p);
    if (r.missing.length || !r.stat) return undefined;
    return (kind === 'file' ? r.stat.isFile() : r.stat.isDirectory()) ? r.hostPath : undefined;
  } catch {
    return undefined;
  }
}

const euidOf = (): number => process.geteuid!();

/** Whether `p` is an executable regular file of the image (resolved inside it). */
function imageExecutable(rootfs: string, p: string): boolean {
  const h = imagePath(rootfs, p, 'file');
  if (!h) return false;
  try {
    return (statSync(h).mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Whether a container path is a directory once the mounts are in place (the innermost mount covering it decides). */
function dirInContainer(rootfs: string, mounts: Mount[], p: string): boolean {
  for (let i = mounts.length - 1; i >= 0; i--) {
    const m = mounts[i];
    const d = posix.normalize(m.destination);
    const rest = p === d ? '' : p.startsWith(d === '/' ? '/' : d + '/') ? p.slice(d.length) : undefined;
    if (rest === undefined) continue;
    if (m.type !== 'bind' && !m.options?.includes('bind') && !m.options?.includes('rbind')) return rest === '';
    try {
      const r = resolveInRoot(m.source!, rest || '/');
      return r.missing.length === 0 && !!r.stat?.isDirectory();
    } catch {
      return false;
    }
  }
  return imageHas(rootfs, p, 'dir');
}

/** --no-mount values: Apptainer's names (proc, dev and devpts are always the container's own here). */
const NO_MOUNT = new Set([
  'home',
  'tmp',
  'cwd',
  'hostfs',
  'bind-paths',
  'sys',
  '/etc/hosts',
  '/etc/localtime',
  '/etc/resolv.conf',
]);
/** Apptainer's `bind path` defaults, what --no-mount bind-paths leaves out. */
const BIND_PATHS = ['/etc/localtime', '/etc/hosts'];

function parseNoMount(values: string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const v of (values ?? [])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (['proc', 'dev', 'devpts'].includes(v))
      throw new SpecError(
        '--no-mount',
        `${v}: not supported: every container gets its own /proc, /dev and /dev/pts here (a host one would show the host's processes or devices)`,
      );
    if (!NO_MOUNT.has(v))
      throw new SpecError(
        '--no-mount',
        `${JSON.stringify(v)}: expected one of ${[...NO_MOUNT, 'proc', 'dev', 'devpts'].join(', ')}`,
      );
    out.add(v);
  }
  return out;
}

/** The writable tmpfs size: MiB (Apptainer's `sessiondir max size` unit) or a tmpfs size. */
function tmpfsSize(v: number | string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const s = String(v).trim();
  if (/^[1-9]\d*$/.test(s)) return `${s}m`;
  if (/^[1-9]\d*[kmg]$/i.test(s)) return s.toLowerCase();
  throw new SpecError(
    '--writable-tmpfs-size',
    `${JSON.stringify(String(v))}: expected a size in MiB (64) or with a unit (512m, 2g)`,
  );
}

/**
 * The caller's subordinate range from /etc/subuid or /etc/subgid (by name or
 * uid, the first entry, as newuidmap reads them). NODULARITY_SUBUID_FILE and
 * NODULARITY_SUBGID_FILE name other files (tests; newuidmap still checks
 * the real ones for an unprivileged caller).
 */
function subordinateRange(
  file: string,
  uid: number,
  name: string | undefined,
): { start: number; count: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if ((who === name || who === String(uid)) && /^\d+$/.test(start ?? '') && /^[1-9]\d*$/.test(count ?? ''))
      return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/** uid/gid maps for --fakeroot: 0 -> the caller, 1..N -> the caller's ranges when both exist. */
function fakerootMappings(
  euid: number,
  egid: number,
  env: NodeJS.ProcessEnv,
  infos: string[],
): { uid: LinuxIDMapping[]; gid: LinuxIDMapping[] } {
  let name: string | undefined;
  try {
    name = userInfo().username;
  } catch {
    /* no passwd entry */
  }
  const subuid = env.NODULARITY_SUBUID_FILE || '/etc/subuid';
  const subgid = env.NODULARITY_SUBGID_FILE || '/etc/subgid';
  const ur = subordinateRange(subuid, euid, name),
    gr = subordinateRange(subgid, euid, name);
  const uid: LinuxIDMapping[] = [{ containerID: 0, hostID: euid, size: 1 }];
  const gid: LinuxIDMapping[] = [{ containerID: 0, hostID: egid, size: 1 }];
  if (ur && gr) {
    uid.push({ containerID: 1, hostID: ur.start, size: ur.count });
    gid.push({ containerID: 1, hostID: gr.start, size: gr.count });
  } else {
    infos.push(`User not listed in ${ur ? subgid : subuid}, using a root-mapped namespace (only uid 0 exists inside)`);
  }
  return { uid, gid };
}

let capLastCache: number | undefined;
function allCaps(): string[] {
  if (capLastCache === undefined) {
    try {
      capLastCache = parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'), 10);
    } catch {
      capLastCache = 40;
    }
  }
  return Object.keys(CAPS).filter((c) => CAPS[c]! <= capLastCache!);
}

/** `CAP_X`, `cap_x`, `x` or `all`, comma lists, into CAP_ names; an unknown one names the option. */
function capList(v: string | string[] | undefined, option: string): string[] {
  const out: string[] = [];
  for (const raw of (Array.isArray(v) ? v : v === undefined ? [] : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (raw.toLowerCase() === 'all') {
      out.push(...allCaps());
      continue;
    }
    const n = raw.toUpperCase().startsWith('CAP_') ? raw.toUpperCase() : `CAP_${raw.toUpperCase()}`;
    if (!(n in CAPS)) throw new SpecError(option, `unknown capability ${JSON.stringify(raw)}`);
    out.push(n);
  }
  return out;
}

/** Compile options for one action into a spec; nothing is launched yet. */
export async function compileLaunch(
  imageRef: string,
  argv: string[],
  options: ExecOptions,
  mode: ActionMode,
): Promise<CompiledLaunch> {
  const o = options;
  for (const k of ['pwd', 'workdir'] as const) checkAbsolute(`--${k}`, o[k]);
  if (o.network !== undefined && o.network !== 'host' && o.network !== 'none')
    throw new SpecError(
      '--network',
      `must be host or none, not ${JSON.stringify(o.network)} (no bridge networking without privileges)`,
    );
  if (mode === 'exec' && (!Array.isArray(argv) || argv.length === 0))
    throw new SpecError('command', 'exec needs a command to run');
  const scratchDirs = o.scratch ?? [];
  scratchDirs.forEach((s, i) => checkAbsolute(`--scratch[${i}]`, s));
  const hostEnv = o.hostEnv ?? process.env;
  const hostCwd = o.hostCwd ?? process.cwd();
  const warnings: string[] = prefixedWarnings(hostEnv);
  const infos: string[] = [];
  const noMount = parseNoMount(o.noMount);
  const overlaySize = tmpfsSize(o.writableTmpfsSize);
  const overlayDir = parseOverlay(o.overlay, hostCwd);
  const addCaps = capList(o.addCaps, '--add-caps');
  const dropCaps = capList(o.dropCaps, '--drop-caps');
  if (!o.fakeroot && euidOf() !== 0) {
    if (addCaps.length)
      throw new SpecError(
        '--add-caps',
        'only root or --fakeroot can add capabilities (there is no capability database to authorize other users)',
      );
    if (o.keepPrivs) throw new SpecError('--keep-privs', '--keep-privs requires root privileges');
  }
  const contain = !!(o.contain || o.containall);
  const cleanenv = !!(o.cleanenv || o.containall);
  const euid = process.geteuid!();
  const egid = process.getegid!();
  const uid = o.fakeroot ? 0 : euid;
  const gid = o.fakeroot ? 0 : egid;
  const workdir = o.workdir === undefined ? undefined : existingDir('--workdir', o.workdir);
  // Relative bind sources are the host working directory's, as in Apptainer.
  const userBinds = [
    ...normalizeBinds(o.binds, hostCwd),
    ...(o.mounts ?? []).map((m, i) => parseMountSpec(m, `--mount[${i}]`)),
  ];
  const envFile = o.envFile === undefined ? new Map() : readEnvFile(o.envFile);
  const envOpt = envOption(o.env);
  // Bind sources must exist: say so by option, and for /cvmfs say why it may not.
  for (const b of userBinds) {
    try {
      statSync(b.source);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const cvmfs = b.source.startsWith('/cvmfs/')
        ? ` (is the repository ${b.source.split('/')[2]} spelled right, and is CernVM-FS mounted or automounted on this host?)`
        : '';
      throw new SpecError('--bind', `bind source ${b.source} does not exist (${code})${cvmfs}`);
    }
  }

  const image = await resolveRunImage(imageRef, o.pull);
  const rootfs = image.rootfs;

  // Home.
  let hostHome = hostEnv.HOME;
  if (!hostHome)
    try {
      hostHome = userInfo().homedir;
    } catch {
      hostHome = '/';
    }
  let homeSrc: string | undefined, homeDst: string;
  if (o.home !== undefined) {
    const [src, dst] = o.home.split(':');
    checkAbsolute('--home', src);
    if (dst !== undefined) checkAbsolute('--home', dst);
    homeSrc = existingDir('--home', src);
    homeDst = dst || src;
  } else {
    homeDst = o.fakeroot ? '/root' : hostHome;
    if (!o.noHome && !contain && existsSync(hostHome)) homeSrc = hostHome;
  }
  const noHome = o.noHome || noMount.has('home');
  if (noHome) homeSrc = undefined;

  const mounts: Mount[] = [];
  const covered = new Set<string>(); // container paths bound from the same host path
  const session = new Map<string, string>();

  // /tmp and /var/tmp (scratch dirs take their place when named).
  const sub = (name: string) => {
    const p = join(workdir!, name);
    mkdirSync(p, { recursive: true, mode: 0o700 });
    return p;
  };
  for (const [dir, name] of [
    ['/tmp', 'tmp'],
    ['/var/tmp', 'var_tmp'],
  ] as const) {
    if (scratchDirs.includes(dir) || noMount.has('tmp')) continue;
    if (!contain) {
      mounts.push(bind(dir, dir));
      covered.add(dir);
    } else mounts.push(workdir ? bind(sub(name), dir) : tmpfs(dir, '1777'));
  }
  // Scratch dirs before home and binds, which may sit inside them (HTCondor
  // gives -S /tmp with --home and -B inside the job's scratch dir).
  for (const s of scratchDirs)
    mounts.push(workdir ? bind(sub(join('scratch', s.replace(/\//g, '_'))), s) : tmpfs(s, '1777'));
  // Home after /tmp: a home under /tmp stays visible.
  if (homeSrc) {
    mounts.push(bind(homeSrc, homeDst));
    if (homeSrc === homeDst) covered.add(homeDst);
  } else if (contain && !noHome) {
    mounts.push(workdir ? bind(sub('home'), homeDst) : tmpfs(homeDst, '0700'));
  }
  for (const b of userBinds) {
    mounts.push(bind(b.source, b.destination ?? b.source, b.readonly));
    if ((b.destination ?? b.source) === b.source) covered.add(b.source);
  }

  // Working directory.
  let cwd: string;
  if (o.pwd !== undefined) {
    // As Apptainer: a --pwd that is not a directory in the container is a
    // warning, and the payload starts in the home directory instead; it is
    // never created (in the image, an overlay, or a host directory).
    if (dirInContainer(rootfs, mounts, o.pwd)) cwd = o.pwd;
    else {
      cwd = noHome ? '/' : homeDst;
      warnings.push(`--pwd ${o.pwd} is not a directory in the container: starting in ${cwd}`);
    }
  } else if (contain) cwd = homeDst;
  else if ([...covered].some((c) => hostCwd === c || hostCwd.startsWith(c + '/'))) cwd = hostCwd;
  else if (isSystemDir(hostCwd)) cwd = imageHas(rootfs, hostCwd, 'dir') ? hostCwd : '/';
  else if (noMount.has('cwd'))
    cwd = dirInContainer(rootfs, mounts, hostCwd)
      ? hostCwd
      : !noHome && dirInContainer(rootfs, mounts, homeDst)
        ? homeDst
        : '/';
  else {
    mounts.push(bind(hostCwd, hostCwd));
    cwd = hostCwd;
  }

  // /etc: the caller in passwd/group; name resolution from the host.
  const user = hostUser(uid, gid, homeDst);
  session.set('/etc/passwd', await passwdFor(rootfs, user, (p) => imageHas(rootfs, p, 'file')));
  session.set('/etc/group', await groupFor(rootfs, user));
  const etcBinds: Mount[] = [];
  for (const f of ['/etc/resolv.conf', '/etc/hosts', '/etc/localtime'])
    if (existsSync(f) && !noMount.has(f) && !(noMount.has('bind-paths') && BIND_PATHS.includes(f)))
      etcBinds.push(bind(f, f, true));

  // --nv / --rocm: host driver libraries, programs and devices.
  const gpuMounts: Mount[] = [];
  for (const kind of ['nv', 'rocm'] as const) {
    if (!o[kind]) continue;
    const g = gpuBinds(kind, hostEnv);
    warnings.push(...g.warnings);
    for (const [src, dst] of g.files) gpuMounts.push(bind(src, dst, true));
    for (const d of g.devices) gpuMounts.push({ destination: d, source: d, type: 'bind', options: ['bind', 'rw'] });
  }

  // Environment layers 1-3 (the rest needs the image's scripts run first).
  const baseEnv = hostLayer(hostEnv, cleanenv);
  baseEnv.set('PATH', CONTAINER_PATH);
  baseEnv.set('HOME', homeDst);
  if (image.sandbox || o.nv || o.rocm) baseEnv.set('LD_LIBRARY_PATH', CONTAINER_LIBS);
  // What Apptainer tells the payload about its container: the image (an
  // absolute path for a local one), the action, the bind destinations.
  const imagePathRef = /^[a-z][a-z0-9+.-]*:/i.test(image.ref) ? image.ref : resolve(hostCwd, image.ref);
  const bindDests = userBinds.map((b) => b.destination ?? b.source);
  for (const prefix of ['APPTAINER', 'SINGULARITY']) {
    baseEnv.set(`${prefix}_CONTAINER`, imagePathRef);
    baseEnv.set(`${prefix}_NAME`, posix.basename(imagePathRef.replace(/\/+$/, '')));
    baseEnv.set(`${prefix}_COMMAND`, mode);
    baseEnv.set(`${prefix}_BIND`, bindDests.join(','));
    baseEnv.set(`${prefix}_ENVIRONMENT`, '/.singularity.d/env/91-environment.sh');
    if (o.noEval) baseEnv.set(`${prefix}_NO_EVAL`, '1');
  }
  for (const kv of image.config?.env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) baseEnv.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  if (mode === 'shell') baseEnv.set('PS1', 'Apptainer> ');
  let envScripts: string[] = [];
  const envDir = image.sandbox ? imagePath(rootfs, '/.singularity.d/env', 'dir') : undefined;
  if (envDir) {
    envScripts = readdirSync(envDir)
      .filter((f) => f.endsWith('.sh'))
      .sort()
      .map((f) => `/.singularity.d/env/${f}`)
      .filter((f) => imageHas(rootfs, f, 'file'));
  }

  // What to run.
  let args: string[];
  let runnable = true;
  switch (mode) {
    case 'exec':
      args = argv;
      break;
    case 'run':
      if (image.sandbox && imageHas(rootfs, '/.singularity.d/runscript', 'file'))
        args = ['/.singularity.d/runscript', ...argv];
      else if (image.config && (image.config.entrypoint.length || image.config.cmd.length))
        args = [...image.config.entrypoint, ...(argv.length ? argv : image.config.cmd)];
      else if (imageExecutable(rootfs, '/bin/sh')) {
        infos.push('No runscript found in container, executing /bin/sh');
        args = ['/bin/sh', ...argv];
      } else
        throw new SpecError(
          'image',
          `${image.ref} has no /.singularity.d/runscript, no Entrypoint or Cmd and no /bin/sh`,
        );
      break;
    case 'shell': {
      // As Apptainer's action script: the given shell ($APPTAINER_SHELL,
      // --shell) when executable, else bash without its rc files, else sh.
      const asked = argv[0];
      if (asked !== undefined && imageExecutable(rootfs, asked)) args = [asked];
      else {
        if (asked !== undefined)
          warnings.push(`shell ${asked} is not an executable file in the container: using the default shell`);
        args = imageExecutable(rootfs, '/bin/bash') ? ['/bin/bash', '--norc'] : ['/bin/sh'];
        baseEnv.set('SHELL', args[0]!);
      }
      if (asked !== undefined) for (const prefix of ['APPTAINER', 'SINGULARITY']) baseEnv.set(`${prefix}_SHELL`, asked);
      break;
    }
    case 'test':
      runnable = image.sandbox && imageHas(rootfs, '/.singularity.d/test', 'file');
      args = runnable ? ['/.singularity.d/test', ...argv] : ['/bin/true'];
      break;
  }

  const spec = createSpec({
    rootfs,
    args,
    cwd,
    uid,
    gid,
    env: [],
    network: o.network ?? 'host',
    hostname: o.hostname,
    readonly: !o.writableTmpfs && !(overlayDir && !overlayDir.readonly),
    mounts: [...etcBinds, ...mounts, ...gpuMounts],
    security: o.security,
  });
  if (noMount.has('sys')) spec.mounts = spec.mounts!.filter((m) => m.destination !== '/sys');
  // --fakeroot: root in a namespace of the caller's ids, with its full
  // capability set (Apptainer's SetupPrivileged). Root keeps none unless
  // asked (--keep-privs, --add-caps), as a pilot's payload must not get them.
  if (o.fakeroot) {
    const maps = fakerootMappings(euid, egid, hostEnv, infos);
    spec.linux!.uidMappings = maps.uid;
    spec.linux!.gidMappings = maps.gid;
  }
  const caps = new Set<string>(o.fakeroot || (euid === 0 && o.keepPrivs) ? allCaps() : []);
  for (const c of addCaps) caps.add(c);
  for (const c of dropCaps) caps.delete(c);
  if (caps.size) {
    const list = [...caps].sort((a, b) => CAPS[a]! - CAPS[b]!);
    spec.process!.capabilities = { bounding: list, effective: list, permitted: list };
  }
  if (o.hostname === undefined) delete spec.hostname;
  if (o.terminal) {
    spec.process!.terminal = true;
    if (typeof o.terminal === 'object')
      spec.process!.consoleSize = { height: o.terminal.rows, width: o.terminal.columns };
  }

  // Session files last among the mounts (nothing may cover them); bind
  // sources held open until the child has bound them, so that an automount
  // (autofs under /cvmfs) cannot expire in between.
  let files: SessionFiles | undefined;
  const held: number[] = [];
  const dispose = () => {
    files?.close();
    files = undefined;
    for (const fd of held.splice(0)) closeSync(fd);
  };
  try {
    files = makeSessionFiles(session);
    for (const [dest, src] of files.files) spec.mounts!.push(bind(src, dest, true));
    for (const b of userBinds) {
      try {
        held.push(openSync(b.source, fsc.O_RDONLY | fsc.O_NONBLOCK | fsc.O_NOCTTY));
      } catch {
        /* unreadable: the mount still works, only unpinned */
      }
    }
  } catch (e) {
    dispose();
    throw e;
  }

  const spawnOptions: SpawnOptions = {
    stdio: o.stdio,
    signal: o.signal,
    timeout: o.timeout,
    killSignal: o.killSignal,
    detached: o.detached,
    rootOverlay: o.writableTmpfs ? 'always' : 'auto',
    init: o.init ?? true,
    ...(overlaySize ? { overlaySize } : {}),
    ...(overlayDir ? { overlayDir } : {}),
    allowHostProc: o.allowHostProc,
    allowImageDevices: o.allowImageDevices,
    forceKillAfterDelay: o.forceKillAfterDelay,
  };
  return {
    image,
    spec,
    spawnOptions,
    baseEnv,
    envScripts,
    envFile,
    envOption: envOpt,
    hostEnv,
    warnings,
    infos,
    envScriptTimeout: o.envScriptTimeout ?? 10_000,
    runnable,
    dispose,
  };
}

/**
 * `--overlay DIR[:ro]` (one; a persistent overlay directory): DIR resolved
 * against the caller's cwd and checked now (checkOverlayDir), so a bad one is
 * one line naming --overlay before anything is set up.
 */
function parseOverlay(
  overlay: string | string[] | undefined,
  cwd: string,
): { dir: string; readonly: boolean } | undefined {
  const list = overlay === undefined ? [] : Array.isArray(overlay) ? overlay : [overlay];
  if (list.length === 0) return undefined;
  if (list.length > 1)
    throw new SpecError('--overlay', 'one overlay directory at a time (several overlays are not supported yet)');
  const m = /^(.*?)(?::(ro|rw))?$/.exec(list[0])!;
  if (m[1] === '') throw new SpecError('--overlay', `${JSON.stringify(list[0])}: needs a directory`);
  const readonly = m[2] === 'ro';
  return { dir: checkOverlayDir(resolve(cwd, m[1]), readonly, '--overlay'), readonly };
}
