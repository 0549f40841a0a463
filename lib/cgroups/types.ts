// runtime-spec's linux.resources (config-linux.md "Control groups"), with the
// spec's own field names so that a config.json parses straight into them.
// Memory figures are bytes (-1: unlimited); CPU shares are cgroup v1 units
// (2..262144), converted for v2 as runc and crun do.

export interface LinuxResources {
  memory?: LinuxMemory;
  cpu?: LinuxCPU;
  pids?: { limit: number };
  blockIO?: LinuxBlockIO;
  hugepageLimits?: { pageSize: string; limit: number }[];
  devices?: LinuxDeviceCgroup[];
  /** cgroup v2 key/values written as they are (e.g. "memory.high": "1G"). */
  unified?: Record<string, string>;
}

export interface LinuxMemory {
  limit?: number;
  reservation?: number;
  /** memory + swap (v1 semantics, as the spec says); v2 writes swap = swap - limit. */
  swap?: number;
  kernel?: number;
  kernelTCP?: number;
  swappiness?: number;
  disableOOMKiller?: boolean;
  useHierarchy?: boolean;
  checkBeforeUpdate?: boolean;
}

export interface LinuxCPU {
  shares?: number;
  quota?: number;
  period?: number;
  realtimeRuntime?: number;
  realtimePeriod?: number;
  cpus?: string;
  mems?: string;
  idle?: number;
}

export interface LinuxBlockIO {
  weight?: number;
  leafWeight?: number;
  weightDevice?: unknown[];
  throttleReadBpsDevice?: LinuxThrottleDevice[];
  throttleWriteBpsDevice?: LinuxThrottleDevice[];
  throttleReadIOPSDevice?: LinuxThrottleDevice[];
  throttleWriteIOPSDevice?: LinuxThrottleDevice[];
}

export interface LinuxThrottleDevice {
  major: number;
  minor: number;
  rate: number;
}

export interface LinuxDeviceCgroup {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number | null;
  minor?: number | null;
  access?: string;
}

/** What a container's cgroup saw, read at exit (or any time). null: the host does not say. */
export interface CgroupStats {
  /** Peak memory use in bytes (v2 memory.peak, v1 memory.max_usage_in_bytes). */
  memoryPeak: number | null;
  /** Current memory use in bytes. */
  memoryCurrent: number | null;
  /** The number of times the OOM killer killed a process of the cgroup (v2 memory.events oom_kill, v1 memory.oom_control oom_kill). */
  oomKills: number | null;
  /** CPU time used, µs (v2 cpu.stat usage_usec, v1 cpuacct.usage / 1000). */
  cpuUsageMicros: number | null;
  /** Processes now (pids.current). */
  pids: number | null;
}
