// Prepared launches: prepare(spec, options) validates and plans once and
// returns a template; its spawn()/run() take the per-launch changes (args,
// env, cwd, hostname, extra binds) and do only the work those changes need.
// A pilot launching thousands of short payloads from one image pays for
// validation, root and id-map planning, capabilities and the seccomp filter
// once, for the mount plan once per distinct (cwd, binds), and for the
// executable's lookup once per distinct (args[0], PATH, cwd, binds).
//
// The rootfs directory is pinned: prepare() opens it and every
// launch's child checks that the rootfs path reaches that very directory
// (the check the launcher makes for an unprepared launch, against the
// directory found at prepare time instead of at launch time). A rootfs
// swapped since (a new unpack renamed into place, a symlink) fails the
// launch with ESTALE or ELOOP; a changed image needs a new prepare(), and
// close() releases the fd. Files changed inside the same directory are seen
// by the next launch: the child resolves every path inside the root with
// fds at launch time; only the JS-side lookups (the executable, mount
// points to create) were made at prepare time, and a launch whose planned
// executable has gone fails as exec (ENOENT), never running anything else.
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { posix } from 'node:path';
import { hrtime } from 'node:process';
import { SpecError } from './errors.js';
import type { Mount, Spec } from './oci/spec.js';
import { DEFAULT_PATH } from './oci/defaults.js';
import {
  planLaunchBase,
  planLaunchFinish,
  planLaunchMounts,
  type LaunchBase,
  type LaunchMounts,
  type LaunchPlan,
  type PlanOptions,
  type PlanOverride,
  type PreparedLaunch,
} from './plan/plan.js';
import { loadBinding } from './native.js';
import { findExecutable } from './plan/process.js';
import {
  cgroupWanted,
  launchPlanned,
  awaitRun,
  type Container,
  type RunResult,
  type SpawnOptions,
} from './container.js';

/** An extra bind of a host path for one launch (as Apptainer's --bind SRC:DEST[:ro]). */
export interface LaunchBind {
  /** Host path (absolute). */
  source: string;
  /** Container path (absolute); default: the same as source. */
  destination?: string;
  /** Bound read-only (default false). */
  readonly?: boolean;
}

/** What may change from one launch of a prepared container to the next. */
export interface LaunchChanges {
  /** process.args (args[0] is looked up as for the spec). */
  args?: string[];
  /** process.env, replacing the spec's. */
  env?: string[];
  /** process.cwd (absolute, created like a mount point when missing, as for the spec). */
  cwd?: string;
  /** The hostname (the spec must have a uts namespace). */
  hostname?: string;
  /** Binds added after the spec's mounts (before masked and read-only paths, which still apply over them). */
  binds?: LaunchBind[];
}

/** Per-launch options: what changes, and how this launch is run (stdio, timeouts, signals). */
export type PreparedSpawnOptions = LaunchChanges &
  Pick<
    SpawnOptions,
    'stdio' | 'signal' | 'timeout' | 'killSignal' | 'forceKillAfterDelay' | 'cgroupName' | 'preserveFds' | 'timing'
  >;

/** Options of prepare(): the plan options, fixed for every launch of the template. */
export type PrepareOptions = Omit<PlanOptions, 'joinPid'>;

/** How much planning a template has done (for callers and tests: what was not re-done). */
export interface PreparedStats {
  /** Validations and spec-wide planning (1: at prepare()). */
  validations: number;
  /** Mount plans made (one per distinct cwd and binds). */
  mountPlans: number;
  /** Executable lookups in the image (one per distinct args[0], PATH, cwd and binds). */
  execLookups: number;
  /** Launches started. */
  launches: number;
}

/** Keys a launch may not change: they are fixed at prepare(). */
const PLAN_KEYS = [
  'bundleDir',
  'init',
  'detached',
  'rootOverlay',
  'overlaySize',
  'overlayDir',
  'allowHostProc',
  'allowImageDevices',
  'joinPid',
  'startGate',
  'consoleSocket',
  'beforePivot',
];

const CACHE_MAX = 64;

/** The cache key of a mount plan: the cwd alone in the common case (no binds). */
function mountKey(cwd: string, binds: Mount[]): string {
  return binds.length ? `${cwd}\0${JSON.stringify(binds)}` : cwd;
}

function remember<V>(m: Map<string, V>, key: string, value: V): V {
  if (m.size >= CACHE_MAX) m.delete(m.keys().next().value!);
  m.set(key, value);
  return value;
}

function checkStrings(v: unknown, option: string, nonEmpty: boolean): string[] {
  if (!Array.isArray(v) || (nonEmpty && v.length === 0) || v.some((x) => typeof x !== 'string' || x.includes('\0')))
    throw SpecError.inOption(option, `must be ${nonEmpty ? 'a non-empty' : 'an'} array of strings without NUL bytes`);
  return v as string[];
}

function checkAbsolute(v: unknown, option: string): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.includes('\0'))
    throw SpecError.inOption(option, `must be an absolute path, got ${JSON.stringify(v)}`);
  return v;
}

/** The binds as spec mounts, each checked (one clear line naming the bind at fault). */
function bindMounts(binds: unknown): Mount[] {
  if (binds === undefined) return [];
  if (!Array.isArray(binds)) throw SpecError.inOption('binds', 'must be an array of {source, destination?, readonly?}');
  return binds.map((b: unknown, i) => {
    if (typeof b !== 'object' || b === null) throw SpecError.inOption(`binds[${i}]`, 'must be an object');
    const { source, destination, readonly } = b as LaunchBind;
    const src = checkAbsolute(source, `binds[${i}].source`);
    const dest = destination === undefined ? src : checkAbsolute(destination, `binds[${i}].destination`);
    if (readonly !== undefined && typeof readonly !== 'boolean')
      throw SpecError.inOption(`binds[${i}].readonly`, 'must be a boolean');
    return {
      destination: dest,
      source: src,
      type: 'bind',
      options: ['rbind', 'nosuid', 'nodev', ...(readonly ? ['ro'] : [])],
    };
  });
}

/**
 * A container validated and planned once; launch it many times with
 * spawn() or run(). Not safe against a rootfs replaced since prepare():
 * such launches fail (ESTALE, ELOOP), and a new prepare() is needed.
 */
export class PreparedContainer {
  private readonly spec: Spec;
  private readonly options: PrepareOptions;
  private readonly base: LaunchBase;
  private readonly cgroup: 'required' | 'wanted' | false;
  private rootfsFd: number | undefined;
  /** Per distinct (cwd, binds): the mount plan, and the launch plan made from it, converted to C once. */
  private readonly mountPlans = new Map<string, LaunchMounts & { plan?: LaunchPlan; compiled?: object }>();
  private readonly execPaths = new Map<string, string>();
  private readonly counts: PreparedStats = { validations: 0, mountPlans: 0, execLookups: 0, launches: 0 };

  /** @internal use prepare() */
  constructor(spec: Spec, options: PrepareOptions) {
    for (const k of ['joinPid', 'startGate', 'consoleSocket', 'beforePivot'])
      if ((options as Record<string, unknown>)[k] !== undefined)
        throw SpecError.inOption(k, 'is not supported by prepare() (use spawn())');
    // Our own copy: later changes of the caller's objects do not reach the launches.
    this.spec = structuredClone(spec);
    this.options = { ...options };
    this.cgroup = cgroupWanted(this.spec);
    if (this.cgroup && this.options.init === false)
      throw SpecError.inOption('init', 'a cgroup needs the init (init: false was given)');
    if (this.cgroup) this.options.init = true;
    this.base = planLaunchBase(this.spec, this.options);
    this.counts.validations++;
    // The default launch's plan now: a spec whose mounts or executable are
    // wrong fails at prepare(), not at the first launch.
    this.mountsFor(posix.normalize(this.spec.process!.cwd), []);
    const env = this.spec.process!.env ?? [`PATH=${DEFAULT_PATH}`];
    this.execFor(posix.normalize(this.spec.process!.cwd), [], this.spec.process!.args[0], env);
    try {
      this.rootfsFd = openSync(this.base.root.rootfs, fsc.O_RDONLY | fsc.O_DIRECTORY); // close-on-exec: Node's own default;
    } catch (e) {
      throw SpecError.inOption('root.path', `cannot open ${this.base.root.rootfs}: ${(e as Error).message}`);
    }
  }

  /** How much planning this template has done so far. */
  get stats(): Readonly<PreparedStats> {
    return { ...this.counts };
  }

  /** The rootfs this template launches (the directory pinned at prepare()). */
  get rootfs(): string {
    return this.base.root.rootfs;
  }

  private mountsFor(cwd: string, binds: Mount[]): LaunchMounts & { plan?: LaunchPlan; compiled?: object } {
    const key = mountKey(cwd, binds);
    const hit = this.mountPlans.get(key);
    if (hit) return hit;
    const spec: Spec = {
      ...this.spec,
      mounts: [...(this.spec.mounts ?? []), ...binds],
      process: { ...this.spec.process!, cwd },
    };
    let m: LaunchMounts;
    try {
      m = planLaunchMounts(this.base, spec, this.options);
    } catch (e) {
      // A bind at fault is named as the caller gave it, not as /mounts/N.
      const n = this.spec.mounts?.length ?? 0;
      const at = e instanceof SpecError ? /^\/mounts\/(\d+)/.exec(e.pointer) : null;
      if (at && Number(at[1]) >= n)
        throw SpecError.inOption(`binds[${Number(at[1]) - n}]`, (e as Error).message.replace(/^[^:]*: /, ''));
      throw e;
    }
    this.counts.mountPlans++;
    return remember(this.mountPlans, key, m);
  }

  private execFor(cwd: string, binds: Mount[], arg0: string, env: string[]): string {
    const path = arg0.includes('/') ? '' : (env.find((e) => e.startsWith('PATH=')) ?? '-');
    const key = `${mountKey(cwd, binds)}\0${arg0}\0${path}`;
    const hit = this.execPaths.get(key);
    if (hit !== undefined) return hit;
    const m = this.mountsFor(cwd, binds);
    const found = findExecutable(m.b, arg0, env, m.cwd);
    this.counts.execLookups++;
    return remember(this.execPaths, key, found);
  }

  /** Launch with this launch's changes; as spawn() for everything else. */
  spawn(changes: PreparedSpawnOptions = {}): Container {
    const start = changes.timing ? Number(hrtime.bigint()) : 0;
    if (this.rootfsFd === undefined) throw new Error('this prepared container was closed: prepare() it again');
    for (const k of PLAN_KEYS)
      if ((changes as Record<string, unknown>)[k] !== undefined)
        throw SpecError.inOption(k, 'is fixed at prepare(); give it there');
    const proc = this.spec.process!;
    const args = changes.args === undefined ? proc.args : checkStrings(changes.args, 'args', true);
    if (args[0] === '') throw SpecError.inOption('args[0]', 'must name an executable');
    const env =
      changes.env === undefined ? (proc.env ?? [`PATH=${DEFAULT_PATH}`]) : checkStrings(changes.env, 'env', false);
    if (changes.env !== undefined)
      env.forEach((e, i) => {
        if (!e.includes('=')) throw SpecError.inOption(`env[${i}]`, `must be NAME=VALUE, got ${JSON.stringify(e)}`);
      });
    const cwd = posix.normalize(changes.cwd === undefined ? proc.cwd : checkAbsolute(changes.cwd, 'cwd'));
    let hostname = this.spec.hostname;
    if (changes.hostname !== undefined) {
      if (typeof changes.hostname !== 'string' || Buffer.byteLength(changes.hostname) > 64)
        throw SpecError.inOption('hostname', 'must be a string of at most 64 bytes');
      if (!this.base.root.namespaces.has('uts'))
        throw SpecError.inOption('hostname', 'setting a hostname needs a uts namespace in the spec');
      hostname = changes.hostname;
    }
    const binds = bindMounts(changes.binds);
    const mounts = this.mountsFor(cwd, binds);
    let execPath: string;
    try {
      execPath = this.execFor(cwd, binds, args[0], env);
    } catch (e) {
      // An executable given for this launch is named as the caller gave it.
      if (changes.args === undefined || !(e instanceof SpecError) || e.pointer !== '/process/args/0') throw e;
      throw new SpecError('args[0]', e.message.replace(/^[^:]*: /, ''), { code: e.code });
    }
    const specOf = (): Spec => ({ ...this.spec, hostname, process: { ...proc, args, env, cwd } });
    if (!mounts.compiled) {
      // The first launch with these mounts: the whole plan (with the spec's
      // own hostname), converted to C once; later launches send the addon
      // only what they change in it.
      const full = planLaunchFinish(
        this.base,
        mounts,
        { ...this.spec, process: { ...proc, args, env, cwd } },
        execPath,
        this.options,
      );
      mounts.plan = full.plan;
      mounts.compiled = loadBinding().compilePlan(full.plan);
    }
    const override: PlanOverride = {
      execPath,
      args,
      env,
      ...(changes.hostname !== undefined ? { hostname: changes.hostname } : {}),
    };
    const prepared: PreparedLaunch = {
      plan: { ...mounts.plan!, ...override },
      // What a failure record means, worked out only when there is one.
      describeFailure: (rec) =>
        planLaunchFinish(this.base, mounts, specOf(), execPath, this.options).describeFailure(rec),
      compiled: { plan: mounts.compiled, override },
    };
    const options: SpawnOptions = { ...this.options, ...changes };
    this.counts.launches++;
    const started = changes.timing ? { start, planned: Number(hrtime.bigint()) } : undefined;
    return launchPlanned(this.spec, prepared, options, this.cgroup, this.rootfsFd, started);
  }

  /** Launch and wait for the exit, as run(). */
  run(changes: PreparedSpawnOptions & { input?: string | Buffer } = {}): Promise<RunResult> {
    return awaitRun((o) => this.spawn(o), changes);
  }

  /** Release the pinned rootfs; later launches throw. Launches in flight are not affected. */
  close(): void {
    if (this.rootfsFd !== undefined) closeSync(this.rootfsFd);
    this.rootfsFd = undefined;
  }
}

/**
 * Validate and plan a container once, for many launches (see
 * PreparedContainer). Throws SpecError for a bad spec, as spawn() would.
 */
export function prepare(spec: Spec, options: PrepareOptions = {}): PreparedContainer {
  return new PreparedContainer(spec, options);
}
