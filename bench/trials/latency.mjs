// Spawn->exit latency of /bin/true, every driver side by side in one fresh
// Node process; the interleaving and its reasons are in lib/bench/latency.ts,
// shared with `nodularity bench`. Here a very slow runtime (runc) is sampled
// one round in k (--budget-ms) so it does not stretch the whole run.
import { runLatency } from '../lib/built.mjs';
import { makeDrivers, DRIVER_IDS } from '../lib/drivers.mjs';
import { runTrial, trialArgs, log } from '../lib/trial-io.mjs';

await runTrial(async () => {
  const {
    ctx,
    runs = 400,
    warmup = 20,
    drivers: list,
    'budget-ms': budgetMs = 20_000,
    block = 5,
  } = trialArgs(['runs', 'warmup', 'drivers', 'budget-ms', 'block']);
  const ids = list ? String(list).split(',') : DRIVER_IDS;
  const drivers = await makeDrivers(ctx, ids);
  let lastTenth = -1;
  const res = await runLatency(drivers, {
    runs,
    warmup,
    block,
    budgetMs,
    log: (m) => log(`  ${m}`),
    onProgress: (done, total) => {
      const tenth = Math.floor((done / Math.max(1, total)) * 10);
      if (tenth !== lastTenth) log(`  latency: ${done}/${total} launches`);
      lastTenth = tenth;
    },
  });
  return { trial: 'latency', ...res };
});
