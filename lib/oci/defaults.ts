// A default spec, the way `runc spec --rootless` makes one, with Apptainer's
// defaults where they differ: the host network unless asked, the caller's own
// uid/gid inside.
import type { Mount, NamespaceType, Spec } from './spec.js';
import { resolveSeccomp } from '../seccomp/index.js';
import type { SecurityOptions } from '../seccomp/types.js';
import type { LinuxResources } from '../cgroups/types.js';

export interface SpecOptions {
  /** Root file system directory. */
  rootfs: string;
  args: string[];
  env?: string[];
  cwd?: string;
  /** 'host' (default, as Apptainer) or 'none': a new network namespace with only lo, up. */
  network?: 'host' | 'none';
  hostname?: string;
  /** uid/gid inside; default the caller's own (0 gives a fakeroot-style mapping). */
  uid?: number;
  gid?: number;
  readonly?: boolean;
  /** Extra mounts after the defaults (binds: `{destination, source, options: ['rbind', 'ro']}`). */
  mounts?: Mount[];
  /** Leave out /sys (saves a recursive bind when there is no new netns). */
  noSys?: boolean;
  /**
   * seccomp: 'default' (when not given; docs/seccomp.md), 'docker-default',
   * 'unconfined', a profile file (OCI or Docker JSON) or a profile object.
   */
  security?: SecurityOptions;
  /**
   * Resource limits (runtime-spec linux.resources: memory, cpu, pids,
   * blockIO, hugepageLimits, devices, unified): the container gets a cgroup
   * of its own with them (lib/cgroups; as root, or in a delegated subtree).
   */
  resources?: LinuxResources;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
];
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** The mounts every container gets: /proc, a minimal /dev with devpts and shm, /sys. */
export function defaultMounts(noSys = false): Mount[] {
  const m: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
  ];
  if (!noSys)
    m.push({ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] });
  return m;
}

/** A complete spec for running `args` in `rootfs`. */
export function createSpec(o: SpecOptions): Spec {
  const namespaces: NamespaceType[] = ['user', 'mount', 'pid', 'ipc', 'uts'];
  if (o.network === 'none') namespaces.push('network');
  const seccomp = resolveSeccomp(o.security?.seccomp, []);
  return {
    ociVersion: '1.2.0',
    process: {
      user: { uid: o.uid ?? process.geteuid!(), gid: o.gid ?? process.getegid!() },
      args: o.args,
      env: o.env ?? [`PATH=${DEFAULT_PATH}`, 'TERM=xterm'],
      cwd: o.cwd ?? '/',
      noNewPrivileges: true,
      capabilities: {},
    },
    root: { path: o.rootfs, readonly: o.readonly ?? false },
    hostname: o.hostname,
    mounts: [...defaultMounts(o.noSys), ...(o.mounts ?? [])],
    linux: {
      namespaces: namespaces.map((type) => ({ type })),
      maskedPaths: DEFAULT_MASKED_PATHS,
      readonlyPaths: DEFAULT_READONLY_PATHS,
      ...(seccomp ? { seccomp } : {}),
      ...(o.resources ? { resources: structuredClone(o.resources) } : {}),
    },
  };
}
