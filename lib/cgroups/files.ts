// linux.resources -> the files that say it, for cgroup v1 and v2. Pure: the
// result is a list of writes per controller; lib/cgroups/cgroup.ts decides
// which hierarchy takes each controller and does the writes. Conversions of
// v1 units to v2 are runc's and crun's (shares -> cpu.weight, blkio weight ->
// io.weight, swap = memory+swap - memory), so a config.json means the same
// with either runtime.
import { SpecError } from '../errors.js';
import type { DeviceRule } from './bpf-devices.js';
import type { LinuxResources, LinuxThrottleDevice } from './types.js';

export interface CgroupWrite {
  /** The controller the file belongs to ('' for core files such as cgroup.kill). */
  controller: string;
  file: string;
  value: string;
  /** JSON pointer of the spec field the write comes from, for error messages. */
  pointer: string;
}

const P = '/linux/resources';

function int(v: unknown, pointer: string, min = -Infinity): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw new SpecError(pointer, `must be an integer${min > -Infinity ? ` >= ${min}` : ''}`);
  return v;
}

/** -1 (and, for limits, 0 where the spec says so) mean no limit. */
const limit = (v: number, v2: boolean) => (v < 0 ? (v2 ? 'max' : '-1') : String(v));

const CPU_LIST = /^(\d+(-\d+)?)(,\d+(-\d+)?)*$/;
const PAGE_SIZE = /^\d+[KMG]B$/;

function throttle(list: LinuxThrottleDevice[] | undefined, pointer: string): [string, number, string][] {
  return (list ?? []).map((d, i) => {
    const p = `${pointer}/${i}`;
    return [`${int(d.major, `${p}/major`, 0)}:${int(d.minor, `${p}/minor`, 0)}`, int(d.rate, `${p}/rate`, 0), p];
  });
}

/** runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] -> [1, 10000]. */
/** The cgroup.* files `linux.resources.unified` may write: limits on the container's own subtree. */
const UNIFIED_CORE = new Set(['cgroup.max.depth', 'cgroup.max.descendants']);

export function sharesToWeight(shares: number): number {
  return shares === 0 ? 0 : 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** runc's ConvertBlkIOToIOWeightValue: [10, 1000] -> [1, 10000]. */
export function blkioToIoWeight(weight: number): number {
  return weight === 0 ? 0 : 1 + Math.floor(((weight - 10) * 9999) / 990);
}

/**
 * Allowed after the spec's own rules, as runc and crun do (runc's
 * specconv.AllowedDevices): the nodes of the minimal /dev every container
 * gets, and mknod of anything (a node made is useless without an allow rule).
 * A spec that starts with "deny all" (runc spec's and every client's default)
 * still has a working /dev/null.
 */
export const DEFAULT_ALLOWED_DEVICES = [
  'c *:* m',
  'b *:* m',
  'c 1:3 rwm', // null
  'c 1:5 rwm', // zero
  'c 1:7 rwm', // full
  'c 1:8 rwm', // random
  'c 1:9 rwm', // urandom
  'c 5:0 rwm', // tty
  'c 5:2 rwm', // ptmx
  'c 136:* rwm', // pts
  'c 10:200 rwm', // net/tun
];

/** Device rules for the v1 devices controller, in order, then the defaults and the spec's linux.devices. */
/**
 * The kernel (v1, and the v2 program, which decides as v1) takes access away
 * only from an exception with exactly the rule's type, major and minor: after
 * `c 1:* rw` allowed on a default of deny, `c 1:3 w` denied changes nothing,
 * and /dev/null stays writable. Such a list is refused, as runc refuses it
 * ("cannot punch hole in existing wildcard rule"), rather than applied weaker
 * than it reads.
 */
function refuseHoles(rules: CgroupWrite[]): void {
  let defaultAllow = true;
  const exceptions: { type: string; major: string; minor: string; access: string; at: string }[] = [];
  for (const r of rules) {
    const allow = r.file === 'devices.allow';
    if (r.value === 'a') {
      defaultAllow = allow;
      exceptions.length = 0;
      continue;
    }
    const [type, mm, access] = r.value.split(' ') as [string, string, string];
    const [major, minor] = mm.split(':') as [string, string];
    const exact = exceptions.some((e) => e.type === type && e.major === major && e.minor === minor);
    if (allow !== defaultAllow) {
      if (!exact) exceptions.push({ type, major, minor, access, at: r.pointer });
      continue;
    }
    if (exact) continue;
    const wider = exceptions.find(
      (e) =>
        e.type === type &&
        (e.major === '*' || e.major === major) &&
        (e.minor === '*' || e.minor === minor) &&
        [...access].some((a) => e.access.includes(a)),
    );
    if (wider)
      throw new SpecError(
        r.pointer,
        `cannot take ${access} away from ${type} ${major}:${minor} inside the wider rule ${wider.at} (${wider.type} ${wider.major}:${wider.minor}): the kernel changes only a rule with exactly the same type, major and minor; list the devices one by one`,
      );
  }
}

function deviceRules(r: LinuxResources, nodes: { type: string; major: number; minor: number }[]): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  (r.devices ?? []).forEach((d, i) => {
    const p = `${P}/devices/${i}`;
    if (typeof d.allow !== 'boolean') throw new SpecError(`${p}/allow`, 'must be true or false');
    const type = d.type ?? 'a';
    if (!['a', 'b', 'c'].includes(type)) throw new SpecError(`${p}/type`, 'must be a, b or c');
    const num = (v: number | null | undefined, f: string) =>
      v === undefined || v === null || v === -1 ? '*' : String(int(v, `${p}/${f}`, 0));
    const access = d.access ?? 'rwm';
    if (!/^[rwm]{1,3}$/.test(access)) throw new SpecError(`${p}/access`, 'must be letters of rwm');
    const rule = type === 'a' ? 'a' : `${type} ${num(d.major, 'major')}:${num(d.minor, 'minor')} ${access}`;
    out.push({ controller: 'devices', file: d.allow ? 'devices.allow' : 'devices.deny', value: rule, pointer: p });
  });
  if (!out.length) return out; // no rules: the controller is left as it is (allow all)
  refuseHoles(out);
  for (const rule of DEFAULT_ALLOWED_DEVICES)
    out.push({ controller: 'devices', file: 'devices.allow', value: rule, pointer: `${P}/devices` });
  nodes.forEach((n, i) => {
    if (
      (n.type === 'c' || n.type === 'b' || n.type === 'u') &&
      Number.isSafeInteger(n.major) &&
      Number.isSafeInteger(n.minor)
    )
      out.push({
        controller: 'devices',
        file: 'devices.allow',
        value: `${n.type === 'u' ? 'c' : n.type} ${n.major}:${n.minor} rwm`,
        pointer: `/linux/devices/${i}`,
      });
  });
  return out;
}

/**
 * The writes for RESOURCES, in the order they must happen (cpu period before
 * quota, memory limit before memory+swap). `v2` picks the file names and units.
 */
export function resourceWrites(
  r: LinuxResources,
  versionOf: (controller: string) => 1 | 2,
  /** The spec's linux.devices: the nodes made in the container are allowed too. */
  nodes: { type: string; major: number; minor: number }[] = [],
): { writes: CgroupWrite[]; warnings: string[]; bpfDevices: DeviceRule[] } {
  const w: CgroupWrite[] = [];
  const warnings: string[] = [];
  let v2 = false;
  // Nothing asked for is dropped in silence: what is not applied is an error, or a warning where runc warns too.
  const known = ['memory', 'cpu', 'pids', 'blockIO', 'hugepageLimits', 'devices', 'unified'];
  for (const k of Object.keys(r))
    if (!known.includes(k))
      throw new SpecError(
        `${P}/${k}`,
        k === 'network' || k === 'rdma'
          ? `the ${k === 'network' ? 'net_cls/net_prio' : 'rdma'} controller is not supported by nodularity`
          : 'is not a runtime-spec resource',
      );
  if (r.memory?.kernel !== undefined || r.memory?.kernelTCP !== undefined)
    warnings.push('linux.resources.memory.kernel and kernelTCP are deprecated by the kernel and not applied (as runc)');
  const add = (controller: string, file: string, value: string | number, pointer: string) =>
    w.push({ controller, file, value: String(value), pointer });
  const m = r.memory;
  if (m) {
    v2 = versionOf('memory') === 2;
    const p = `${P}/memory`;
    if (m.limit !== undefined)
      add('memory', v2 ? 'memory.max' : 'memory.limit_in_bytes', limit(int(m.limit, `${p}/limit`), v2), `${p}/limit`);
    if (m.reservation !== undefined)
      add(
        'memory',
        v2 ? 'memory.low' : 'memory.soft_limit_in_bytes',
        limit(int(m.reservation, `${p}/reservation`), v2),
        `${p}/reservation`,
      );
    if (m.swap !== undefined) {
      const swap = int(m.swap, `${p}/swap`);
      if (v2) {
        // v2 counts swap alone; the spec's figure is memory+swap.
        let value = 'max';
        if (swap >= 0) {
          if (m.limit === undefined || m.limit < 0)
            throw new SpecError(`${p}/swap`, 'a memory+swap limit needs a memory limit on cgroup v2');
          if (swap < m.limit) throw new SpecError(`${p}/swap`, `must be at least the memory limit (${m.limit})`);
          value = String(swap - m.limit);
        }
        add('memory', 'memory.swap.max', value, `${p}/swap`);
      } else add('memory', 'memory.memsw.limit_in_bytes', limit(swap, false), `${p}/swap`);
    }
    if (m.swappiness !== undefined) {
      const s = int(m.swappiness, `${p}/swappiness`, 0);
      if (s > 100) throw new SpecError(`${p}/swappiness`, 'must be 0 to 100');
      if (v2) throw new SpecError(`${p}/swappiness`, 'cgroup v2 has no per-cgroup swappiness');
      add('memory', 'memory.swappiness', s, `${p}/swappiness`);
    }
    if (m.disableOOMKiller) {
      if (v2) throw new SpecError(`${p}/disableOOMKiller`, 'cgroup v2 cannot disable the OOM killer');
      add('memory', 'memory.oom_control', 1, `${p}/disableOOMKiller`);
    }
  }
  const c = r.cpu;
  if (c) {
    v2 = versionOf('cpu') === 2;
    const p = `${P}/cpu`;
    if (c.shares !== undefined) {
      const s = int(c.shares, `${p}/shares`, 0);
      if (v2) add('cpu', 'cpu.weight', Math.min(10000, Math.max(1, sharesToWeight(s))), `${p}/shares`);
      else add('cpu', 'cpu.shares', s, `${p}/shares`);
    }
    if (c.quota !== undefined || c.period !== undefined) {
      const period = c.period === undefined ? undefined : int(c.period, `${p}/period`, 1000);
      const quota = c.quota === undefined ? undefined : int(c.quota, `${p}/quota`);
      if (v2)
        add('cpu', 'cpu.max', `${quota === undefined || quota <= 0 ? 'max' : quota} ${period ?? 100000}`, `${p}/quota`);
      else {
        if (period !== undefined) add('cpu', 'cpu.cfs_period_us', period, `${p}/period`);
        if (quota !== undefined) add('cpu', 'cpu.cfs_quota_us', quota <= 0 ? -1 : quota, `${p}/quota`);
      }
    }
    if (c.realtimePeriod !== undefined || c.realtimeRuntime !== undefined) {
      if (v2) throw new SpecError(`${p}/realtimeRuntime`, 'cgroup v2 has no real-time CPU limits');
      if (c.realtimePeriod !== undefined)
        add('cpu', 'cpu.rt_period_us', int(c.realtimePeriod, `${p}/realtimePeriod`, 1), `${p}/realtimePeriod`);
      if (c.realtimeRuntime !== undefined)
        add('cpu', 'cpu.rt_runtime_us', int(c.realtimeRuntime, `${p}/realtimeRuntime`), `${p}/realtimeRuntime`);
    }
    if (c.idle !== undefined) {
      if (!v2) throw new SpecError(`${p}/idle`, 'cpu.idle needs cgroup v2');
      add('cpu', 'cpu.idle', int(c.idle, `${p}/idle`, 0), `${p}/idle`);
    }
    for (const k of ['cpus', 'mems'] as const) {
      const v = c[k];
      if (v === undefined || v === '') continue;
      v2 = versionOf('cpuset') === 2;
      if (typeof v !== 'string' || !CPU_LIST.test(v)) throw new SpecError(`${p}/${k}`, 'must be a list such as 0-3,7');
      add('cpuset', `cpuset.${k}`, v, `${p}/${k}`);
    }
  }
  if (r.pids) {
    const l = int(r.pids.limit, `${P}/pids/limit`);
    add('pids', 'pids.max', l <= 0 ? 'max' : l, `${P}/pids/limit`);
  }
  const b = r.blockIO;
  if (b) {
    v2 = versionOf('blkio') === 2;
    const p = `${P}/blockIO`;
    if (b.weight !== undefined) {
      const wt = int(b.weight, `${p}/weight`, 0);
      if (wt && (wt < 10 || wt > 1000)) throw new SpecError(`${p}/weight`, 'must be 10 to 1000');
      if (v2) add('io', 'io.weight', `default ${blkioToIoWeight(wt)}`, `${p}/weight`);
      else add('blkio', 'blkio.weight', wt, `${p}/weight`);
    }
    if (b.leafWeight !== undefined && !v2)
      add('blkio', 'blkio.leaf_weight', int(b.leafWeight, `${p}/leafWeight`, 10), `${p}/leafWeight`);
    const kinds = [
      ['throttleReadBpsDevice', 'blkio.throttle.read_bps_device', 'rbps'],
      ['throttleWriteBpsDevice', 'blkio.throttle.write_bps_device', 'wbps'],
      ['throttleReadIOPSDevice', 'blkio.throttle.read_iops_device', 'riops'],
      ['throttleWriteIOPSDevice', 'blkio.throttle.write_iops_device', 'wiops'],
    ] as const;
    for (const [field, v1file, v2key] of kinds)
      for (const [dev, rate, ptr] of throttle(b[field], `${p}/${field}`))
        add(v2 ? 'io' : 'blkio', v2 ? 'io.max' : v1file, v2 ? `${dev} ${v2key}=${rate}` : `${dev} ${rate}`, ptr);
  }
  v2 = versionOf('hugetlb') === 2;
  (r.hugepageLimits ?? []).forEach((h, i) => {
    const p = `${P}/hugepageLimits/${i}`;
    if (typeof h.pageSize !== 'string' || !PAGE_SIZE.test(h.pageSize))
      throw new SpecError(`${p}/pageSize`, 'must be a size such as 2MB');
    add(
      'hugetlb',
      v2 ? `hugetlb.${h.pageSize}.max` : `hugetlb.${h.pageSize}.limit_in_bytes`,
      limit(int(h.limit, `${p}/limit`), v2),
      `${p}/limit`,
    );
  });
  const devices = deviceRules(r, nodes);
  // v2 has no devices controller: the same rules become a BPF program (bpf-devices.ts), as runc and crun do.
  const bpfDevices: DeviceRule[] = [];
  if (versionOf('devices') === 1) w.push(...devices);
  else for (const d of devices) bpfDevices.push({ allow: d.file === 'devices.allow', rule: d.value });
  for (const [k, v] of Object.entries(r.unified ?? {})) {
    v2 = true;
    const p = `${P}/unified/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (!/^[a-z_]+\.[a-z0-9_.]+$/.test(k))
      throw new SpecError(p, 'must name a cgroup v2 interface file such as memory.high');
    if (typeof v !== 'string') throw new SpecError(p, 'must be a string');
    const ctl = k.slice(0, k.indexOf('.'));
    // Of the core files only the two limits: cgroup.procs, .threads, .kill,
    // .freeze, .subtree_control and .type would move host processes into the
    // container's cgroup (then under its limits, kill --all and delete), kill
    // or freeze it, or change what the tree is.
    if (ctl === 'cgroup' && !UNIFIED_CORE.has(k))
      throw new SpecError(p, `only ${[...UNIFIED_CORE].join(' and ')} of the cgroup.* files may be set`);
    if (ctl !== 'cgroup' && versionOf(ctl) !== 2) throw new SpecError(p, `unified key/values need ${ctl} on cgroup v2`);
    add(ctl === 'cgroup' ? '' : ctl, k, v, p);
  }
  return { writes: w, warnings, bpfDevices };
}
