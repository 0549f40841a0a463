// Launchers: one async function per way of starting the payload, all called
// from the same Node process so each pays the same Node-side costs. A
// launch resolves when the payload has exited 0 and rejects, with the
// reason, otherwise.
import { spawn as cpSpawn, spawnSync } from 'node:child_process';
import type { ExitResult, SpawnOptions } from '../container.js';
import type { Spec } from '../oci/spec.js';
import { benchSpec, type Network, type RuntimeProbe } from './setup.js';
import { defaultSeccompProfile } from '../seccomp/default.js';

/** The part of the library a driver needs; bench/index.mjs may pass another checkout's build (--dist, --baseline). */
export interface NodularityModule {
  run(spec: Spec, options?: SpawnOptions & { stdio?: unknown }): Promise<Pick<ExitResult, 'exitCode' | 'signal'>>;
  spawn(
    spec: Spec,
    options?: SpawnOptions,
  ): { exited: Promise<ExitResult>; spawned: Promise<void>; cloneMicros?: number };
  prepareLaunch?(spec: Spec, options?: object): unknown;
  /** Builds with prepared launches (issue 19) export it; the nodularity-prepared driver needs it. */
  prepare?(
    spec: Spec,
    options?: object,
  ): {
    run(o?: object): Promise<Pick<ExitResult, 'exitCode' | 'signal'>>;
    spawn(o?: object): { exited: Promise<ExitResult>; timing?: unknown };
  };
  /** Builds with seccomp (issue 15) export it; the nodularity-seccomp driver needs one. */
  defaultSeccompProfile?(): unknown;
}

/** What the drivers are built from: the image, the payload and the runtimes probed. */
export interface DriverContext {
  rootfs: string;
  args: string[];
  network: Network;
  uid: number;
  runtimes: Record<string, RuntimeProbe>;
  /** bench/floor/floor.c, compiled (floor.ts), when the floor driver or section is asked for. */
  floor?: string | null;
  /** Why there is no floor binary. */
  floorError?: string;
}

export const LABELS: Record<string, string> = {
  nodularity: 'nodularity',
  'nodularity-netns': 'nodularity +netns',
  'nodularity-noinit': 'nodularity init off',
  'nodularity-parentmaps': 'nodularity parent writes maps',
  'nodularity-seccomp': 'nodularity +seccomp (default profile)',
  'nodularity-prepared': 'nodularity prepared (template.run)',
  'nodularity-baseline': 'nodularity baseline build',
  host: 'host (no container)',
  floor: 'floor.c via child_process',
  bwrap: 'bwrap',
  'ch-run': 'ch-run',
  crun: 'crun',
  runc: 'runc',
  apptainer: 'apptainer',
};

export interface Driver {
  id: string;
  label: string;
  status: 'ok' | 'missing' | 'failed';
  detail: string | null;
  version?: string | null;
  note?: string | null;
  launch: (() => Promise<void>) | null;
}

export class LaunchError extends Error {
  override name = 'LaunchError';
}

/** A launch that takes this long is hung, not slow: the driver fails with that reason. */
export const LAUNCH_TIMEOUT_MS = 30_000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new LaunchError(`${what}: no exit after ${LAUNCH_TIMEOUT_MS / 1000} s`)),
      LAUNCH_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Spec and options of a nodularity variant. The id maps are the library's
 * default (the caller's own ids, written by the child itself after a
 * vfork-style clone) except in the parent-maps variant: as root a
 * 65536-ID range makes the parent write the maps while the child waits.
 */
export function nodularityArgs(ctx: DriverContext, id: string): { spec: Spec; options: SpawnOptions } {
  const net = id === 'nodularity-netns' || (id === 'nodularity' && ctx.network === 'none');
  const spec = benchSpec(ctx.rootfs, { net, maps: false, args: ctx.args });
  if (id === 'nodularity-parentmaps') {
    spec.linux!.uidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
    spec.linux!.gidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
  }
  // The default profile, the same frozen object each launch, as createSpec gives it.
  if (id === 'nodularity-seccomp') spec.linux!.seccomp = defaultSeccompProfile();
  return { spec, options: { stdio: 'ignore', init: id !== 'nodularity-noinit' } };
}

function nodularityLauncher(mod: NodularityModule, ctx: DriverContext, id: string): () => Promise<void> {
  const { spec, options } = nodularityArgs(ctx, id);
  // The prepared variant: the default container, validated and planned once.
  const { stdio, ...planOptions } = options;
  const tpl = id === 'nodularity-prepared' ? mod.prepare!(spec, planOptions) : undefined;
  return async () => {
    const res = await withTimeout(tpl ? tpl.run({ stdio }) : mod.run(spec, options), `nodularity ${id}`);
    if (res.exitCode !== 0)
      throw new LaunchError(
        `${ctx.args.join(' ')} in the container: ${res.signal ? `killed by ${res.signal}` : `exit code ${res.exitCode}`}`,
      );
  };
}

/**
 * A launcher for an external command. Arguments holding {{id}} get a fresh
 * container id per launch (crun and runc keep state by id). On failure the
 * command is rerun once with its output captured, so the report says why.
 */
export function execLauncher(cmd: string, argsTemplate: string[], env?: NodeJS.ProcessEnv): () => Promise<void> {
  const idSlots = argsTemplate.map((a, i) => (a.includes('{{id}}') ? i : -1)).filter((i) => i >= 0);
  let seq = 0;
  const argsFor = () => {
    if (idSlots.length === 0) return argsTemplate;
    const args = argsTemplate.slice();
    const id = `nb-${process.pid}-${seq++}`;
    for (const i of idSlots) args[i] = argsTemplate[i].replaceAll('{{id}}', id);
    return args;
  };
  return () =>
    new Promise<void>((resolve, reject) => {
      const args = argsFor();
      const child = cpSpawn(cmd, args, { stdio: 'ignore', ...(env ? { env } : {}) });
      const timer = setTimeout(() => child.kill('SIGKILL'), LAUNCH_TIMEOUT_MS);
      child.once('error', (e) => reject(new LaunchError(`${cmd}: ${e.message}`)));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve();
        if (signal === 'SIGKILL')
          return reject(
            new LaunchError(`${[cmd, ...args].join(' ')}: no exit after ${LAUNCH_TIMEOUT_MS / 1000} s, killed`),
          );
        const again = spawnSync(cmd, argsFor(), { encoding: 'utf8', timeout: 30_000, ...(env ? { env } : {}) });
        const why = (again.stderr || '').trim().split('\n').slice(-3).join(' | ');
        reject(
          new LaunchError(
            `${[cmd, ...args].join(' ')}: ${signal ? 'killed by ' + signal : 'exit ' + code}${why ? ': ' + why : ''}`,
          ),
        );
      });
    });
}

/**
 * Build the drivers asked for. A driver that cannot run here keeps its
 * status and reason so the report shows it instead of dropping it.
 */
export function makeDrivers(
  ctx: DriverContext,
  ids: readonly string[],
  nod: NodularityModule | { error: string },
): Driver[] {
  return ids.map((id) => {
    const d: Driver = { id, label: LABELS[id] ?? id, status: 'ok', detail: null, launch: null };
    if (id.startsWith('nodularity')) {
      if ('error' in nod) Object.assign(d, { status: 'missing', detail: nod.error });
      else if (id === 'nodularity-parentmaps' && ctx.uid !== 0)
        Object.assign(d, {
          status: 'missing',
          detail: 'needs root (unprivileged, ranges go through newuidmap and /etc/subuid)',
        });
      else if (id === 'nodularity-prepared' && typeof nod.prepare !== 'function')
        Object.assign(d, { status: 'missing', detail: 'this build has no prepare()' });
      else if (id === 'nodularity-seccomp' && typeof nod.defaultSeccompProfile !== 'function')
        Object.assign(d, {
          status: 'missing',
          detail: 'this build has no seccomp support (it would ignore linux.seccomp)',
        });
      else d.launch = nodularityLauncher(nod, ctx, id);
    } else if (id === 'floor') {
      if (ctx.floor) d.launch = execLauncher(ctx.floor, [ctx.rootfs]);
      else Object.assign(d, { status: 'missing', detail: ctx.floorError ?? 'floor.c not compiled' });
    } else {
      const rt = ctx.runtimes[id];
      if (!rt) Object.assign(d, { status: 'missing', detail: 'not probed' });
      else if (rt.status !== 'ok')
        Object.assign(d, { status: rt.status, detail: rt.detail, version: rt.version ?? null });
      else {
        Object.assign(d, { note: rt.note ?? null, version: rt.version ?? null });
        d.launch = execLauncher(rt.cmd!, rt.args!, rt.envAdd ? { ...process.env, ...rt.envAdd } : undefined);
      }
    }
    return d;
  });
}
