// What a start-latency run needs before the first launch: the image (built
// offline from the host's busybox-static when none is given), OCI bundles
// for crun and runc, and a probe of every other runtime on this machine. A
// runtime is 'missing' (not installed), 'failed' (installed but cannot run
// the bench container here; its error is kept) or 'ok' with the exact
// command line every launch will use. Used by `nodularity bench` and by
// bench/index.mjs, so both ask the other runtimes for the same container.
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import {
  availableParallelism,
  loadavg,
  machine as osMachine,
  release as osRelease,
  type as osType,
  userInfo,
} from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Spec } from '../oci/spec.js';

/** The checkout (or installed package) root: lib/bench and dist/bench are both two levels down. */
export const PACKAGE_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Runtimes `--compare` knows, in the order reports list them; `host` is the command run with no container. */
export const COMPARE_IDS = ['host', 'bwrap', 'ch-run', 'crun', 'runc', 'apptainer'] as const;
export type CompareId = (typeof COMPARE_IDS)[number];

/** The Debian package that provides each external tool, for messages. */
export const APT_PACKAGE: Record<string, string> = {
  bwrap: 'bubblewrap',
  'ch-run': 'charliecloud-runtime',
  crun: 'crun',
  runc: 'runc',
  apptainer: 'apptainer (not in Debian 12: https://github.com/apptainer/apptainer/releases)',
  cc: 'gcc libc6-dev',
  strace: 'strace',
};

export type Network = 'host' | 'none';

export interface RuntimeProbe {
  name: string;
  status: 'ok' | 'missing' | 'failed';
  detail: string | null;
  path?: string;
  version?: string | null;
  /** Program and arguments of one launch; `{{id}}` in an argument is replaced by a fresh container id. */
  cmd?: string;
  args?: string[];
  envAdd?: Record<string, string> | null;
  /** What differs from the container the others get (a caveat for the report). */
  note?: string | null;
}

import { which } from '../which.js';

export { which };

function firstLine(s: unknown): string {
  return (
    String(s ?? '')
      .split('\n')
      .map((l) => l.trim())
      .find(Boolean) ?? ''
  );
}

function versionOf(path: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000, env });
  return firstLine(r.stdout) || firstLine(r.stderr);
}

/** Make `dir` (recursively) and check it is writable; false when it is not. */
export function writableDir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Compile a C file unless the binary is newer; throws with the compiler's output. */
export function compileC(src: string, bin: string): string {
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  const cc = which('cc') ?? which('gcc');
  if (!cc) throw new Error(`no C compiler to build ${src}: apt-get install ${APT_PACKAGE.cc}`);
  const r = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-o', bin, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cc} ${src} failed:\n${r.stderr || r.error}`);
  return bin;
}

/**
 * The default image: a busybox rootfs under `outDir/rootfs`, made offline
 * by scripts/busybox-rootfs.mjs (the same builder the tests and the demo
 * use) unless one is already there.
 */
export async function ensureDefaultRootfs(outDir: string): Promise<string> {
  const rootfs = join(outDir, 'rootfs');
  if (existsSync(join(rootfs, 'bin', 'true'))) return rootfs;
  rmSync(rootfs, { recursive: true, force: true });
  // A plain .mjs outside lib/: imported by URL so tsc does not compile it.
  const builder = pathToFileURL(join(PACKAGE_DIR, 'scripts', 'busybox-rootfs.mjs')).href;
  const { makeBusyboxRootfs } = (await import(builder)) as { makeBusyboxRootfs: (dir: string) => string };
  makeBusyboxRootfs(rootfs);
  return rootfs;
}

export interface BenchSpecOptions {
  net?: boolean;
  /** false: the caller already provides the user namespace (crun behind hide-cgroup2, unprivileged). */
  userns?: boolean;
  /** false: leave the id maps to the runtime's default (nodularity maps the caller's own ids). */
  maps?: boolean;
  uid?: number;
  gid?: number;
  args?: string[];
}

/**
 * The container every runtime is asked for, as an OCI config: the payload in
 * new user, mount, pid, ipc and uts (and, with `net`, network) namespaces,
 * read-only root, fresh /proc, tmpfs /dev.
 */
export function benchSpec(rootfs: string, o: BenchSpecOptions = {}): Spec {
  const {
    net = false,
    userns = true,
    maps = true,
    uid = process.getuid!(),
    gid = process.getgid!(),
    args = ['/bin/true'],
  } = o;
  const types = [userns && 'user', 'mount', 'pid', 'ipc', 'uts', net && 'network'].filter((x): x is string =>
    Boolean(x),
  );
  const spec = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid, gid },
      args,
      env: ['PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'],
      cwd: '/',
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
    ],
    linux: { namespaces: types.map((type) => ({ type })) } as Record<string, unknown>,
  };
  if (userns && maps) {
    spec.linux.uidMappings = [{ containerID: uid, hostID: process.getuid!(), size: 1 }];
    spec.linux.gidMappings = [{ containerID: gid, hostID: process.getgid!(), size: 1 }];
  }
  return spec as unknown as Spec;
}

function writeBundle(dir: string, spec: Spec): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return dir;
}

let probeSeq = 0;
function containerId(tag: string): string {
  return `nb-${tag}-${process.pid}-${probeSeq++}`;
}

/** Run one launch the way the bench will, capturing output; null when it worked, else the reason. */
function tryLaunch(cmd: string, args: string[], env: NodeJS.ProcessEnv): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) return `${cmd}: ${r.error.message}`;
  if (r.status === 0) return null;
  const why = (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ');
  return `exit ${r.status ?? 'signal ' + r.signal}: ${why || '(no output)'}`;
}

interface Variant {
  label: string;
  /** Program to run; default the runtime's own path. */
  cmd?: string;
  args: (path: string) => string[];
  envAdd?: Record<string, string>;
  note?: string;
  /** Try the next variant only when this one failed with a matching error. */
  onlyIf?: (err: string) => boolean;
}

/** Probe one external runtime by launching the bench container once with each variant in turn. */
function probeExternal(name: string, bin: string, variants: Variant[]): RuntimeProbe {
  const path = which(bin);
  if (!path)
    return { name, status: 'missing', detail: `${bin} not found in PATH (install: ${APT_PACKAGE[name] ?? bin})` };
  const errors: string[] = [];
  for (const v of variants) {
    const env = { ...process.env, ...v.envAdd };
    const cmd = v.cmd ?? path;
    const args = v.args(path);
    const err = tryLaunch(
      cmd,
      args.map((a) => a.replaceAll('{{id}}', containerId(name))),
      env,
    );
    if (!err)
      return {
        name,
        status: 'ok',
        detail: null,
        path,
        version: versionOf(path, env),
        cmd,
        args,
        envAdd: v.envAdd ?? null,
        note: v.note ?? null,
      };
    errors.push(`${v.label}: ${err}`);
    if (v.onlyIf && !v.onlyIf(err)) break;
  }
  return { name, status: 'failed', path, version: versionOf(path), detail: errors.join(' ; then ') };
}

export interface ProbeOptions {
  rootfs: string;
  /** Scratch space for bundles, container state and compiled helpers. */
  workDir: string;
  /** Payload and arguments. */
  args: string[];
  network: Network;
  ids: readonly CompareId[];
}

/**
 * Probe the runtimes asked for. Each gets the same container as far as its
 * options allow; what it cannot do is said in `note`.
 */
export function probeRuntimes({ rootfs, workDir, args, network, ids }: ProbeOptions): Record<string, RuntimeProbe> {
  const uid = process.getuid!();
  const net = network === 'none';
  const user = process.env.USER || safeUserName() || `uid${uid}`;
  const out: Record<string, RuntimeProbe> = {};
  for (const id of ids) {
    switch (id) {
      case 'host': {
        const err = tryLaunch(args[0], args.slice(1), process.env);
        out.host = err
          ? { name: 'host', status: 'failed', detail: `${args.join(' ')} on the host: ${err}` }
          : {
              name: 'host',
              status: 'ok',
              detail: null,
              cmd: args[0],
              args: args.slice(1),
              note: 'no container: the payload started by child_process.spawn on the host',
            };
        break;
      }
      case 'bwrap':
        // The same namespaces, its own --proc and --dev; bwrap stays as a
        // pid-1 reaper by default, like nodularity's init.
        out.bwrap = probeExternal('bwrap', 'bwrap', [
          {
            label: 'bwrap',
            args: () => [
              '--unshare-user',
              '--unshare-pid',
              '--unshare-ipc',
              '--unshare-uts',
              ...(net ? ['--unshare-net'] : []),
              '--ro-bind',
              rootfs,
              '/',
              '--proc',
              '/proc',
              '--dev',
              '/dev',
              ...args,
            ],
          },
        ]);
        break;
      case 'ch-run':
        // ch-run makes user and mount namespaces only and refuses to start without $USER.
        out['ch-run'] = probeExternal('ch-run', 'ch-run', [
          {
            label: 'ch-run',
            envAdd: { USER: user },
            args: () => [rootfs, '--', ...args],
            note: `user+mount namespaces only (ch-run has no pid/ipc/uts${net ? '/network' : ''} option)`,
          },
        ]);
        break;
      case 'crun': {
        // crun 1.8 refuses a cgroup v1 "hybrid" host even with cgroups
        // disabled; bench/floor/hide-cgroup2.c covers /sys/fs/cgroup/unified
        // with a tmpfs in a private mount namespace (one extra exec). For an
        // unprivileged caller the shim also makes the user namespace, so
        // that bundle leaves it out rather than stacking a second one.
        const bundle = writeBundle(join(workDir, 'bundle'), benchSpec(rootfs, { uid: 0, gid: 0, net, args }));
        const inUserns = writeBundle(
          join(workDir, 'bundle-in-userns'),
          benchSpec(rootfs, { userns: uid === 0, uid: 0, gid: 0, net, args }),
        );
        const state = join(workDir, 'crun-state');
        const crunArgs = (b: string) => (p: string) => [
          p,
          '--root',
          state,
          '--cgroup-manager=disabled',
          'run',
          '--bundle',
          b,
          '{{id}}',
        ];
        let shim: string | null = null;
        let shimError = '';
        try {
          shim = compileC(join(PACKAGE_DIR, 'bench', 'floor', 'hide-cgroup2.c'), join(workDir, 'hide-cgroup2'));
        } catch (e) {
          shimError = (e as Error).message;
        }
        out.crun = probeExternal('crun', 'crun', [
          { label: 'crun', args: (p) => crunArgs(bundle)(p).slice(1), onlyIf: (err) => /hybrid/.test(err) },
          shim
            ? {
                label: 'crun behind hide-cgroup2',
                cmd: shim,
                args: crunArgs(uid === 0 ? bundle : inUserns),
                note: 'started through bench/floor/hide-cgroup2 (one extra exec) because crun refuses cgroup v1 hybrid hosts',
              }
            : { label: 'crun behind hide-cgroup2', cmd: '/nonexistent/hide-cgroup2', args: () => [], note: shimError },
        ]);
        break;
      }
      case 'runc': {
        // runc insists on a mapping for uid 0; one single-ID map costs the same whichever ID it names.
        const bundle = writeBundle(join(workDir, 'bundle'), benchSpec(rootfs, { uid: 0, gid: 0, net, args }));
        out.runc = probeExternal('runc', 'runc', [
          { label: 'runc', args: () => ['--root', join(workDir, 'runc-state'), 'run', '--bundle', bundle, '{{id}}'] },
        ]);
        break;
      }
      case 'apptainer':
        out.apptainer = probeExternal('apptainer', 'apptainer', [
          {
            label: 'apptainer',
            args: () => [
              '--silent',
              'exec',
              '--userns',
              '--pid',
              '--ipc',
              '--uts',
              '--contain',
              ...(net ? ['--net', '--network', 'none'] : []),
              rootfs,
              ...args,
            ],
          },
        ]);
        break;
    }
  }
  return out;
}

function safeUserName(): string | null {
  try {
    return userInfo().username;
  } catch {
    return null;
  }
}

export interface MachineInfo {
  date: string;
  nproc: number;
  cpu: string | null;
  kernel: string;
  node: string;
  uid: number;
  os: string | null;
  loadavg: number[];
  git: string | null;
}

/** Facts about this machine for the reports. */
export function machineInfo(): MachineInfo {
  const sh = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  let cpu: string | null = null;
  try {
    cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? null;
  } catch {
    /* no /proc */
  }
  let os: string | null = null;
  try {
    os = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)"?$/m)?.[1] ?? null;
  } catch {
    /* unknown */
  }
  // safe.directory: git refuses a checkout owned by another user, which is
  // exactly an unprivileged run's situation. Outside a checkout this is null.
  const git = (...a: string[]) => sh('git', ['-c', `safe.directory=${PACKAGE_DIR}`, '-C', PACKAGE_DIR, ...a]);
  const head = existsSync(join(PACKAGE_DIR, '.git')) ? git('rev-parse', '--short', 'HEAD') : null;
  const dirty = head
    ? git('status', '--porcelain', '--untracked-files=no', '--', 'lib', 'native', 'binding.gyp')
    : null;
  return {
    date: new Date().toISOString(),
    // CPUs this process may run on (what nproc prints), not all installed.
    nproc: availableParallelism(),
    cpu,
    kernel: `${osType()} ${osRelease()} ${osMachine()}`,
    node: process.version,
    uid: process.getuid!(),
    os,
    loadavg: loadavg(),
    git: head ? (dirty ? `${head} + uncommitted changes in lib/native` : head) : null,
  };
}
