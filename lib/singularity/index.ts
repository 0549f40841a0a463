// The Apptainer-compatible API: exec, runscript, shell, testImage. Each
// compiles its options into an OCI spec (compile.ts), evaluates the image's
// environment scripts, and launches through the same spawn() as everything.
// Each resolves once the payload runs, with the started container (as
// spawn(), not as run(), which waits for the exit).
//
// "run" names one thing in the library: run(spec) starts a container and
// waits for its exit, as `crun run` and `nodularity run-bundle` do. Apptainer's
// `run` verb, which starts the image's runscript, is runscript() here (the CLI
// verb keeps Apptainer's name); runImage() is its deprecated old name.
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { spawn, type Container } from '../container.js';
import { SpecError } from '../errors.js';
import { compileLaunch, type ActionMode, type CompiledLaunch, type ExecOptions } from './compile.js';
import { applyUserLayers, envFromList, envToList, SHELL_VARIABLES, type EnvMap } from './environment.js';
import { launchHolds, presetImage, type ResolvedRunImage } from './image.js';
import type { SpawnOptions } from '../container.js';
import { checkJoinable, Instance, instanceFromRef, joinSpec } from './instance.js';
import { preparedImage, type PreparedImage } from './prepared.js';

export type { ExecOptions, ActionMode, CompiledLaunch } from './compile.js';
export type { BindSpec } from './binds.js';
export type { ResolvedRunImage } from './image.js';
export type { PreparedImage, PreparedImageLaunch } from './prepared.js';
export { parseBindList, parseMountSpec } from './binds.js';
export { compileLaunch } from './compile.js';
export {
  startInstance,
  getInstance,
  listInstances,
  stopInstance,
  Instance,
  MAX_NAME as MAX_INSTANCE_NAME,
  type InstanceOptions,
  type InstanceStoreOptions,
  type StopOptions as InstanceStopOptions,
  type StopResult as InstanceStopResult,
} from './instance.js';

/** A started container, with the image it runs. */
export interface ImageContainer extends Container {
  image: ResolvedRunImage;
  /** The payload's argv and environment, as launched. */
  argv: string[];
  env: string[];
  /** What was not as asked but did not stop the launch (e.g. a missing --pwd), for the CLI to show. */
  warnings: string[];
  /** What Apptainer would say as INFO (a fallback or default taken), for the CLI to show. */
  infos: string[];
}

/**
 * What is kept of the environment scripts' output, per stream: the `env -0`
 * dump on stdout and their own output on stderr. An image's script printing
 * without end (`yes`) once grew the runtime to 8 GB within the time bound;
 * past the cap the evaluation is killed at once. A real environment is far
 * smaller: execve takes at most 128 KiB per variable.
 */
export const ENV_SCRIPT_OUTPUT_CAP = 1 << 20;

/**
 * Launches between compile (session files made in $TMPDIR) and the payload's
 * start, with what undoes them. A CLI that is sent a signal in that window
 * calls {@link abortPendingLaunches} before it dies.
 */
interface PendingLaunch {
  dispose(): void;
  kill?: () => void;
  forward?: (sig: NodeJS.Signals) => void;
}
const pending = new Set<PendingLaunch>();

/**
 * A signal while a payload's container is being cloned (spawn() called, its
 * 'spawn' not yet seen): hand it to that container (a kill before the spawn
 * is queued) instead of aborting, so the payload gets it exactly once, as it
 * would a moment later through the CLI's forwarding. True when some launch
 * took it; the caller then must not die of it.
 */
export function forwardToStartingLaunches(sig: NodeJS.Signals): boolean {
  let taken = false;
  for (const p of pending) {
    if (!p.forward) continue;
    p.forward(sig);
    taken = true;
  }
  return taken;
}

/**
 * Synchronously kill any environment-script evaluation in progress and
 * remove the session files of launches not started yet: for a signal handler
 * that is about to end the process.
 */
export function abortPendingLaunches(): void {
  for (const p of pending) {
    if (p.forward) continue; // its container is starting: forwardToStartingLaunches' case
    p.kill?.();
    p.dispose();
  }
  pending.clear();
}

/**
 * Run /.singularity.d/env/*.sh in the container with the image's own shell,
 * in lexical order, globbing off (`set -f`, cwd /), output to stderr, bounded
 * in time and in output ({@link ENV_SCRIPT_OUTPUT_CAP}); return the
 * environment they leave (`env -0`).
 */
async function evaluateEnvScripts(c: CompiledLaunch, input: EnvMap, self: PendingLaunch): Promise<EnvMap> {
  if (c.envScripts.length === 0) return input;
  const spec = structuredClone(c.spec);
  spec.process!.args = [
    '/bin/sh',
    '-c',
    'set -f; for f do . "$f"; done >&2; exec env -0',
    'nodularity-env',
    ...c.envScripts,
  ];
  spec.process!.env = envToList(input);
  spec.process!.cwd = '/';
  const where = `${c.image.ref}:/.singularity.d/env`;
  const outer = c.spawnOptions.signal;
  outer?.throwIfAborted();
  const container = spawn(spec, {
    ...c.spawnOptions,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: c.envScriptTimeout,
    killSignal: 'SIGKILL',
    signal: undefined,
  });
  const kill = () => {
    container.kill('SIGKILL');
  };
  self.kill = kill;
  outer?.addEventListener('abort', kill, { once: true });
  let overflow: string | undefined;
  const keep = (s: Readable | null, name: string): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    return new Promise((resolve) => {
      if (!s) return resolve(Buffer.alloc(0));
      s.on('data', (d: Buffer) => {
        if (overflow) return;
        bytes += d.length;
        if (bytes > ENV_SCRIPT_OUTPUT_CAP) {
          overflow = name;
          chunks.length = 0;
          kill();
          s.destroy();
          return;
        }
        chunks.push(d);
      });
      s.once('close', () => resolve(Buffer.concat(chunks)));
    });
  };
  const [stdout, stderr] = [keep(container.stdout, 'environment (env -0)'), keep(container.stderr, 'output (stderr)')];
  try {
    const r = await container.exited;
    const [out, errOut] = await Promise.all([stdout, stderr]);
    outer?.throwIfAborted();
    if (overflow)
      throw SpecError.inOption(
        where,
        `the environment scripts' ${overflow} exceeded ${ENV_SCRIPT_OUTPUT_CAP / (1 << 20)} MiB, the cap on what is kept of it; stopped them (${c.envScripts.join(' ')})`,
      );
    if (r.timedOut)
      throw SpecError.inOption(
        where,
        `the environment scripts did not finish within ${c.envScriptTimeout / 1000} s (${c.envScripts.join(' ')})`,
      );
    if (r.exitCode !== 0) {
      const err = errOut.toString().trim().split('\n').slice(-5).join('\n');
      throw SpecError.inOption(
        where,
        `the environment scripts failed with status ${r.exitCode}${err ? `:\n${err}` : ''}`,
      );
    }
    const env = envFromList(out.toString().split('\0').filter(Boolean));
    // The evaluating shell's own variables are not the payload's.
    for (const k of SHELL_VARIABLES) if (!input.has(k)) env.delete(k);
    return env;
  } finally {
    self.kill = undefined;
    outer?.removeEventListener('abort', kill);
  }
}

/** What a caller inside the library adds to a launch: instances (instance.ts). */
export interface LaunchHooks {
  /** Called with the compiled launch before the image's scripts run (they run with its spawnOptions). */
  prepare?: (c: CompiledLaunch) => void;
  /** Spawn options for the payload's container only (not the scripts' evaluation). */
  launch?: Partial<SpawnOptions>;
  /** Called (synchronously) as soon as the payload's container is spawned. */
  spawned?: (c: Container) => void;
}

/** The image, or `instance://NAME` / an Instance: joined (its namespaces, its security). */
export type ImageOrInstance = string | Instance;

async function start(
  image: ImageOrInstance,
  argv: string[],
  options: ExecOptions,
  mode: ActionMode,
  hooks: LaunchHooks = {},
): Promise<ImageContainer | null> {
  if (typeof image === 'string' && image.startsWith('instance://')) image = await instanceFromRef(image);
  if (image instanceof Instance) {
    const inst = image;
    // A process joining an instance joins its cgroup (spawn's joinPid): the instance's limits are its own.
    if (options.resources)
      throw SpecError.inOption(
        'resources',
        `a process run in instance ${inst.name} is under the instance's limits (its cgroup); set them when the instance starts`,
      );
    checkJoinable(inst);
    const join: LaunchHooks = {
      prepare: (c) => {
        joinSpec(c.spec, inst.record);
        // The instance's mounts are not the image's: --pwd is looked up in
        // the live instance when the process joins (an error there if missing).
        if (options.pwd !== undefined) {
          c.spec.process!.cwd = posix.resolve('/', options.pwd);
          const note = `--pwd ${options.pwd} is not a directory in the container`;
          c.warnings = c.warnings.filter((w) => !w.startsWith(note));
        }
        c.spawnOptions = { ...c.spawnOptions, joinPid: inst.pid };
        hooks.prepare?.(c);
      },
      launch: hooks.launch,
    };
    // A contained instance has no host cwd inside: start where exec -c would.
    const o = inst.record.contain && options.pwd === undefined ? { ...options, contain: true } : options;
    return presetImage.run(inst.image, () => start(inst.image.ref, argv, o, mode, join));
  }
  // The image's cache entry is held from its resolution until the container
  // exits; every way out before the container exists releases it.
  const holds: NonNullable<ResolvedRunImage['hold']>[] = [];
  const release = () => {
    for (const h of holds.splice(0)) void h.release();
  };
  let c: CompiledLaunch;
  try {
    c = await launchHolds.run(holds, () => compileLaunch(image, argv, options, mode));
  } catch (e) {
    release();
    throw e;
  }
  hooks.prepare?.(c);
  for (const w of c.warnings) options.onNotice?.('WARNING', w);
  for (const i of c.infos) options.onNotice?.('INFO', i);
  const self: PendingLaunch = { dispose: c.dispose };
  pending.add(self);
  let started: ImageContainer;
  try {
    if (!c.runnable) {
      pending.delete(self);
      c.dispose();
      release();
      return null;
    }
    const imageEnv = await evaluateEnvScripts(c, c.baseEnv, self);
    const env = envToList(applyUserLayers(imageEnv, c.hostEnv, c.envFile, c.envOption));
    c.spec.process!.env = env;
    const container = spawn(c.spec, { ...c.spawnOptions, ...hooks.launch });
    self.forward = (sig) => {
      try {
        container.kill(sig);
      } catch {
        /* already ended */
      }
    };
    const done = () => {
      pending.delete(self);
      c.dispose();
    };
    container.spawned.then(
      () => hooks.spawned?.(container),
      () => {},
    );
    container.spawned.then(done, done);
    container.exited.then(release, release);
    started = Object.assign(container, {
      image: c.image,
      argv: c.spec.process!.args,
      env,
      warnings: c.warnings,
      infos: c.infos,
    });
  } catch (e) {
    pending.delete(self);
    c.dispose();
    release();
    throw e;
  }
  // Resolve once the payload runs, so c.pid is set (a failed launch rejects here).
  await started.spawned;
  return started;
}

/** @internal a launch with hooks (instances). */
export const launchImage = start;

/**
 * `exec IMAGE ARGV` resolved, compiled and planned once, its environment
 * scripts evaluated once, for many launches (a pilot's short payloads from
 * one image): `p.run({ args, env, cwd, binds })` per payload, `p.close()` at
 * the end. What a launch may change is `PreparedImageLaunch`; anything else
 * (the image, binds given here, limits) needs a new prepareExec().
 */
export async function prepareExec(image: string, argv: string[], options: ExecOptions = {}): Promise<PreparedImage> {
  if (typeof image !== 'string' || image.startsWith('instance://'))
    throw SpecError.inOption('image', 'a running instance is joined by exec(), not prepared: prepare an image');
  const holds: NonNullable<ResolvedRunImage['hold']>[] = [];
  const release = () => {
    for (const h of holds.splice(0)) void h.release();
  };
  let c: CompiledLaunch;
  try {
    c = await launchHolds.run(holds, () => compileLaunch(image, argv, options, 'exec'));
  } catch (e) {
    release();
    throw e;
  }
  for (const w of c.warnings) options.onNotice?.('WARNING', w);
  for (const i of c.infos) options.onNotice?.('INFO', i);
  try {
    const imageEnv = await evaluateEnvScripts(c, c.baseEnv, { dispose: c.dispose });
    return preparedImage(c, applyUserLayers(imageEnv, c.hostEnv, c.envFile, c.envOption), release);
  } catch (e) {
    c.dispose();
    release();
    throw e;
  }
}

/** Run `argv` in the image (`apptainer exec IMAGE CMD...`), or in a running instance (`instance://NAME`). */
export async function exec(image: ImageOrInstance, argv: string[], options: ExecOptions = {}): Promise<ImageContainer> {
  return (await start(image, argv, options, 'exec'))!;
}

/**
 * Start the image's runscript, else its Entrypoint + Cmd (`apptainer run IMAGE
 * [ARGS]`); resolves with the started container, as exec() does.
 */
export async function runscript(
  image: ImageOrInstance,
  args: string[] = [],
  options: ExecOptions = {},
): Promise<ImageContainer> {
  return (await start(image, args, options, 'run'))!;
}

/**
 * @deprecated Renamed {@link runscript} (same arguments, same result): this
 * name read as run() on an image, but run() waits for the exit and this
 * resolves with the started container. Kept as an alias; it will be removed
 * in a later major version.
 */
export const runImage: typeof runscript = runscript;

/**
 * An interactive shell in the image (`apptainer shell IMAGE`); stdio defaults
 * to inherit. `shell` when it is executable there, else /bin/bash --norc when
 * the image has it, else /bin/sh (Apptainer's order).
 */
export async function shell(
  image: ImageOrInstance,
  options: ExecOptions & { shell?: string } = {},
): Promise<ImageContainer> {
  return (await start(image, options.shell ? [options.shell] : [], { stdio: 'inherit', ...options }, 'shell'))!;
}

/** Run the image's test script (`apptainer test IMAGE`); null when it has none. */
export async function testImage(image: ImageOrInstance, options: ExecOptions = {}): Promise<ImageContainer | null> {
  return start(image, [], options, 'test');
}
