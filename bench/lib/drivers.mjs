// Drivers for this runner: the library's (lib/bench/drivers.ts), fed the
// nodularity build named in the context (dist/index.js, or another
// checkout's with --dist) and the runtimes setup.mjs probed.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { makeDrivers as libMakeDrivers, nodularityArgs as libNodularityArgs, LABELS as LIB_LABELS } from './built.mjs';

/** Every driver id, in the order tables list them. */
export const DRIVER_IDS = [
  'nodularity',
  'nodularity-seccomp',
  'nodularity-netns',
  'nodularity-noinit',
  'nodularity-parentmaps',
  'host',
  'floor',
  'bwrap',
  'ch-run',
  'crun',
  'runc',
];

/** With --baseline DIST: the default container from another build, in the same interleaved run. */
export const BASELINE_ID = 'nodularity-baseline';

export const LABELS = {
  ...LIB_LABELS,
  [BASELINE_ID]: 'nodularity run() baseline build',
  nodularity: 'nodularity run()',
  'nodularity-netns': 'nodularity run() +netns',
  'nodularity-noinit': 'nodularity run() init off',
  'nodularity-parentmaps': 'nodularity run() parent writes maps',
  'nodularity-seccomp': 'nodularity run() +seccomp (default profile)',
  host: 'child_process.spawn (host)',
};

/** Import the nodularity build under test; {mod} or {error} saying what to do. */
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

/** Spec and options of a nodularity variant (lib/bench/drivers.ts). */
export function nodularityArgs(ctx, id) {
  return libNodularityArgs(ctx, id);
}

/** Build the drivers asked for, with the nodularity build of the context. */
export async function makeDrivers(ctx, ids = DRIVER_IDS) {
  const own = ids.filter((id) => id !== BASELINE_ID);
  const nod = own.some((id) => id.startsWith('nodularity')) ? await loadNodularity(ctx) : { error: 'not loaded' };
  const drivers = libMakeDrivers(ctx, own, nod.error ? { error: nod.error } : nod.mod);
  if (ids.includes(BASELINE_ID)) {
    // The same 'nodularity' driver, fed the other build's module.
    const base = ctx.baselineDist
      ? await loadNodularity({ ...ctx, dist: ctx.baselineDist })
      : { error: 'no --baseline given' };
    const [d] = libMakeDrivers(ctx, ['nodularity'], base.error ? { error: base.error } : base.mod);
    drivers.splice(ids.indexOf(BASELINE_ID), 0, { ...d, id: BASELINE_ID });
  }
  return drivers.map((d) => ({ ...d, label: LABELS[d.id] ?? d.label }));
}
