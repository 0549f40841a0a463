// Stage "options": every option that can be checked without the image,
// checked and normalized, in the order the checks have always run (the first
// bad option is the one named): paths absolute, --network, exec's command,
// --no-mount, the tmpfs size, --overlay, capabilities and who may add them,
// --workdir, binds and mounts (their sources must exist), the env file and
// --env. Nothing here looks at the image.
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { SpecError } from '../../errors.js';
import { checkOverlayDir } from '../../plan/root.js';
import { normalizeBinds, parseMountSpec, type BindSpec } from '../binds.js';
import { envOption, prefixedWarnings, readEnvFile, type EnvMap } from '../environment.js';
import { capList } from './identity.js';
import { checkAbsolute, existingDir } from './paths.js';
import type { ActionMode, ExecOptions } from './types.js';

/** --no-mount values: Apptainer's names (proc, dev and devpts are always the container's own here). */
export const NO_MOUNT = new Set([
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

/** --no-mount's values, comma lists allowed; proc, dev, devpts and unknown names refused. */
export function parseNoMount(values: string[] | undefined): Set<string> {
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
export function tmpfsSize(v: number | string | undefined): string | undefined {
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
 * `--overlay DIR[:ro]` (one; a persistent overlay directory): DIR resolved
 * against the caller's cwd and checked now (checkOverlayDir), so a bad one is
 * one line naming --overlay before anything is set up.
 */
export function parseOverlay(
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

/** Every bind source must exist: say so by option, and for /cvmfs say why it may not. */
export function checkBindSources(binds: readonly BindSpec[]): void {
  for (const b of binds) {
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
}

/** The options as the later stages take them. */
export interface CheckedOptions {
  hostEnv: NodeJS.ProcessEnv;
  hostCwd: string;
  /** Warnings so far (the host's APPTAINERENV_-style variables); later stages add theirs. */
  warnings: string[];
  noMount: Set<string>;
  /** tmpfs size of the writable overlay, when given. */
  overlaySize?: string;
  /** The persistent overlay directory, checked (and made) already. */
  overlayDir?: { dir: string; readonly: boolean };
  addCaps: string[];
  dropCaps: string[];
  /** --contain or --containall. */
  contain: boolean;
  /** --cleanenv or --containall. */
  cleanenv: boolean;
  /** The caller's effective ids. */
  euid: number;
  egid: number;
  /** The payload's ids: 0 with --fakeroot, else the caller's. */
  uid: number;
  gid: number;
  /** An existing host directory. */
  workdir?: string;
  scratchDirs: string[];
  /** -B and --mount, relative sources made absolute against hostCwd; every source exists. */
  userBinds: BindSpec[];
  envFile: EnvMap;
  envOption: EnvMap;
}

/** Check and normalize what needs no image. Throws a SpecError naming the first bad option. */
export function checkOptions(
  o: ExecOptions,
  argv: string[],
  mode: ActionMode,
  ids: { euid: number; egid: number },
): CheckedOptions {
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
  const warnings = prefixedWarnings(hostEnv);
  const noMount = parseNoMount(o.noMount);
  const overlaySize = tmpfsSize(o.writableTmpfsSize);
  const overlayDir = parseOverlay(o.overlay, hostCwd);
  const addCaps = capList(o.addCaps, '--add-caps');
  const dropCaps = capList(o.dropCaps, '--drop-caps');
  if (!o.fakeroot && ids.euid !== 0) {
    if (addCaps.length)
      throw new SpecError(
        '--add-caps',
        'only root or --fakeroot can add capabilities (there is no capability database to authorize other users)',
      );
    if (o.keepPrivs) throw new SpecError('--keep-privs', '--keep-privs requires root privileges');
  }
  const workdir = o.workdir === undefined ? undefined : existingDir('--workdir', o.workdir);
  // Relative bind sources are the host working directory's, as in Apptainer.
  const userBinds = [
    ...normalizeBinds(o.binds, hostCwd),
    ...(o.mounts ?? []).map((m, i) => parseMountSpec(m, `--mount[${i}]`)),
  ];
  const envFile = o.envFile === undefined ? new Map<string, string>() : readEnvFile(o.envFile);
  const envOpt = envOption(o.env);
  checkBindSources(userBinds);
  return {
    hostEnv,
    hostCwd,
    warnings,
    noMount,
    ...(overlaySize ? { overlaySize } : {}),
    ...(overlayDir ? { overlayDir } : {}),
    addCaps,
    dropCaps,
    contain: !!(o.contain || o.containall),
    cleanenv: !!(o.cleanenv || o.containall),
    euid: ids.euid,
    egid: ids.egid,
    uid: o.fakeroot ? 0 : ids.euid,
    gid: o.fakeroot ? 0 : ids.egid,
    ...(workdir === undefined ? {} : { workdir }),
    scratchDirs,
    userBinds,
    envFile,
    envOption: envOpt,
  };
}
