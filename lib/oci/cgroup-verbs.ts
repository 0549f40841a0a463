// The OCI runtime's verbs on a live container's cgroup, as runc has them:
// `update` (new limits, written to the cgroup and recorded in the state) and
// `events` (runc's stats object, once with --stats, else every --interval,
// with an "oom" event when the memory controller reports one, until the
// container stops). See runtime.ts for the lifecycle verbs.
import { readFileSync } from 'node:fs';
import { Cgroup } from '../cgroups/cgroup.js';
import type { LinuxResources } from '../cgroups/types.js';
import type { RuncStats } from '../cgroups/stats.js';
import { checkId, mustLoad, OciStateError, statusOf, type LoadedState } from './state.js';
import type { Logger } from './runtime.js';
import type { Spec } from './spec.js';

/** nodularity-oci's --cgroup-manager (runc's --systemd-cgroup is "systemd"). */
export type CgroupManager = 'cgroupfs' | 'systemd' | 'disabled';

/**
 * What create does with the bundle's cgroup fields under MANAGER: cgroupfs
 * keeps them (the cgroup is made in the hierarchies, see lib/cgroups);
 * disabled drops linux.resources and linux.cgroupsPath with one warning (the
 * container runs in the caller's cgroups, without limits); systemd is refused:
 * nodularity has no systemd D-Bus client (see the report in docs).
 */
export function applyCgroupManager(spec: Spec, manager: CgroupManager | undefined, log: Logger): void {
  if (manager === undefined || manager === 'cgroupfs') return;
  if (manager === 'systemd')
    throw new OciStateError(
      '--cgroup-manager systemd (--systemd-cgroup) is not supported: nodularity makes cgroups itself (cgroupfs); run it in a delegated systemd scope instead, e.g. `systemd-run --scope -p Delegate=yes nodularity-oci ...`',
      'usage',
    );
  const linux = spec.linux;
  const had = linux?.resources !== undefined || linux?.cgroupsPath !== undefined;
  if (linux) {
    delete linux.resources;
    delete linux.cgroupsPath;
  }
  if (had)
    log.warn(
      '--cgroup-manager disabled: linux.resources and linux.cgroupsPath are not applied; the container runs without a cgroup or limits',
    );
}

function cgroupOf(s: LoadedState, verb: string, write: boolean): Cgroup {
  const { id, cgroup } = s.rec;
  if (!cgroup)
    throw new OciStateError(
      `cannot ${verb} ${id}: it has no cgroup (give the bundle linux.resources or linux.cgroupsPath, as root or in a delegated cgroup)`,
      'state',
    );
  if (write && s.owner !== process.geteuid!())
    throw new OciStateError(`cannot ${verb} ${id}: its state belongs to uid ${s.owner}`, 'state');
  return Cgroup.fromDirs(cgroup.dirs, cgroup.created);
}

/** runc update's flags, as given on the command line (strings: parsed here, errors name the flag). */
export interface UpdateFlags {
  resources?: string;
  blkioWeight?: string;
  cpuPeriod?: string;
  cpuQuota?: string;
  cpuShare?: string;
  cpuRtPeriod?: string;
  cpuRtRuntime?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  cpuIdle?: string;
  memory?: string;
  memoryReservation?: string;
  memorySwap?: string;
  pidsLimit?: string;
  l3CacheSchema?: string;
  memBwSchema?: string;
}

function whole(flag: string, v: string, min = -Infinity): number {
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < min)
    throw new OciStateError(`--${flag} ${v}: must be a whole number${min > -Infinity ? ` >= ${min}` : ''}`, 'usage');
  return Number(v);
}

/** A size as runc's update takes it (Docker's RAMInBytes: 512m, 2g, bytes; -1: no limit). */
async function size(flag: string, v: string): Promise<number> {
  const { parseSize } = await import('../cgroups/flags.js');
  try {
    return parseSize(`--${flag}`, v, true);
  } catch (e) {
    throw new OciStateError((e as Error).message.replace(/^options?\.?/, ''), 'usage');
  }
}

/** --resources FILE|- (runtime-spec LinuxResources JSON), then the flags on top, as runc. */
export async function updateResources(f: UpdateFlags, stdin: () => string): Promise<LinuxResources> {
  if (f.l3CacheSchema !== undefined || f.memBwSchema !== undefined)
    throw new OciStateError(
      `--${f.l3CacheSchema !== undefined ? 'l3-cache-schema' : 'mem-bw-schema'}: Intel RDT is not supported by nodularity`,
      'usage',
    );
  let r: LinuxResources = {};
  if (f.resources !== undefined) {
    let text: string;
    try {
      text = f.resources === '-' ? stdin() : readFileSync(f.resources, 'utf8');
    } catch (e) {
      throw new OciStateError(`--resources: cannot read ${f.resources}: ${(e as NodeJS.ErrnoException).code}`, 'usage');
    }
    try {
      r = JSON.parse(text);
    } catch {
      throw new OciStateError(`--resources: ${f.resources === '-' ? 'stdin' : f.resources} is not valid JSON`, 'usage');
    }
    if (!r || typeof r !== 'object' || Array.isArray(r))
      throw new OciStateError('--resources: must be a runtime-spec LinuxResources object', 'usage');
  }
  const memory = { ...r.memory };
  if (f.memory !== undefined) memory.limit = await size('memory', f.memory);
  if (f.memoryReservation !== undefined) memory.reservation = await size('memory-reservation', f.memoryReservation);
  if (f.memorySwap !== undefined) memory.swap = await size('memory-swap', f.memorySwap);
  if (Object.keys(memory).length) r.memory = memory;
  const cpu = { ...r.cpu };
  if (f.cpuShare !== undefined) cpu.shares = whole('cpu-share', f.cpuShare, 0);
  if (f.cpuPeriod !== undefined) cpu.period = whole('cpu-period', f.cpuPeriod, 0);
  if (f.cpuQuota !== undefined) cpu.quota = whole('cpu-quota', f.cpuQuota);
  if (f.cpuRtPeriod !== undefined) cpu.realtimePeriod = whole('cpu-rt-period', f.cpuRtPeriod, 0);
  if (f.cpuRtRuntime !== undefined) cpu.realtimeRuntime = whole('cpu-rt-runtime', f.cpuRtRuntime);
  if (f.cpuIdle !== undefined) cpu.idle = whole('cpu-idle', f.cpuIdle, 0);
  if (f.cpusetCpus !== undefined) cpu.cpus = f.cpusetCpus;
  if (f.cpusetMems !== undefined) cpu.mems = f.cpusetMems;
  if (Object.keys(cpu).length) r.cpu = cpu;
  if (f.pidsLimit !== undefined) r.pids = { limit: whole('pids-limit', f.pidsLimit) };
  if (f.blkioWeight !== undefined) r.blockIO = { ...r.blockIO, weight: whole('blkio-weight', f.blkioWeight, 0) };
  if (!Object.keys(r).length)
    throw new OciStateError('update needs --resources FILE|- or a limit flag (--memory, --pids-limit, ...)', 'usage');
  return r;
}

/** Deep enough for LinuxResources: objects merged one level down, lists and scalars replaced. */
function merge(a: LinuxResources = {}, b: LinuxResources): LinuxResources {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const old = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && old && typeof old === 'object' && !Array.isArray(old)
        ? { ...old, ...v }
        : v;
  }
  return out as LinuxResources;
}

/** update: write R to the container's live cgroup, then record it (merged) in the state. */
export async function update(root: string, id: string, r: LinuxResources, log: Logger): Promise<void> {
  const s = mustLoad(root, checkId(id));
  try {
    await s.dir.lock();
    const rec = s.dir.readRecord();
    if (!rec) throw new OciStateError(`container does not exist: ${id}`, 'not-exist');
    s.rec = rec;
    const status = statusOf(s);
    if (status === 'stopped' || status === 'creating')
      throw new OciStateError(`cannot update ${id}: container is ${status}`, 'state');
    const cg = cgroupOf(s, 'update', true);
    const merged = merge(rec.cgroup!.resources, r);
    // On v2 swap is written as swap - memory: a swap alone needs the recorded memory limit.
    const write =
      r.memory?.swap !== undefined && r.memory.limit === undefined && merged.memory?.limit !== undefined
        ? { ...r, memory: { ...r.memory, limit: merged.memory.limit } }
        : r;
    for (const w of cg.update(write)) log.warn(w);
    rec.cgroup = { ...rec.cgroup!, resources: merged };
    s.dir.writeRecord(rec);
  } finally {
    s.dir.close();
  }
}

/** runc's event object. */
export interface OciEvent {
  type: 'stats' | 'oom';
  id: string;
  data?: RuncStats;
}

/**
 * events: with `stats`, one stats event now. Else a stats event every
 * INTERVAL ms and an "oom" event whenever the cgroup's OOM-kill count grows
 * (looked at every 100 ms), until the container stops.
 */
export async function events(
  root: string,
  id: string,
  o: { stats: boolean; intervalMs: number },
  emit: (e: OciEvent) => void,
): Promise<void> {
  const s = mustLoad(root, checkId(id));
  try {
    const status = statusOf(s);
    if (status === 'stopped' || status === 'creating')
      throw new OciStateError(`cannot get events of ${id}: container is ${status}`, 'not-running');
    const cg = cgroupOf(s, 'get events of', false);
    if (o.stats) {
      emit({ type: 'stats', id, data: cg.runcStats() });
      return;
    }
    let ooms = cg.stats().oomKills ?? 0;
    const checkOom = () => {
      const now = cg.stats().oomKills ?? 0;
      for (; ooms < now; ooms++) emit({ type: 'oom', id });
    };
    let next = Date.now() + o.intervalMs;
    for (;;) {
      const stopped = statusOf(s) === 'stopped';
      checkOom(); // once more after the stop: the kill that ended it
      if (stopped) return;
      if (Date.now() >= next) {
        emit({ type: 'stats', id, data: cg.runcStats() });
        next = Date.now() + o.intervalMs;
      }
      await new Promise((r) => setTimeout(r, Math.min(100, o.intervalMs)));
    }
  } finally {
    s.dir.close();
  }
}
