// The Apptainer front end's prepared launch: `exec IMAGE CMD` resolved,
// compiled and planned once, its environment scripts evaluated once, then
// launched many times with per-launch arguments, variables, working directory
// and binds. A pilot running thousands of short payloads from one image pays
// the image resolution, the session files, the env-script container and the
// plan once (lib/prepared.ts does the spec's part).
import { awaitRun, type Container, type RunResult } from '../container.js';
import { SpecError } from '../errors.js';
import { prepare, type PreparedContainer, type PreparedSpawnOptions } from '../prepared.js';
import type { CompiledLaunch } from './compile.js';
import { envOption, envToList, type EnvMap } from './environment.js';
import type { ResolvedRunImage } from './image.js';

/** What may change from one launch of a prepared image to the next, and how it is run. */
export interface PreparedImageLaunch extends Omit<PreparedSpawnOptions, 'env' | 'hostname'> {
  /**
   * Variables set for this launch over the environment prepared (the image's,
   * with the host's and --env layers applied), as --env would set them.
   */
  env?: Record<string, string>;
}

/** The parts of a compiled launch's spawn options that belong to each launch, not to the plan. */
const PER_LAUNCH = ['stdio', 'signal', 'timeout', 'killSignal', 'forceKillAfterDelay'] as const;

/**
 * An image prepared for many launches (prepareExec()). Holds the image's
 * cache entry, the session files (/etc/passwd, /etc/group) and the pinned
 * rootfs until close(). A changed image, or changed options other than what
 * a launch may change, needs a new prepareExec().
 */
export class PreparedImage {
  /** The image as resolved at prepare (a cached image's digest included). */
  readonly image: ResolvedRunImage;
  /** The payload's argv when a launch gives none. */
  readonly argv: string[];
  /** What was not as asked but did not stop the launch, as exec()'s. */
  readonly warnings: string[];
  /** What Apptainer would say as INFO, as exec()'s. */
  readonly infos: string[];
  private readonly env: EnvMap;
  private readonly defaults: PreparedImageLaunch;
  private readonly release: () => void;
  private closed = false;
  /** Launches whose container has not exited yet: they need the session files (until started) and the cache hold. */
  private inFlight = 0;
  private released = false;

  /** @internal use prepareExec() */
  constructor(
    private readonly c: CompiledLaunch,
    env: EnvMap,
    private readonly template: PreparedContainer,
    release: () => void,
  ) {
    this.image = c.image;
    this.argv = [...c.spec.process!.args];
    this.warnings = c.warnings;
    this.infos = c.infos;
    this.env = env;
    this.release = release;
    const d: Record<string, unknown> = {};
    for (const k of PER_LAUNCH) if (c.spawnOptions[k] !== undefined) d[k] = c.spawnOptions[k];
    this.defaults = d as PreparedImageLaunch;
  }

  /** The environment a launch gets without `env` changes, as NAME=VALUE. */
  get environment(): string[] {
    return envToList(this.env);
  }

  /** Launch `args` (default: the argv prepared) with this launch's changes; resolves like spawn(). */
  spawn(launch: PreparedImageLaunch & { args?: string[] } = {}): Container {
    if (this.closed) throw new Error('this prepared image was closed: prepareExec() it again');
    const { env, ...rest } = launch;
    return this.track(this.template.spawn({ ...this.defaults, ...rest, env: this.envWith(env) }));
  }

  /** Launch and wait for the exit, as run(). */
  run(launch: PreparedImageLaunch & { args?: string[]; input?: string | Buffer } = {}): Promise<RunResult> {
    if (this.closed) return Promise.reject(new Error('this prepared image was closed: prepareExec() it again'));
    return awaitRun((o: PreparedImageLaunch & { args?: string[] }) => this.spawn(o), { ...this.defaults, ...launch });
  }

  /**
   * Release the cache hold, the session files and the pinned rootfs. New
   * launches throw; launches in flight are not affected: what they still
   * need (the session files they bind, the cache entry) goes once the last
   * of them has exited.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.template.close();
    this.releaseIfIdle();
  }

  /** Count a launch until its container has exited (or failed to start), as exec() holds the image until then. */
  private track(c: Container): Container {
    this.inFlight++;
    const done = () => {
      this.inFlight--;
      this.releaseIfIdle();
    };
    c.exited.then(done, done);
    return c;
  }

  private releaseIfIdle(): void {
    if (!this.closed || this.inFlight > 0 || this.released) return;
    this.released = true;
    this.c.dispose();
    this.release();
  }

  private envWith(extra: Record<string, string> | undefined): string[] {
    if (extra === undefined) return envToList(this.env);
    if (typeof extra !== 'object' || extra === null || Array.isArray(extra))
      throw SpecError.inOption('env', 'must be an object of NAME: VALUE strings');
    for (const [k, v] of Object.entries(extra))
      if (typeof v !== 'string' || v.includes('\0'))
        throw SpecError.inOption(`env.${k}`, 'must be a string without NUL bytes');
    // Names checked and set as --env sets them.
    const m = new Map(this.env);
    for (const [k, v] of envOption(extra, 'env')) m.set(k, v);
    return envToList(m);
  }
}

/**
 * @internal lib/singularity/index.ts builds the PreparedImage: it owns the
 * compile, the holds and the env-script evaluation that exec() uses too.
 */
export function preparedImage(c: CompiledLaunch, env: EnvMap, release: () => void): PreparedImage {
  const planOptions: Record<string, unknown> = { ...c.spawnOptions };
  for (const k of PER_LAUNCH) delete planOptions[k];
  const template = prepare(c.spec, planOptions);
  return new PreparedImage(c, env, template, release);
}
