// The types of the Apptainer front end's compile step (compile.ts and its
// stages under compile/): the options a verb takes, the action, and what a
// compiled launch holds.
import type { SpawnOptions } from '../../container.js';
import type { PullOptions } from '../../image/index.js';
import type { Spec } from '../../oci/spec.js';
import type { SecurityOptions } from '../../seccomp/types.js';
import type { BindSpec } from '../binds.js';
import type { EnvMap } from '../environment.js';
import type { ResolvedRunImage } from '../image.js';
import type { LinuxResources } from '../../cgroups/types.js';

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
  writableTmpfsSize?: number | string;
  /**
   * A persistent overlay directory, as `--overlay DIR[:ro]`: what the payload
   * writes stays in DIR/upper (DIR/work beside it; both made when missing);
   * `:ro` shows DIR/upper above the image, read-only. Overlay images are not
   * supported.
   */
  overlay?: string | string[];
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
  /**
   * Resource limits (runtime-spec linux.resources): the container gets a
   * cgroup of its own (see README "Resource limits"); the CLI's --memory,
   * --cpus, --pids-limit, ... and --apply-cgroups FILE.
   */
  resources?: LinuxResources;
}

export type ActionMode = 'exec' | 'run' | 'shell' | 'test';

/**
 * A compiled launch: evaluate `envScripts` in the container, apply the user's
 * layers (environment.ts applyUserLayers), then spawn `spec` with `spawnOptions`.
 */
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
  /** False for `test` on an image without a test script (nothing is launched). */
  runnable: boolean;
  /** Things not as asked that did not stop the launch. */
  warnings: string[];
  /** What Apptainer says as INFO (a fallback taken, a default chosen). */
  infos: string[];
  /** Release the session files and held bind sources. */
  dispose(): void;
}
