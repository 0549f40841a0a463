// The Apptainer-compatible API: exec, runImage, shell, testImage. Each
// compiles its options into an OCI spec (compile.ts), evaluates the image's
// environment scripts, and launches through the same spawn() as everything.
import { run, spawn, type Container } from '../container.js';
import { SpecError } from '../errors.js';
import { compileLaunch, type ActionMode, type CompiledLaunch, type ExecOptions } from './compile.js';
import { applyUserLayers, envFromList, envToList, SHELL_VARIABLES, type EnvMap } from './environment.js';
import type { ResolvedRunImage } from './image.js';

export type { ExecOptions, ActionMode, CompiledLaunch } from './compile.js';
export type { BindSpec } from './binds.js';
export type { ResolvedRunImage } from './image.js';
export { parseBindList, parseMountSpec } from './binds.js';
export { compileLaunch } from './compile.js';

/** A started container, with the image it runs. */
export interface ImageContainer extends Container {
  image: ResolvedRunImage;
  /** The payload's argv and environment, as launched. */
  argv: string[];
  env: string[];
  /** What was not as asked but did not stop the launch (e.g. a missing --pwd), for the CLI to show. */
  warnings: string[];
}

/**
 * Run /.singularity.d/env/*.sh in the container with the image's own shell,
 * in lexical order, globbing off (`set -f`, cwd /), output to stderr, bounded
 * in time; return the environment they leave (`env -0`).
 */
async function evaluateEnvScripts(c: CompiledLaunch, input: EnvMap): Promise<EnvMap> {
  if (c.envScripts.length === 0) return input;
  const spec = structuredClone(c.spec);
  spec.process!.args = ['/bin/sh', '-c', 'set -f; for f do . "$f"; done >&2; exec env -0', 'nodularity-env', ...c.envScripts];
  spec.process!.env = envToList(input);
  spec.process!.cwd = '/';
  const r = await run(spec, {
    ...c.spawnOptions, stdio: ['ignore', 'pipe', 'pipe'], timeout: c.envScriptTimeout, killSignal: 'SIGKILL', signal: undefined,
  });
  const where = `${c.image.ref}:/.singularity.d/env`;
  if (r.timedOut) throw new SpecError(where, `the environment scripts did not finish within ${c.envScriptTimeout / 1000} s (${c.envScripts.join(' ')})`);
  if (r.exitCode !== 0) {
    const err = String(r.stderr ?? '').trim().split('\n').slice(-5).join('\n');
    throw new SpecError(where, `the environment scripts failed with status ${r.exitCode}${err ? `:\n${err}` : ''}`);
  }
  const out = envFromList(String(r.stdout ?? '').split('\0').filter(Boolean));
  // The evaluating shell's own variables are not the payload's.
  for (const k of SHELL_VARIABLES) if (!input.has(k)) out.delete(k);
  return out;
}

async function start(image: string, argv: string[], options: ExecOptions, mode: ActionMode): Promise<ImageContainer | null> {
  const c = await compileLaunch(image, argv, options, mode);
  try {
    if (!c.runnable) {
      c.dispose();
      return null;
    }
    const imageEnv = await evaluateEnvScripts(c, c.baseEnv);
    const env = envToList(applyUserLayers(imageEnv, c.hostEnv, c.envFile, c.envOption));
    c.spec.process!.env = env;
    const container = spawn(c.spec, c.spawnOptions);
    container.spawned.then(c.dispose, c.dispose);
    return Object.assign(container, { image: c.image, argv: c.spec.process!.args, env, warnings: c.warnings });
  } catch (e) {
    c.dispose();
    throw e;
  }
}

/** Run `argv` in the image (`apptainer exec IMAGE CMD...`). */
export async function exec(image: string, argv: string[], options: ExecOptions = {}): Promise<ImageContainer> {
  return (await start(image, argv, options, 'exec'))!;
}

/** Run the image's runscript, else its Entrypoint + Cmd (`apptainer run IMAGE [ARGS]`). */
export async function runImage(image: string, args: string[] = [], options: ExecOptions = {}): Promise<ImageContainer> {
  return (await start(image, args, options, 'run'))!;
}

/** An interactive shell in the image (`apptainer shell IMAGE`); stdio defaults to inherit. */
export async function shell(image: string, options: ExecOptions & { shell?: string } = {}): Promise<ImageContainer> {
  return (await start(image, options.shell ? [options.shell] : [], { stdio: 'inherit', ...options }, 'shell'))!;
}

/** Run the image's test script (`apptainer test IMAGE`); null when it has none. */
export async function testImage(image: string, options: ExecOptions = {}): Promise<ImageContainer | null> {
  return start(image, [], options, 'test');
}
