// Apptainer-style options -> one OCI runtime spec plus spawn options, the
// same model an OCI bundle is read into (docs/architecture.md). What
// Apptainer does by default is done here by default: home, /tmp, /var/tmp
// and the working directory bound from the host, /etc/passwd and /etc/group
// carrying the caller, /etc/resolv.conf and /etc/hosts from the host, a
// read-only root, mount points missing in the image made in an overlay.
import { closeSync, constants as fsc, existsSync, mkdirSync, openSync, readdirSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { isAbsolute, join, posix } from 'node:path';
import type { SpawnOptions } from '../container.js';
import { SpecError } from '../errors.js';
import type { PullOptions } from '../image/index.js';
import { createSpec } from '../oci/defaults.js';
import { resolveInRoot } from '../plan/resolve.js';
import type { Mount, Spec } from '../oci/spec.js';
import type { SecurityOptions } from '../seccomp/types.js';
import { normalizeBinds, parseMountSpec, type BindSpec } from './binds.js';
import { CONTAINER_PATH, envOption, hostLayer, readEnvFile, type EnvMap } from './environment.js';
import { resolveRunImage, type ResolvedRunImage } from './image.js';
import { groupFor, hostUser, makeSessionFiles, passwdFor, type SessionFiles } from './session-files.js';

export interface ExecOptions extends Omit<SpawnOptions, 'rootOverlay' | 'bundleDir' | 'init'> {
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
  /** uid 0 inside, mapped to the caller outside. */
  fakeroot?: boolean;
  /** A writable root: the image under an overlay on a tmpfs. */
  writableTmpfs?: boolean;
  /** Run an init as PID 1 (default true). */
  init?: boolean;
  /** Host environment to start from (default process.env). */
  hostEnv?: NodeJS.ProcessEnv;
  /** Host working directory (default process.cwd()). */
  hostCwd?: string;
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
  /** Release the session files and held bind sources. */
  dispose(): void;
}

const SYSTEM_DIRS = ['/', '/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/root', '/run',
  '/sbin', '/sys', '/usr', '/var'];
function isSystemDir(p: string): boolean {
  return SYSTEM_DIRS.includes(p) || ['/proc/', '/sys/', '/dev/', '/etc/', '/usr/', '/boot/', '/run/'].some((d) => p.startsWith(d));
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

/** Compile options for one action into a spec; nothing is launched yet. */
export async function compileLaunch(imageRef: string, argv: string[], options: ExecOptions, mode: ActionMode): Promise<CompiledLaunch> {
  const o = options;
  for (const k of ['pwd', 'workdir'] as const) checkAbsolute(`--${k}`, o[k]);
  if (o.network !== undefined && o.network !== 'host' && o.network !== 'none')
    throw new SpecError('--network', `must be host or none, not ${JSON.stringify(o.network)} (no bridge networking without privileges)`);
  if (mode === 'exec' && (!Array.isArray(argv) || argv.length === 0)) throw new SpecError('command', 'exec needs a command to run');
  const scratchDirs = o.scratch ?? [];
  scratchDirs.forEach((s, i) => checkAbsolute(`--scratch[${i}]`, s));
  const hostEnv = o.hostEnv ?? process.env;
  const contain = !!(o.contain || o.containall);
  const cleanenv = !!(o.cleanenv || o.containall);
  const euid = process.geteuid!();
  const egid = process.getegid!();
  const uid = o.fakeroot ? 0 : euid;
  const gid = o.fakeroot ? 0 : egid;
  const workdir = o.workdir === undefined ? undefined : existingDir('--workdir', o.workdir);
  const userBinds = [...normalizeBinds(o.binds), ...(o.mounts ?? []).map((m, i) => parseMountSpec(m, `--mount[${i}]`))];
  const envFile = o.envFile === undefined ? new Map() : readEnvFile(o.envFile);
  const envOpt = envOption(o.env);
  // Bind sources must exist: say so by option, and for /cvmfs say why it may not.
  for (const b of userBinds) {
    try {
      statSync(b.source);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const cvmfs = b.source.startsWith('/cvmfs/')
        ? ` (is the repository ${b.source.split('/')[2]} spelled right, and is CernVM-FS mounted or automounted on this host?)` : '';
      throw new SpecError('--bind', `bind source ${b.source} does not exist (${code})${cvmfs}`);
    }
  }

  const image = await resolveRunImage(imageRef, o.pull);
  const rootfs = image.rootfs;

  // Home.
  let hostHome = hostEnv.HOME;
  if (!hostHome) try { hostHome = userInfo().homedir; } catch { hostHome = '/'; }
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
  if (o.noHome) homeSrc = undefined;

  const mounts: Mount[] = [];
  const covered = new Set<string>(); // container paths bound from the same host path
  const session = new Map<string, string>();

  // /tmp and /var/tmp (scratch dirs take their place when named).
  const sub = (name: string) => {
    const p = join(workdir!, name);
    mkdirSync(p, { recursive: true, mode: 0o700 });
    return p;
  };
  for (const [dir, name] of [['/tmp', 'tmp'], ['/var/tmp', 'var_tmp']] as const) {
    if (scratchDirs.includes(dir)) continue;
    if (!contain) { mounts.push(bind(dir, dir)); covered.add(dir); }
    else mounts.push(workdir ? bind(sub(name), dir) : tmpfs(dir, '1777'));
  }
  // Scratch dirs before home and binds, which may sit inside them (HTCondor
  // gives -S /tmp with --home and -B inside the job's scratch dir).
  for (const s of scratchDirs)
    mounts.push(workdir ? bind(sub(join('scratch', s.replace(/\//g, '_'))), s) : tmpfs(s, '1777'));
  // Home after /tmp: a home under /tmp stays visible.
  if (homeSrc) {
    mounts.push(bind(homeSrc, homeDst));
    if (homeSrc === homeDst) covered.add(homeDst);
  } else if (contain && !o.noHome) {
    mounts.push(workdir ? bind(sub('home'), homeDst) : tmpfs(homeDst, '0700'));
  }
  for (const b of userBinds) {
    mounts.push(bind(b.source, b.destination ?? b.source, b.readonly));
    if ((b.destination ?? b.source) === b.source) covered.add(b.source);
  }

  // Working directory.
  const hostCwd = o.hostCwd ?? process.cwd();
  let cwd: string;
  const warnings: string[] = [];
  if (o.pwd !== undefined) {
    // As Apptainer: a --pwd that is not a directory in the container is a
    // warning, and the payload starts in the home directory instead; it is
    // never created (in the image, an overlay, or a host directory).
    if (dirInContainer(rootfs, mounts, o.pwd)) cwd = o.pwd;
    else {
      cwd = o.noHome ? '/' : homeDst;
      warnings.push(`--pwd ${o.pwd} is not a directory in the container: starting in ${cwd}`);
    }
  } else if (contain) cwd = homeDst;
  else if ([...covered].some((c) => hostCwd === c || hostCwd.startsWith(c + '/'))) cwd = hostCwd;
  else if (isSystemDir(hostCwd)) cwd = imageHas(rootfs, hostCwd, 'dir') ? hostCwd : '/';
  else { mounts.push(bind(hostCwd, hostCwd)); cwd = hostCwd; }

  // /etc: the caller in passwd/group; name resolution from the host.
  const user = hostUser(uid, gid, homeDst);
  session.set('/etc/passwd', await passwdFor(rootfs, user, (p) => imageHas(rootfs, p, 'file')));
  session.set('/etc/group', await groupFor(rootfs, user));
  const etcBinds: Mount[] = [];
  for (const f of ['/etc/resolv.conf', '/etc/hosts', '/etc/localtime'])
    if (existsSync(f)) etcBinds.push(bind(f, f, true));

  // Environment layers 1-3 (the rest needs the image's scripts run first).
  const baseEnv = hostLayer(hostEnv, cleanenv);
  baseEnv.set('PATH', CONTAINER_PATH);
  baseEnv.set('HOME', homeDst);
  if (image.sandbox) baseEnv.set('LD_LIBRARY_PATH', '/.singularity.d/libs');
  for (const prefix of ['APPTAINER', 'SINGULARITY']) {
    baseEnv.set(`${prefix}_CONTAINER`, image.ref);
    baseEnv.set(`${prefix}_NAME`, posix.basename(image.ref.replace(/\/+$/, '')));
  }
  for (const kv of image.config?.env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) baseEnv.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  if (mode === 'shell') baseEnv.set('PS1', 'Apptainer> ');
  let envScripts: string[] = [];
  const envDir = image.sandbox ? imagePath(rootfs, '/.singularity.d/env', 'dir') : undefined;
  if (envDir) {
    envScripts = readdirSync(envDir).filter((f) => f.endsWith('.sh')).sort()
      .map((f) => `/.singularity.d/env/${f}`).filter((f) => imageHas(rootfs, f, 'file'));
  }

  // What to run.
  let args: string[];
  let runnable = true;
  switch (mode) {
    case 'exec':
      args = argv;
      break;
    case 'run':
      if (image.sandbox && imageHas(rootfs, '/.singularity.d/runscript', 'file')) args = ['/.singularity.d/runscript', ...argv];
      else if (image.config && (image.config.entrypoint.length || image.config.cmd.length))
        args = [...image.config.entrypoint, ...(argv.length ? argv : image.config.cmd)];
      else throw new SpecError('image', `${image.ref} has no /.singularity.d/runscript and no Entrypoint or Cmd: use exec`);
      break;
    case 'shell':
      args = [argv[0] ?? '/bin/sh'];
      break;
    case 'test':
      runnable = image.sandbox && imageHas(rootfs, '/.singularity.d/test', 'file');
      args = runnable ? ['/.singularity.d/test', ...argv] : ['/bin/true'];
      break;
  }

  const spec = createSpec({
    rootfs, args, cwd, uid, gid, env: [],
    network: o.network ?? 'host',
    hostname: o.hostname,
    readonly: !o.writableTmpfs,
    mounts: [...etcBinds, ...mounts],
    security: o.security,
  });
  if (o.hostname === undefined) delete spec.hostname;
  if (o.terminal) {
    spec.process!.terminal = true;
    if (typeof o.terminal === 'object') spec.process!.consoleSize = { height: o.terminal.rows, width: o.terminal.columns };
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
      } catch { /* unreadable: the mount still works, only unpinned */ }
    }
  } catch (e) {
    dispose();
    throw e;
  }

  const spawnOptions: SpawnOptions = {
    stdio: o.stdio, signal: o.signal, timeout: o.timeout, killSignal: o.killSignal, detached: o.detached,
    rootOverlay: o.writableTmpfs ? 'always' : 'auto', init: o.init ?? true,
    allowHostProc: o.allowHostProc, allowImageDevices: o.allowImageDevices,
    forceKillAfterDelay: o.forceKillAfterDelay,
  };
  return {
    image, spec, spawnOptions, baseEnv, envScripts, envFile, envOption: envOpt, hostEnv, warnings,
    envScriptTimeout: o.envScriptTimeout ?? 10_000, runnable, dispose,
  };
}
