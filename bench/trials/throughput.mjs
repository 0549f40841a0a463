// Containers per second with a fixed number of launches in flight: a pilot
// runs job steps back to back and several at once, so this is the figure it
// feels. Drivers take turns in blocks (interleaved, as in the latency trial)
// and the rate is total launches over total time across a driver's blocks.
import { hrtime } from 'node:process';
import { makeDrivers } from '../lib/drivers.mjs';
import { runTrial, trialArgs, log } from '../lib/trial-io.mjs';

/** Run `total` launches keeping `inflight` outstanding; resolves to elapsed ns. */
function pump(launch, total, inflight) {
  return new Promise((resolve, reject) => {
    let started = 0;
    let done = 0;
    let failed = false;
    const t0 = hrtime.bigint();
    const startOne = () => {
      started++;
      launch().then(
        () => {
          if (failed) return;
          done++;
          if (done === total) resolve(Number(hrtime.bigint() - t0));
          else if (started < total) startOne();
        },
        (e) => {
          if (!failed) reject(e);
          failed = true;
        },
      );
    };
    for (let i = 0; i < Math.min(inflight, total); i++) startOne();
  });
}

await runTrial(async () => {
  const {
    ctx,
    inflight = 2,
    count = 1500,
    blocks = 3,
    drivers: list,
  } = trialArgs(['inflight', 'count', 'blocks', 'drivers']);
  const ids = list ? String(list).split(',') : ['nodularity', 'nodularity-netns', 'host'];
  const drivers = await makeDrivers(ctx, ids);
  const perBlock = Math.max(1, Math.ceil(count / blocks));

  for (const d of drivers) {
    d.blocks = [];
    if (d.status !== 'ok') continue;
    try {
      await pump(d.launch, Math.min(50, perBlock), inflight); // warm-up
    } catch (e) {
      Object.assign(d, { status: 'failed', detail: e?.message ?? String(e) });
    }
  }
  for (let b = 0; b < blocks; b++) {
    for (const d of drivers) {
      if (d.status !== 'ok') continue;
      try {
        const ns = await pump(d.launch, perBlock, inflight);
        d.blocks.push({ n: perBlock, ns });
      } catch (e) {
        Object.assign(d, { status: 'failed', detail: e?.message ?? String(e) });
        log(`  ${d.id} failed: ${d.detail}`);
      }
    }
    log(`  throughput: block ${b + 1}/${blocks}`);
  }

  return {
    trial: 'throughput',
    inflight,
    drivers: drivers.map(({ launch: _launch, ...d }) => {
      const n = d.blocks.reduce((a, x) => a + x.n, 0);
      const ns = d.blocks.reduce((a, x) => a + x.ns, 0);
      const rates = d.blocks.map((x) => x.n / (x.ns / 1e9));
      return {
        ...d,
        launches: n,
        perSec: n ? n / (ns / 1e9) : null,
        minBlockPerSec: rates.length ? Math.min(...rates) : null,
        maxBlockPerSec: rates.length ? Math.max(...rates) : null,
      };
    }),
  };
});
