// Launch cost against the size of the launching Node process. A launcher
// that forks copies the parent's page tables, so its cost grows with the
// heap; one that clones with CLONE_VM|CLONE_VFORK should not. Callers start
// this in fresh processes with and without ~1 GiB of retained JS heap (same
// node flags otherwise) and compare them: `nodularity bench --heap` and
// bench/index.mjs.
//
// It also times the synchronous part of spawn() (how long a launch holds the
// event loop), the TS half of it (prepareLaunch) and when `spawned` resolves.
//
// As a program: node heap-trial.js --rootfs DIR --heap-mib N --runs N
// [--network host|none] [--args JSON] [--module URL] prints one JSON document on stdout.
import { spawn as cpSpawn } from 'node:child_process';
import { hrtime } from 'node:process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nodularityArgs, type NodularityModule } from './drivers.js';
import type { Network } from './setup.js';

export interface HeapTrialOptions {
  rootfs: string;
  args: string[];
  network: Network;
  heapMib: number;
  runs: number;
  warmup?: number;
}

interface Series {
  status: 'ok' | 'failed' | 'missing';
  detail: string | null;
  samples: number[];
}

export interface HeapTrialResult {
  trial: 'heap';
  heapMib: number;
  heapUsedMiB: number;
  rssMiB: number;
  nodularity: Series & { block: number[]; toSpawned: number[]; cloneWindow: number[]; plan: number[] };
  child_process: Series;
  retainedChunks: number;
}

/**
 * Retain about `mib` MiB of JS heap as arrays of doubles. Chunks stay below
 * V8's fast-array limit so the backing stores are plain FixedDoubleArrays
 * (8 bytes a number, really touched), not dictionaries.
 */
function retainHeap(mib: number): number[][] {
  const perChunk = 50_000;
  const chunks = Math.ceil((mib * 1024 * 1024) / (perChunk * 8));
  const keep = new Array<number[]>(chunks);
  for (let i = 0; i < chunks; i++) keep[i] = new Array<number>(perChunk).fill(i + 0.5);
  return keep;
}

function onHost(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = cpSpawn(args[0], args.slice(1), { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${args.join(' ')} on the host: exit ${code}`)),
    );
  });
}

/** Alternate nodularity and child_process launches in this process, as it is. */
export async function runHeapTrial(o: HeapTrialOptions, mod: NodularityModule): Promise<HeapTrialResult> {
  const retained = o.heapMib > 0 ? retainHeap(o.heapMib) : null;
  (globalThis as { gc?: () => void }).gc?.();
  const mem = process.memoryUsage();
  const ctx = { rootfs: o.rootfs, args: o.args, network: o.network, uid: process.getuid!(), runtimes: {} };
  const { spec, options } = nodularityArgs(ctx, 'nodularity');
  const result: HeapTrialResult = {
    trial: 'heap',
    heapMib: o.heapMib,
    heapUsedMiB: mem.heapUsed / 2 ** 20,
    rssMiB: mem.rss / 2 ** 20,
    nodularity: { status: 'ok', detail: null, samples: [], block: [], toSpawned: [], cloneWindow: [], plan: [] },
    child_process: { status: 'ok', detail: null, samples: [] },
    retainedChunks: 0,
  };
  const launchNod = async (record: boolean) => {
    if (record && mod.prepareLaunch) {
      // The TS half of spawn(), timed on its own so a slow spawn() can be pinned on TS or native.
      const a = hrtime.bigint();
      mod.prepareLaunch(spec, options);
      result.nodularity.plan.push(Number(hrtime.bigint() - a));
    }
    const a = hrtime.bigint();
    const h = mod.spawn(spec, options);
    const b = hrtime.bigint();
    let spawnedAt: bigint | null = null;
    h.spawned.then(
      () => {
        spawnedAt = hrtime.bigint();
      },
      () => {},
    );
    const res = await h.exited;
    const c = hrtime.bigint();
    if (res.exitCode !== 0)
      throw new Error(
        `${o.args.join(' ')} in the container: exit ${res.exitCode}${res.signal ? ' signal ' + res.signal : ''}`,
      );
    if (!record) return;
    result.nodularity.block.push(Number(b - a));
    result.nodularity.samples.push(Number(c - a));
    if (spawnedAt !== null) result.nodularity.toSpawned.push(Number((spawnedAt as bigint) - a));
    // How long clone() kept the worker thread suspended: the vfork window.
    if (typeof h.cloneMicros === 'number') result.nodularity.cloneWindow.push(h.cloneMicros * 1000);
  };
  const launchCp = async (record: boolean) => {
    const a = hrtime.bigint();
    await onHost(o.args);
    if (record) result.child_process.samples.push(Number(hrtime.bigint() - a));
  };
  const warmup = o.warmup ?? 10;
  for (let r = -warmup; r < o.runs; r++) {
    // Alternate which goes first so neither always follows the other.
    const order: [Series, (rec: boolean) => Promise<void>][] =
      r & 1
        ? [
            [result.child_process, launchCp],
            [result.nodularity, launchNod],
          ]
        : [
            [result.nodularity, launchNod],
            [result.child_process, launchCp],
          ];
    for (const [series, launch] of order) {
      if (series.status !== 'ok') continue;
      try {
        await launch(r >= 0);
      } catch (e) {
        series.status = 'failed';
        series.detail = e instanceof Error ? e.message : String(e);
      }
    }
  }
  // Keep the retained heap reachable until here.
  result.retainedChunks = retained?.length ?? 0;
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values: v } = parseArgs({
    options: {
      rootfs: { type: 'string' },
      'heap-mib': { type: 'string' },
      runs: { type: 'string' },
      network: { type: 'string' },
      args: { type: 'string' },
      module: { type: 'string' },
    },
  });
  // --module URL: another build's entry (bench/index.mjs --dist); default this build's.
  const mod = (await import(v.module ?? '../index.js')) as unknown as NodularityModule;
  const r = await runHeapTrial(
    {
      rootfs: v.rootfs!,
      heapMib: Number(v['heap-mib'] ?? 0),
      runs: Number(v.runs ?? 100),
      network: (v.network ?? 'host') as Network,
      args: v.args ? JSON.parse(v.args) : ['/bin/true'],
    },
    mod,
  );
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
}
