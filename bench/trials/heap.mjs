// Launch cost against the size of the launching Node process, in this fresh
// process (the runner starts it with and without ~1 GiB of retained heap).
// The trial itself is lib/bench/heap-trial.ts, shared with `nodularity bench --heap`.
import { runHeapTrial } from '../lib/built.mjs';
import { loadNodularity } from '../lib/drivers.mjs';
import { runTrial, trialArgs, log } from '../lib/trial-io.mjs';

await runTrial(async () => {
  const { ctx, 'heap-mib': heapMib = 0, runs = 300, warmup = 20 } = trialArgs(['heap-mib', 'runs', 'warmup']);
  const nod = await loadNodularity(ctx);
  if (nod.error) throw new Error(nod.error);
  const t0 = Date.now();
  const r = await runHeapTrial(
    { rootfs: ctx.rootfs, args: ctx.args, network: ctx.network, heapMib, runs, warmup },
    nod.mod,
  );
  log(
    `  heap trial: ${heapMib} MiB asked, heapUsed ${r.heapUsedMiB.toFixed(0)} MiB, rss ${r.rssMiB.toFixed(0)} MiB (${Date.now() - t0} ms)`,
  );
  return r;
});
