// A cgroup's figures in runc's stats form (runc's types/events.go Stats, what
// `runc events --stats` prints in "data" and containerd's shim reads): cpu,
// memory, pids, hugetlb, blkio, from the v1 controllers where the container
// has them, else from its v2 directory. What the host does not offer is 0,
// as runc leaves it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** "No limit" here; runc's JSON says math.MaxUint64 (statsJson writes it so, digit for digit). */
const UNLIMITED = Infinity;

/**
 * JSON of a value holding RuncStats, as runc writes it: an unlimited figure
 * is 18446744073709551615 (Go's uint64 max; a JS number cannot hold it, and
 * Go clients fail to parse a rounded one).
 */
export function statsJson(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x === Infinity ? '\u0000u64max' : x)).replace(
    /"\\u0000u64max"/g,
    '18446744073709551615',
  );
}

function read(dir: string | null | undefined, file: string): string | null {
  if (!dir) return null;
  try {
    return readFileSync(join(dir, file), 'utf8');
  } catch {
    return null;
  }
}

function num(dir: string | null | undefined, file: string): number {
  const t = read(dir, file)?.trim();
  if (t === undefined) return 0;
  if (t === 'max') return UNLIMITED;
  const n = Number(t);
  // v1 prints "no limit" as the page-rounded 2^63-1.
  return Number.isFinite(n) ? (n >= 2 ** 62 ? UNLIMITED : n) : 0;
}

/** "key value" lines (memory.stat, cpu.stat, cpuacct.stat) as a map. */
function keyed(dir: string | null | undefined, file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (read(dir, file) ?? '').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

export interface RuncStats {
  cpu: {
    usage: { total: number; percpu?: number[]; kernel: number; user: number };
    throttling: { periods?: number; throttled_periods?: number; throttled_time?: number };
  };
  memory: {
    cache?: number;
    usage: { limit: number; usage?: number; max?: number; failcnt: number };
    swap: { limit: number; usage?: number; max?: number; failcnt: number };
    kernel: { limit: number; failcnt: number };
    kernelTCP: { limit: number; failcnt: number };
    raw?: Record<string, number>;
  };
  pids: { current?: number; limit?: number };
  blkio: Record<string, unknown>;
  hugetlb?: Record<string, { usage?: number; max?: number; failcnt: number }>;
}

/** The stats of a cgroup with v1 directories by controller (V1) and/or a v2 directory (V2). */
export function runcStats(v1: Map<string, string>, v2: string | null): RuncStats {
  // cpu
  const acct = v1.get('cpuacct');
  const cpuDir = v1.get('cpu');
  let cpu: RuncStats['cpu'];
  if (acct) {
    // cpuacct.stat is in USER_HZ ticks (100 a second on Linux); runc converts to ns the same way.
    const st = keyed(acct, 'cpuacct.stat');
    const t = keyed(cpuDir, 'cpu.stat');
    cpu = {
      usage: {
        total: num(acct, 'cpuacct.usage'),
        percpu: (read(acct, 'cpuacct.usage_percpu') ?? '').trim().split(/\s+/).filter(Boolean).map(Number),
        kernel: (st.system ?? 0) * 1e7,
        user: (st.user ?? 0) * 1e7,
      },
      throttling: { periods: t.nr_periods, throttled_periods: t.nr_throttled, throttled_time: t.throttled_time },
    };
  } else {
    const t = keyed(v2, 'cpu.stat');
    cpu = {
      usage: {
        total: (t.usage_usec ?? 0) * 1000,
        kernel: (t.system_usec ?? 0) * 1000,
        user: (t.user_usec ?? 0) * 1000,
      },
      throttling: {
        periods: t.nr_periods,
        throttled_periods: t.nr_throttled,
        throttled_time: t.throttled_usec === undefined ? undefined : t.throttled_usec * 1000,
      },
    };
  }
  // memory
  const mem = v1.get('memory');
  let memory: RuncStats['memory'];
  if (mem) {
    const raw = keyed(mem, 'memory.stat');
    memory = {
      cache: raw.cache,
      usage: {
        limit: num(mem, 'memory.limit_in_bytes'),
        usage: num(mem, 'memory.usage_in_bytes'),
        max: num(mem, 'memory.max_usage_in_bytes'),
        failcnt: num(mem, 'memory.failcnt'),
      },
      swap: {
        limit: num(mem, 'memory.memsw.limit_in_bytes'),
        usage: num(mem, 'memory.memsw.usage_in_bytes'),
        max: num(mem, 'memory.memsw.max_usage_in_bytes'),
        failcnt: num(mem, 'memory.memsw.failcnt'),
      },
      kernel: { limit: 0, failcnt: 0 },
      kernelTCP: { limit: 0, failcnt: 0 },
      raw,
    };
  } else {
    const raw = keyed(v2, 'memory.stat');
    const has = read(v2, 'memory.current') !== null;
    memory = {
      cache: raw.file,
      usage: {
        limit: has ? num(v2, 'memory.max') : 0,
        usage: num(v2, 'memory.current'),
        max: num(v2, 'memory.peak'),
        failcnt: keyed(v2, 'memory.events').max ?? 0,
      },
      // runc: v2's swap figures are memory+swap, as v1's.
      swap: {
        limit: has ? num(v2, 'memory.swap.max') : 0,
        usage: num(v2, 'memory.swap.current') + num(v2, 'memory.current'),
        failcnt: 0,
      },
      kernel: { limit: 0, failcnt: 0 },
      kernelTCP: { limit: 0, failcnt: 0 },
      raw,
    };
  }
  // pids: runc reports "max" as 0.
  const pidsDir = v1.get('pids') ?? (read(v2, 'pids.current') !== null ? v2 : null);
  const plimit = num(pidsDir, 'pids.max');
  const pids = { current: num(pidsDir, 'pids.current'), limit: plimit === UNLIMITED ? 0 : plimit };
  // hugetlb, by page size as runc names them ("2MB").
  const huge = v1.get('hugetlb') ?? v2;
  const hugetlb: RuncStats['hugetlb'] = {};
  let files: string[] = [];
  try {
    files = huge ? readdirSync(huge) : [];
  } catch {
    /* gone */
  }
  for (const f of files) {
    const m = /^hugetlb\.([0-9]+[KMG]B)\.(usage_in_bytes|current)$/.exec(f);
    if (!m) continue;
    const v1style = m[2] === 'usage_in_bytes';
    hugetlb[m[1]] = {
      usage: num(huge, f),
      max: v1style ? num(huge, `hugetlb.${m[1]}.max_usage_in_bytes`) : 0,
      failcnt: v1style ? num(huge, `hugetlb.${m[1]}.failcnt`) : (keyed(huge, `hugetlb.${m[1]}.events`).max ?? 0),
    };
  }
  return { cpu, memory, pids, blkio: {}, hugetlb };
}
