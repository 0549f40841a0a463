// Apptainer's resource-limit flags and its --apply-cgroups TOML file, as
// linux.resources. The flags are Apptainer's (cmd/internal/cli/action_flags.go,
// with Docker's meanings and units); the TOML file is the OCI LinuxResources
// in TOML, keys as in config.json, which is what Apptainer's cgroups.toml is.
import { readFileSync } from 'node:fs';
import { SpecError } from '../errors.js';
import type { LinuxResources } from './types.js';

export interface LimitFlags {
  memory?: string;
  memoryReservation?: string;
  memorySwap?: string;
  memorySwappiness?: string;
  oomKillDisable?: boolean;
  cpus?: string;
  cpuShares?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: string;
  blkioWeight?: string;
}

/** The flag names, for the "not with --apply-cgroups" check and help. */
export const LIMIT_FLAGS: Record<keyof LimitFlags, string> = {
  memory: '--memory',
  memoryReservation: '--memory-reservation',
  memorySwap: '--memory-swap',
  memorySwappiness: '--memory-swappiness',
  oomKillDisable: '--oom-kill-disable',
  cpus: '--cpus',
  cpuShares: '--cpu-shares',
  cpusetCpus: '--cpuset-cpus',
  cpusetMems: '--cpuset-mems',
  pidsLimit: '--pids-limit',
  blkioWeight: '--blkio-weight',
};

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Docker's RAMInBytes: 512m, 2g, 1024 (bytes); binary units; -1 only where `unlimited` allows. */
export function parseSize(flag: string, v: string, unlimited = false): number {
  if (unlimited && v.trim() === '-1') return -1;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$/i.exec(v);
  if (!m) throw SpecError.inOption(flag, `must be a size such as 512m or 2g, not ${JSON.stringify(v)}`);
  const n = Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw SpecError.inOption(flag, `must be more than 0, not ${JSON.stringify(v)}`);
  return n;
}

function int(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\s*-?\d+\s*$/.test(v) || Number(v) < min || Number(v) > max)
    throw SpecError.inOption(
      flag,
      `must be a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, not ${JSON.stringify(v)}`,
    );
  return Number(v);
}

/** The flags as linux.resources; undefined when none was given. */
export function resourcesFromFlags(f: LimitFlags): LinuxResources | undefined {
  const r: LinuxResources = {};
  const memory: NonNullable<LinuxResources['memory']> = {};
  if (f.memory !== undefined) memory.limit = parseSize('--memory', f.memory);
  if (f.memoryReservation !== undefined) memory.reservation = parseSize('--memory-reservation', f.memoryReservation);
  if (f.memorySwap !== undefined) {
    memory.swap = parseSize('--memory-swap', f.memorySwap, true);
    if (memory.swap !== -1 && memory.limit === undefined)
      throw SpecError.inOption('--memory-swap', 'needs --memory (it is memory plus swap)');
    if (memory.swap !== -1 && memory.swap < memory.limit!)
      throw SpecError.inOption('--memory-swap', `is memory plus swap: it must be at least --memory (${f.memory})`);
  }
  if (f.memorySwappiness !== undefined) memory.swappiness = int('--memory-swappiness', f.memorySwappiness, 0, 100);
  if (f.oomKillDisable) memory.disableOOMKiller = true;
  if (Object.keys(memory).length) r.memory = memory;
  const cpu: NonNullable<LinuxResources['cpu']> = {};
  if (f.cpus !== undefined) {
    const n = Number(f.cpus);
    if (!/^\s*\d+(\.\d+)?\s*$/.test(f.cpus) || !(n > 0))
      throw SpecError.inOption('--cpus', `must be a number of CPUs such as 1.5, not ${JSON.stringify(f.cpus)}`);
    cpu.period = 100000;
    cpu.quota = Math.max(1000, Math.round(n * cpu.period));
  }
  if (f.cpuShares !== undefined) cpu.shares = int('--cpu-shares', f.cpuShares, 2, 262144);
  if (f.cpusetCpus !== undefined) cpu.cpus = f.cpusetCpus;
  if (f.cpusetMems !== undefined) cpu.mems = f.cpusetMems;
  if (Object.keys(cpu).length) r.cpu = cpu;
  if (f.pidsLimit !== undefined) r.pids = { limit: int('--pids-limit', f.pidsLimit, -1) };
  if (f.blkioWeight !== undefined) r.blockIO = { weight: int('--blkio-weight', f.blkioWeight, 10, 1000) };
  for (const k of ['cpus', 'mems'] as const)
    if (cpu[k] !== undefined && !/^(\d+(-\d+)?)(,\d+(-\d+)?)*$/.test(cpu[k]!))
      throw SpecError.inOption(`--cpuset-${k}`, `must be a list such as 0-3,7, not ${JSON.stringify(cpu[k])}`);
  return Object.keys(r).length ? r : undefined;
}

/**
 * Apptainer's --apply-cgroups FILE: linux.resources in TOML. A file that is
 * not TOML, or not a table of the spec's resource keys, is one line naming it.
 */
export async function resourcesFromToml(file: string): Promise<LinuxResources> {
  // Loaded here, not at the top: only --apply-cgroups needs a TOML parser (the CLI starts faster without it).
  const { parse: parseToml } = await import('smol-toml');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw SpecError.inOption('--apply-cgroups', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    throw SpecError.inOption('--apply-cgroups', `${file} is not TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const known = new Set([
    'memory',
    'cpu',
    'pids',
    'blockIO',
    'hugepageLimits',
    'devices',
    'unified',
    'network',
    'rdma',
  ]);
  for (const k of Object.keys(doc))
    if (!known.has(k)) throw SpecError.inOption('--apply-cgroups', `${file}: unknown section [${k}]`);
  // TOML integers come as bigint when they do not fit a double exactly; limits here always do.
  return JSON.parse(JSON.stringify(doc, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))) as LinuxResources;
}
