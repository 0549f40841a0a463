// Builds what the trials need (rootfs, floor binaries, OCI bundles) and finds
// out which runtimes can run here. The result is a plain "context" object
// written to JSON, so every trial process sees exactly the same setup.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileC, ensureDefaultRootfs, machineInfo, probeRuntimes, writableDir as writable } from './built.mjs';

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO_DIR = dirname(BENCH_DIR);
export const DIST_INDEX = join(REPO_DIR, 'dist', 'index.js');

/**
 * bench/out/launch when we may write there; otherwise (an unprivileged user
 * running a checkout owned by someone else) a per-user temp dir, so the
 * rootfs is owned by the user who launches the containers.
 */
export function chooseOutDir(requested) {
  if (requested) {
    if (!writable(requested)) throw new Error(`--out ${requested}: not writable by uid ${process.getuid()}`);
    return requested;
  }
  const inRepo = join(BENCH_DIR, 'out', 'launch');
  if (writable(inRepo)) return inRepo;
  const fallback = join(tmpdir(), `nodularity-bench-${process.getuid()}`);
  if (!writable(fallback)) throw new Error(`neither ${inRepo} nor ${fallback} is writable`);
  return fallback;
}

/**
 * Prepare everything and probe every runtime (lib/bench/setup.ts does the
 * probing, for `nodularity bench` too). Throws only when the bench itself
 * cannot run (no rootfs, no compiler); a runtime that cannot run is
 * recorded, not fatal.
 */
export async function prepare({ outDir: requestedOut, dist = DIST_INDEX, baseline, log = () => {} } = {}) {
  const outDir = chooseOutDir(requestedOut);
  log(`out dir ${outDir}`);
  const rootfs = await ensureDefaultRootfs(outDir);
  const floor = compileC(join(BENCH_DIR, 'floor', 'floor.c'), join(outDir, 'floor'));
  const args = ['/bin/true'];
  const runtimes = probeRuntimes({
    rootfs,
    workDir: outDir,
    args,
    network: 'host',
    ids: ['host', 'bwrap', 'ch-run', 'crun', 'runc'],
  });
  const context = {
    createdAt: new Date().toISOString(),
    uid: process.getuid(),
    gid: process.getgid(),
    outDir,
    rootfs,
    floor,
    args,
    network: 'host',
    dist: resolve(dist),
    baselineDist: baseline ? resolve(baseline) : undefined,
    runtimes,
  };
  const contextPath = join(outDir, 'context.json');
  writeFileSync(contextPath, JSON.stringify(context, null, 2));
  return { context, contextPath };
}

export function readContext(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function newestMtime(dir, exts) {
  let newest = 0;
  let stack = [dir];
  while (stack.length) {
    const d = stack.pop();
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (exts.some((x) => e.name.endsWith(x))) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  }
  return newest;
}

/**
 * Warnings when the build being measured is older than its sources: figures
 * from a stale dist/ or addon would be credited to code that is not in it.
 */
export function buildStaleness(dist) {
  const warnings = [];
  if (dist !== DIST_INDEX) return warnings; // another checkout: its owner knows
  // Per file, so the warning names what is stale and one can judge whether
  // it is on the launch path at all.
  const stale = [];
  const walk = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const out = join(REPO_DIR, 'dist', p.slice(join(REPO_DIR, 'lib').length + 1).replace(/\.ts$/, '.js'));
        let outTime = 0;
        try {
          outTime = statSync(out).mtimeMs;
        } catch {
          /* not built: stale */
        }
        if (statSync(p).mtimeMs > outTime) stale.push(p.slice(REPO_DIR.length + 1));
      }
    }
  };
  walk(join(REPO_DIR, 'lib'));
  if (stale.length)
    warnings.push(`dist/ is older than ${stale.join(', ')}: run \`npm run build:ts\` to measure the current code`);
  const native = newestMtime(join(REPO_DIR, 'native'), ['.cc', '.c', '.h']);
  const addon = newestMtime(join(REPO_DIR, 'build', 'Release'), ['.node']);
  if (native && addon && native > addon)
    warnings.push(
      'the addon in build/Release is older than native/: run `npx node-gyp rebuild` to measure the current code',
    );
  return warnings;
}

export { machineInfo };
