// Spawn->exit latency of /bin/true, every driver side by side in one process.
// Rounds are interleaved (a short block of launches of each driver per
// round, the order rotated every round) so that drift in the machine's state,
// page cache, CPU frequency or a noisy neighbour, hits all drivers alike
// instead of whichever happened to run during it.
//
// Why blocks and not one launch per driver per round: measured here, a fast
// launcher that runs right after runc or crun pays part of their teardown and
// cache misses (nodularity 1.7 ms alone, 2.2 ms when every launch follows a
// different runtime); a block of 5 keeps each driver near the steady state it
// has when launched back to back, while blocks stay short enough (tens of ms)
// for drift to be shared. Sleeping between drivers was worse: idle CPUs wake
// slowly and every driver got slower. --block 1 gives strict alternation.
// Every sample is kept, including the first of each block.
import { hrtime } from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeDrivers, DRIVER_IDS } from '../lib/drivers.mjs';
import { runTrial, trialArgs, log } from '../lib/trial-io.mjs';

await runTrial(async () => {
  const { ctx, runs = 400, warmup = 20, drivers: list, 'budget-ms': budgetMs = 20_000, block = 5, 'settle-ms': settleMs = 0 } =
    trialArgs(['runs', 'warmup', 'drivers', 'budget-ms', 'block', 'settle-ms']);
  // `runs` counts launches per driver; a round gives each driver `block` of them.
  const rounds = Math.ceil(runs / block);
  const ids = list ? String(list).split(',') : DRIVER_IDS;
  const drivers = await makeDrivers(ctx, ids);
  for (const d of drivers) Object.assign(d, { samples: [], stride: 1 });

  const fail = (d, e) => {
    d.status = 'failed';
    d.detail = e?.message ?? String(e);
    log(`  ${d.id} failed: ${d.detail}`);
  };
  const time = async (d) => {
    const t0 = hrtime.bigint();
    await d.launch();
    return Number(hrtime.bigint() - t0);
  };

  // Warm-up also measures how slow each driver is, so a very slow runtime
  // can be sampled every k-th round rather than stretch the whole run.
  const warm = new Map();
  for (let w = 0; w < warmup; w++) {
    for (const d of drivers) {
      if (d.status !== 'ok') continue;
      try {
        const ns = await time(d);
        warm.set(d, (warm.get(d) ?? 0) + ns);
      } catch (e) {
        fail(d, e);
      }
    }
  }
  for (const [d, total] of warm) {
    const meanMs = total / warmup / 1e6;
    d.stride = Math.max(1, Math.ceil((meanMs * rounds * block) / budgetMs));
    if (d.stride > 1) log(`  ${d.id}: ~${meanMs.toFixed(1)} ms per launch, sampled 1 round in ${d.stride}`);
  }

  const t0 = Date.now();
  for (let r = 0; r < rounds; r++) {
    const active = drivers.filter((d) => d.status === 'ok');
    if (active.length === 0) break;
    for (let k = 0; k < active.length; k++) {
      const d = active[(r + k) % active.length];
      if (r % d.stride !== 0) continue;
      if (settleMs > 0) await sleep(settleMs);
      for (let i = 0; i < block && d.status === 'ok'; i++) {
        try {
          d.samples.push(await time(d));
        } catch (e) {
          fail(d, e);
        }
      }
    }
    if ((r + 1) % Math.max(1, Math.floor(rounds / 10)) === 0) log(`  latency: round ${r + 1}/${rounds} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }

  return {
    trial: 'latency',
    runs,
    rounds,
    warmup,
    block,
    settleMs,
    drivers: drivers.map(({ launch, ...rest }) => rest),
  };
});
