// Launchers: one async function per way of starting /bin/true, all called
// from the trial's own Node process so each pays the same Node-side costs.
// A launch resolves when the payload has exited and rejects, with the reason,
// when it did not exit 0.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { benchSpec } from './setup.mjs';

/** Every driver id, in the order tables list them. */
export const DRIVER_IDS = [
  'nodularity', 'nodularity-netns', 'nodularity-noinit', 'nodularity-parentmaps',
  'child_process', 'floor', 'bwrap', 'ch-run', 'crun', 'runc',
];

export const LABELS = {
  nodularity: 'nodularity run()',
  'nodularity-netns': 'nodularity run() +netns',
  'nodularity-noinit': 'nodularity run() init off',
  'nodularity-parentmaps': 'nodularity run() parent writes maps',
  child_process: 'child_process.spawn (host)',
  floor: 'floor.c via child_process',
  bwrap: 'bwrap',
  'ch-run': 'ch-run',
  crun: 'crun',
  runc: 'runc',
};

/** Import dist/index.js; {mod} or {error} saying what to do. */
export async function loadNodularity(ctx) {
  if (!existsSync(ctx.dist)) return { error: `${ctx.dist} does not exist: build it with \`npm run build\`` };
  try {
    const mod = await import(pathToFileURL(ctx.dist).href);
    if (typeof mod.run !== 'function' || typeof mod.spawn !== 'function')
      return { error: `${ctx.dist} exports no run()/spawn() (found: ${Object.keys(mod).join(', ') || 'nothing'})` };
    return { mod };
  } catch (e) {
    return { error: `importing ${ctx.dist} failed: ${e?.message ?? e}` };
  }
}

/**
 * Spec and options for a nodularity variant. The id maps are left to the
 * library's default (one ID, written by the child itself after a vfork-style
 * clone) except in the parent-maps variant: as root, a 65536-ID range makes
 * the parent write the maps while the child waits, the path root callers
 * with real ranges take (style.md asks for both to be measured).
 */
export function nodularityArgs(ctx, id) {
  const parentMaps = id === 'nodularity-parentmaps';
  const spec = benchSpec(ctx.rootfs, { net: id === 'nodularity-netns', maps: false });
  if (parentMaps) {
    spec.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
    spec.linux.gidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
  }
  const options = { stdio: 'ignore', init: id !== 'nodularity-noinit' };
  return { spec, options };
}

class LaunchError extends Error {}

/**
 * A launch of /bin/true that takes this long is hung, not slow: the driver is
 * failed with that reason instead of stalling the whole bench.
 */
export const LAUNCH_TIMEOUT_MS = 30_000;

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new LaunchError(`${what}: no exit after ${LAUNCH_TIMEOUT_MS / 1000} s`)), LAUNCH_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describeExit(res) {
  if (res.signal) return `killed by ${res.signal}`;
  return `exit code ${res.exitCode}`;
}

function nodularityLauncher(mod, ctx, id) {
  const { spec, options } = nodularityArgs(ctx, id);
  return async () => {
    const res = await withTimeout(mod.run(spec, options), `nodularity ${id}`);
    if (res.exitCode !== 0) throw new LaunchError(`/bin/true in the container: ${describeExit(res)}`);
  };
}

/**
 * A launcher for an external command. Arguments holding {{id}} get a fresh
 * container id per launch (crun and runc keep state by id). stdio is
 * 'ignore' as for every driver; on failure the command is rerun once with
 * stderr captured so the report says why.
 */
function execLauncher(cmd, argsTemplate, env) {
  const idSlots = argsTemplate.map((a, i) => (a.includes('{{id}}') ? i : -1)).filter((i) => i >= 0);
  let seq = 0;
  const argsFor = () => {
    if (idSlots.length === 0) return argsTemplate;
    const args = argsTemplate.slice();
    const id = `nb-${process.pid}-${seq++}`;
    for (const i of idSlots) args[i] = argsTemplate[i].replaceAll('{{id}}', id);
    return args;
  };
  const opts = { stdio: 'ignore', ...(env ? { env } : {}) };
  return () => new Promise((resolve, reject) => {
    const args = argsFor();
    const child = spawn(cmd, args, opts);
    const timer = setTimeout(() => child.kill('SIGKILL'), LAUNCH_TIMEOUT_MS);
    child.once('error', (e) => reject(new LaunchError(`${cmd}: ${e.message}`)));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      if (signal === 'SIGKILL') return reject(new LaunchError(`${[cmd, ...args].join(' ')}: no exit after ${LAUNCH_TIMEOUT_MS / 1000} s, killed`));
      const again = spawnSync(cmd, argsFor(), { encoding: 'utf8', timeout: 30_000, ...(env ? { env } : {}) });
      const why = (again.stderr || '').trim().split('\n').slice(-3).join(' | ');
      reject(new LaunchError(`${[cmd, ...args].join(' ')}: ${signal ? 'killed by ' + signal : 'exit ' + code}${why ? ': ' + why : ''}`));
    });
  });
}

/**
 * Build the drivers asked for. Each is {id, label, status: 'ok'|'missing'|
 * 'failed', detail, launch}. Drivers that cannot run here keep their reason
 * so the report can show it.
 */
export async function makeDrivers(ctx, ids = DRIVER_IDS) {
  const needsNodularity = ids.some((id) => id.startsWith('nodularity'));
  const nod = needsNodularity ? await loadNodularity(ctx) : null;
  const drivers = [];
  for (const id of ids) {
    const d = { id, label: LABELS[id] ?? id, status: 'ok', detail: null, launch: null };
    if (id.startsWith('nodularity')) {
      if (nod.error) Object.assign(d, { status: 'missing', detail: nod.error });
      else if (id === 'nodularity-parentmaps' && ctx.uid !== 0)
        Object.assign(d, { status: 'missing', detail: 'needs root (unprivileged, ranges go through newuidmap and /etc/subuid)' });
      else d.launch = nodularityLauncher(nod.mod, ctx, id);
    } else if (id === 'child_process') {
      d.launch = execLauncher('/bin/true', []);
    } else if (id === 'floor') {
      d.launch = execLauncher(ctx.floor, [ctx.rootfs]);
    } else {
      const rt = ctx.runtimes[id];
      if (!rt) Object.assign(d, { status: 'missing', detail: 'not probed' });
      else if (rt.status !== 'ok') Object.assign(d, { status: rt.status, detail: rt.detail });
      else {
        d.detail = rt.note;
        d.version = rt.version;
        d.launch = execLauncher(rt.cmd, rt.args, rt.envAdd ? { ...process.env, ...rt.envAdd } : undefined);
      }
    }
    drivers.push(d);
  }
  return drivers;
}
