// Launch cost against the size of the launching Node process. A launcher
// that forks copies the parent's page tables, so its cost grows with the
// heap; one that clones with CLONE_VM|CLONE_VFORK should not. The runner
// starts this trial in fresh processes with and without ~1 GiB of retained JS
// heap (same node flags otherwise) and compares them.
//
// It also times the synchronous part of nodularity's spawn(): from the call
// to its return, i.e. how long the event loop is held per launch, and when
// `spawned` (payload exec'd) resolves, to split the launch into phases.
import { hrtime } from 'node:process';
import { spawn as cpSpawn } from 'node:child_process';
import { loadNodularity, nodularityArgs } from '../lib/drivers.mjs';
import { runTrial, trialArgs, log } from '../lib/trial-io.mjs';

/**
 * Retain about `mib` MiB of JS heap as arrays of doubles. Chunks stay below
 * V8's fast-array limit so the backing stores are plain FixedDoubleArrays
 * (8 bytes a number, really touched), not dictionaries.
 */
function retainHeap(mib) {
  const perChunk = 50_000;
  const chunks = Math.ceil((mib * 1024 * 1024) / (perChunk * 8));
  const keep = new Array(chunks);
  for (let i = 0; i < chunks; i++) keep[i] = new Array(perChunk).fill(i + 0.5);
  return keep;
}

function cpTrue() {
  return new Promise((resolve, reject) => {
    const c = cpSpawn('/bin/true', [], { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`/bin/true exit ${code}`))));
  });
}

await runTrial(async () => {
  const { ctx, 'heap-mib': heapMib = 0, runs = 300, warmup = 20 } = trialArgs(['heap-mib', 'runs', 'warmup']);
  const t0 = Date.now();
  globalThis.__benchRetained = heapMib > 0 ? retainHeap(heapMib) : null;
  globalThis.gc?.();
  const mem = process.memoryUsage();
  log(`  heap trial: ${heapMib} MiB asked, heapUsed ${(mem.heapUsed / 2 ** 20).toFixed(0)} MiB, rss ${(mem.rss / 2 ** 20).toFixed(0)} MiB (${Date.now() - t0} ms to allocate)`);

  const nod = await loadNodularity(ctx);
  const { spec, options } = nodularityArgs(ctx, 'nodularity');
  const result = {
    trial: 'heap',
    heapMib,
    heapUsedMiB: mem.heapUsed / 2 ** 20,
    rssMiB: mem.rss / 2 ** 20,
    nodularity: { status: nod.error ? 'missing' : 'ok', detail: nod.error ?? null, samples: [], block: [], toSpawned: [], cloneWindow: [], plan: [] },
    child_process: { status: 'ok', detail: null, samples: [] },
  };

  const launchNod = async (record) => {
    const a = hrtime.bigint();
    const h = nod.mod.spawn(spec, options);
    const b = hrtime.bigint();
    let spawnedAt = null;
    h.spawned?.then?.(() => { spawnedAt = hrtime.bigint(); }, () => {});
    const res = await h.exited;
    const c = hrtime.bigint();
    if (res.exitCode !== 0) throw new Error(`/bin/true in the container: exit ${res.exitCode}${res.signal ? ' signal ' + res.signal : ''}`);
    if (record) {
      result.nodularity.block.push(Number(b - a));
      result.nodularity.samples.push(Number(c - a));
      if (spawnedAt !== null) result.nodularity.toSpawned.push(Number(spawnedAt - a));
      // How long clone() kept the (worker) thread that called it suspended: the vfork window.
      if (typeof h.cloneMicros === 'number') result.nodularity.cloneWindow.push(h.cloneMicros * 1000);
    }
  };
  // The TS half of spawn(): spec validation and plan building, timed on its
  // own so a slow spawn() can be pinned on TS or on the native call.
  const timePlan = (record) => {
    if (typeof nod.mod?.prepareLaunch !== 'function') return;
    const a = hrtime.bigint();
    nod.mod.prepareLaunch(spec, options);
    if (record) result.nodularity.plan.push(Number(hrtime.bigint() - a));
  };
  const launchCp = async (record) => {
    const a = hrtime.bigint();
    await cpTrue();
    if (record) result.child_process.samples.push(Number(hrtime.bigint() - a));
  };

  for (let r = -warmup; r < runs; r++) {
    const record = r >= 0;
    // Alternate which goes first so neither always follows the other.
    const order = r & 1 ? [launchCp, launchNod] : [launchNod, launchCp];
    for (const f of order) {
      const which = f === launchNod ? result.nodularity : result.child_process;
      if (which.status !== 'ok') continue;
      try {
        if (f === launchNod) timePlan(record);
        await f(record);
      } catch (e) {
        which.status = 'failed';
        which.detail = e?.message ?? String(e);
        log(`  heap trial: ${f === launchNod ? 'nodularity' : 'child_process'} failed: ${which.detail}`);
      }
    }
  }
  // Keep the retained heap reachable until here.
  result.retainedChunks = globalThis.__benchRetained?.length ?? 0;
  return result;
});
