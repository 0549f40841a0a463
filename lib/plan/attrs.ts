// Stage "attributes": the spec fields that are neither mounts nor ids.
// linux.sysctl (namespaced keys only: a key that would change the host is
// refused), process.oomScoreAdj, linux.personality, process.user.umask,
// linux.devices (mknod as root outside a user namespace, else the host's node
// bound), and the fields accepted with a warning: SELinux/AppArmor labels on a
// host without that LSM (as crun does). linux.resources and cgroupsPath are
// applied by spawn() (lib/cgroups).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { SpecError } from '../errors.js';
import type { Spec } from '../oci/spec.js';
import { MOUNT_ATTR } from './flags.js';
import type { PlanBuilder } from './mounts.js';
import { OP } from './types.js';

const ptrKey = (k: string) => k.replace(/~/g, '~0').replace(/\//g, '~1');

/** IPC sysctls that belong to the ipc namespace (as runc's validator lists them). */
const IPC_KEYS = new Set([
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

export interface SysctlEntry {
  key: string;
  path: string;
  value: string;
}

/**
 * linux.sysctl: each key must belong to a namespace the container has (the
 * child writes it before pivot_root, through the launcher's /proc, where it
 * names the child's own namespaces): ipc keys and fs.mqueue.* with an ipc
 * namespace, net.* with a network namespace, kernel.domainname with a uts
 * namespace. Any other key would change the host and is refused.
 */
export function planSysctls(spec: Spec, namespaces: Set<string>): SysctlEntry[] {
  const sysctl = spec.linux?.sysctl;
  if (sysctl === undefined) return [];
  if (typeof sysctl !== 'object' || sysctl === null || Array.isArray(sysctl))
    throw new SpecError('/linux/sysctl', 'must be an object of key: value strings');
  return Object.entries(sysctl).map(([key, value]) => {
    const ptr = `/linux/sysctl/${ptrKey(key)}`;
    if (typeof value !== 'string' || value.includes('\0')) throw new SpecError(ptr, 'must be a string');
    if (!/^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)*$/.test(key)) throw new SpecError(ptr, 'is not a sysctl key');
    let needs: string | undefined;
    if (IPC_KEYS.has(key) || key.startsWith('fs.mqueue.')) needs = 'ipc';
    else if (key.startsWith('net.')) needs = 'network';
    else if (key === 'kernel.domainname') needs = 'uts';
    if (needs === undefined)
      throw new SpecError(
        ptr,
        `${key} is not a namespaced sysctl: it would change the host (allowed: kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* with an ipc namespace; net.* with a network namespace; kernel.domainname with a uts namespace)`,
      );
    if (!namespaces.has(needs))
      throw new SpecError(ptr, `${key} needs a ${needs} namespace of the container's own (linux.namespaces)`);
    // sysctl(8)'s notation: dots separate, a slash stands for a dot inside a name (eth0.1).
    const path = '/proc/sys/' + key.replace(/[./]/g, (c) => (c === '.' ? '/' : '.'));
    return { key, path, value };
  });
}

/** process.oomScoreAdj, linux.personality, process.user.umask. */
export function planProcessAttrs(spec: Spec): { oomScoreAdj?: number; personality?: number; umask?: number } {
  const proc = spec.process!;
  const out: { oomScoreAdj?: number; personality?: number; umask?: number } = {};
  const oom = proc.oomScoreAdj;
  if (oom !== undefined) {
    if (typeof oom !== 'number' || !Number.isInteger(oom) || oom < -1000 || oom > 1000)
      throw new SpecError('/process/oomScoreAdj', `must be an integer from -1000 to 1000, got ${JSON.stringify(oom)}`);
    out.oomScoreAdj = oom;
  }
  const umask = proc.user.umask;
  if (umask !== undefined) {
    if (typeof umask !== 'number' || !Number.isInteger(umask) || umask < 0 || umask > 0o777)
      throw new SpecError(
        '/process/user/umask',
        `must be an integer from 0 to 0777 (511), got ${JSON.stringify(umask)}`,
      );
    out.umask = umask;
  }
  const pers = spec.linux?.personality;
  if (pers !== undefined) {
    const domains: Record<string, number> = { LINUX: 0, LINUX32: 8 };
    if (typeof pers !== 'object' || pers === null || !(pers.domain in domains))
      throw new SpecError('/linux/personality/domain', 'must be LINUX or LINUX32');
    if (pers.flags !== undefined && (!Array.isArray(pers.flags) || pers.flags.length > 0))
      throw new SpecError(
        '/linux/personality/flags',
        'personality flags are not supported (none are defined for Linux)',
      );
    out.personality = domains[pers.domain];
  }
  return out;
}

const warned = new Set<string>();
/** One warning per message and process, through process.emitWarning (code NODULARITY_SPEC_IGNORED). */
function warnOnce(message: string): void {
  if (warned.has(message)) return;
  warned.add(message);
  process.emitWarning(message, { code: 'NODULARITY_SPEC_IGNORED' });
}

function apparmorEnabled(): boolean {
  try {
    return readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
  } catch {
    return false;
  }
}

/**
 * Fields accepted without being applied, each with a warning: labels of an
 * LSM this host does not have (as crun: nothing to apply them to). (Cgroups
 * are applied: lib/cgroups, from spawn().) A label for an LSM the host has is refused: it
 * would be a confinement the caller asked for and does not get.
 */
export function specWarnings(spec: Spec, exec = false): void {
  const linux = spec.linux ?? {};
  const proc = spec.process!;
  const selinux = existsSync('/sys/fs/selinux/enforce');
  for (const [ptr, v] of [
    ['/linux/mountLabel', exec ? undefined : linux.mountLabel],
    ['/process/selinuxLabel', proc.selinuxLabel],
  ] as const) {
    if (v === undefined || v === '') continue;
    if (selinux) throw new SpecError(ptr, 'SELinux labels are not applied yet, and this host enforces SELinux');
    warnOnce(`${ptr.slice(1).replace('/', '.')} ignored: this host has no SELinux`);
  }
  if (proc.apparmorProfile !== undefined && proc.apparmorProfile !== '') {
    if (apparmorEnabled())
      throw new SpecError(
        '/process/apparmorProfile',
        'AppArmor profiles are not applied yet, and this host has AppArmor',
      );
    warnOnce('process.apparmorProfile ignored: this host has no AppArmor');
  }
}

const DEFAULT_DEV_NODES = new Set(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);

function majorMinor(rdev: number): [number, number] {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
  const minor = Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
  return [major, minor];
}

function makedev(major: number, minor: number): bigint {
  const M = BigInt(major),
    m = BigInt(minor);
  return ((M & 0xfffn) << 8n) | (m & 0xffn) | ((m & ~0xffn) << 12n) | ((M & ~0xfffn) << 32n);
}

/**
 * linux.devices into the mount ops (after the spec's mounts, so /dev is the
 * container's): mknod as root outside any user namespace (owner and mode as
 * given); otherwise, where mknod is refused, the host's node at the same path
 * bound in, which must be a device of the same type and numbers. The nodes a
 * /dev tmpfs of ours already binds from the host (null, zero, ...) are kept.
 */
export function planDevices(b: PlanBuilder, spec: Spec, mknod: boolean, devTmpfs: boolean): void {
  const devices = spec.linux?.devices;
  if (devices === undefined) return;
  if (!Array.isArray(devices)) throw new SpecError('/linux/devices', 'must be an array');
  devices.forEach((d, i) => {
    const ptr = `/linux/devices/${i}`;
    if (typeof d !== 'object' || d === null) throw new SpecError(ptr, 'must be an object');
    if (typeof d.path !== 'string' || !d.path.startsWith('/') || d.path.includes('\0'))
      throw new SpecError(`${ptr}/path`, 'must be an absolute path');
    const path = posix.normalize(d.path);
    const ifmt: Record<string, number> = { c: 0o020000, u: 0o020000, b: 0o060000, p: 0o010000 };
    if (!(d.type in ifmt)) throw new SpecError(`${ptr}/type`, 'must be c, b, u or p');
    const isFifo = d.type === 'p';
    for (const k of ['major', 'minor'] as const)
      if (!isFifo && !(Number.isInteger(d[k]) && d[k]! >= 0 && d[k]! < 2 ** 31))
        throw new SpecError(`${ptr}/${k}`, 'must be a device number');
    if (d.fileMode !== undefined && !(Number.isInteger(d.fileMode) && d.fileMode >= 0 && d.fileMode <= 0o7777))
      throw new SpecError(`${ptr}/fileMode`, 'must be a file mode (0 to 07777)');
    if (devTmpfs && DEFAULT_DEV_NODES.has(path)) return; // bound from the host already
    if (mknod) {
      const parent = b.target(posix.dirname(path), 'dir', `${ptr}/path`);
      const target = posix.join(parent, posix.basename(path));
      b.add(
        {
          kind: OP.MKNOD,
          target,
          mode: ifmt[d.type] | (d.fileMode ?? 0o666),
          rdev: isFifo ? 0 : (makedev(d.major!, d.minor!) as unknown as number),
          uid: d.uid ?? 0,
          gid: d.gid ?? 0,
        },
        `mknod ${target} (${d.type} ${d.major ?? 0}:${d.minor ?? 0})`,
        target,
      );
      return;
    }
    let st;
    try {
      st = statSync(path);
    } catch {
      /* not on the host */
    }
    const want = d.type === 'b' ? 'block' : isFifo ? 'fifo' : 'char';
    const have = st?.isBlockDevice() ? 'block' : st?.isCharacterDevice() ? 'char' : st?.isFIFO() ? 'fifo' : undefined;
    const [maj, min] = st ? majorMinor(st.rdev) : [-1, -1];
    if (!st || have !== want || (!isFifo && (maj !== d.major || min !== d.minor)))
      throw new SpecError(
        ptr,
        `cannot make device ${path} (${d.type} ${d.major ?? 0}:${d.minor ?? 0}): mknod is refused in a user namespace, and the host's ${path} ${st ? `is ${have ?? 'not a device'} ${maj}:${min}` : 'does not exist'}, so it cannot be bound instead`,
      );
    const target = b.target(path, 'file', `${ptr}/path`);
    b.add(
      { kind: OP.BIND, source: path, target, attrSet: MOUNT_ATTR.NOSUID | MOUNT_ATTR.NOEXEC },
      `bind-mount ${path} -> ${target} (linux.devices)`,
      target,
      path,
    );
  });
}
