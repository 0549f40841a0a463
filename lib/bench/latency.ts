// Spawn->exit latency, every driver side by side in one Node process.
// Drivers take turns (a short block of launches each, the order rotated
// every round) so drift in the machine's state, page cache, CPU frequency or
// a noisy neighbour, hits all drivers alike instead of whichever happened to
// run during it.
//
// Why blocks and not one launch per driver per turn: measured here, a fast
// launcher that runs right after runc or crun pays part of their teardown
// (nodularity 1.7 ms alone, 2.2 ms when every launch follows a different
// runtime); a block of 5 keeps each driver near its back-to-back steady
// state while blocks stay short enough (tens of ms) for drift to be shared.
// Sleeping between drivers was worse: idle CPUs wake slowly.
import { hrtime } from 'node:process';
import type { Driver } from './drivers.js';

export interface LatencyOptions {
  /** Recorded launches per driver. */
  runs: number;
  /** Unrecorded launches per driver first (page cache, JIT). */
  warmup?: number;
  /** Launches of one driver in a row before the next driver's turn. */
  block?: number;
  /** Launches in flight within a turn (1 = one after the other). */
  concurrency?: number;
  /**
   * When set, a driver whose warm-up says it would take longer than this
   * many ms in total is sampled one round in k (bench/index.mjs keeps runc
   * from stretching the whole run); by default every driver gets `runs`.
   */
  budgetMs?: number;
  /** Called after every recorded launch with (done, total). */
  onProgress?: (done: number, total: number) => void;
  log?: (msg: string) => void;
}

/** A driver's outcome: what it is (the Driver, without its launcher) and what it measured. */
export interface DriverResult extends Omit<Driver, 'launch'> {
  /** Spawn->exit of each recorded launch, ns, in the order taken. */
  samples: number[];
  /** Wall time of the driver's turns, ns: launches / this is its rate (with K in flight too). */
  wallNs: number;
  /** 1, or k when sampled one round in k (budgetMs). */
  stride: number;
}

export interface LatencyResult {
  runs: number;
  warmup: number;
  block: number;
  concurrency: number;
  rounds: number;
  drivers: DriverResult[];
}

/** Run `count` launches keeping up to `inflight` outstanding; per-launch ns go to `out`. Rejects on the first failure. */
async function turn(
  launch: () => Promise<void>,
  count: number,
  inflight: number,
  out: number[] | null,
  tick: () => void,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const t0 = hrtime.bigint();
      await launch();
      if (out) {
        out.push(Number(hrtime.bigint() - t0));
        tick();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, worker));
}

/** Measure every driver whose status is ok; the others are returned as they are, with no samples. */
export async function runLatency(drivers: Driver[], o: LatencyOptions): Promise<LatencyResult> {
  const { runs, warmup = 10, block = 5, concurrency = 1, budgetMs, onProgress, log = () => {} } = o;
  const perTurn = block * concurrency;
  const rounds = Math.ceil(runs / perTurn);
  const res: (DriverResult & { launch: Driver['launch'] })[] = drivers.map((d) => ({
    id: d.id,
    label: d.label,
    status: d.status,
    detail: d.detail,
    version: d.version,
    note: d.note,
    launch: d.launch,
    samples: [],
    wallNs: 0,
    stride: 1,
  }));
  const fail = (d: DriverResult, e: unknown) => {
    d.status = 'failed';
    d.detail = e instanceof Error ? e.message : String(e);
    log(`${d.id} failed: ${d.detail}`);
  };
  const active = () => res.filter((d) => d.status === 'ok' && d.launch);
  let total = active().length * runs;
  let done = 0;
  const tick = () => onProgress?.(++done, total);

  // Warm-up, interleaved too; it also times each driver for budgetMs.
  for (const d of active()) {
    const t0 = hrtime.bigint();
    try {
      await turn(d.launch!, warmup, concurrency, null, tick);
    } catch (e) {
      fail(d, e);
      total -= runs;
      continue;
    }
    if (budgetMs && warmup > 0) {
      const perLaunchMs = Number(hrtime.bigint() - t0) / 1e6 / warmup;
      d.stride = Math.max(1, Math.ceil((perLaunchMs * runs) / budgetMs));
      if (d.stride > 1) {
        log(`${d.id}: ~${perLaunchMs.toFixed(1)} ms per launch, sampled 1 round in ${d.stride}`);
        total -= runs - Math.ceil(rounds / d.stride) * perTurn;
      }
    }
  }
  onProgress?.(done, total);

  for (let r = 0; r < rounds; r++) {
    const now = active();
    if (now.length === 0) break;
    for (let k = 0; k < now.length; k++) {
      const d = now[(r + k) % now.length];
      if (r % d.stride !== 0) continue;
      // The last round is cut short so a driver gets exactly `runs` launches.
      const count = d.stride === 1 ? Math.min(perTurn, runs - d.samples.length) : perTurn;
      if (count <= 0) continue;
      const t0 = hrtime.bigint();
      try {
        await turn(d.launch!, count, concurrency, d.samples, tick);
      } catch (e) {
        fail(d, e);
        total -= runs - d.samples.length;
        onProgress?.(done, total);
      }
      d.wallNs += Number(hrtime.bigint() - t0);
    }
  }
  return { runs, warmup, block, concurrency, rounds, drivers: res.map(({ launch: _launch, ...d }) => d) };
}
