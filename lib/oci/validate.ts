// Structural checks of a Spec, before any file system is looked at. Every
// failure is a SpecError with the JSON pointer of the field at fault.
import { SpecError } from '../errors.js';
import { validateSeccomp } from '../seccomp/validate.js';
import type { LinuxIDMapping, Spec } from './spec.js';

const NAMESPACE_TYPES = new Set(['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time']);

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkStrings(v: unknown, ptr: string, nonEmpty = false): string[] {
  if (!Array.isArray(v)) throw new SpecError(ptr, 'must be an array of strings');
  v.forEach((s, i) => {
    if (typeof s !== 'string') throw new SpecError(`${ptr}/${i}`, 'must be a string');
    if (s.includes('\0')) throw new SpecError(`${ptr}/${i}`, 'must not contain a NUL byte');
  });
  if (nonEmpty && v.length === 0) throw new SpecError(ptr, 'must not be empty');
  return v as string[];
}

function checkAbsolute(v: unknown, ptr: string): void {
  if (typeof v !== 'string' || !v.startsWith('/'))
    throw new SpecError(ptr, `must be an absolute path, got ${JSON.stringify(v)}`);
}

/** The largest valid uid/gid: (uid_t)-1 means "unchanged" to the kernel. */
export const MAX_ID = 0xfffffffe;

function checkUint(v: unknown, ptr: string, max = 0xffffffff): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
    throw new SpecError(ptr, `must be an integer between 0 and ${max}, got ${JSON.stringify(v)}`);
}

/** Check ranges are well formed and that neither side overlaps another entry. */
export function checkIdMappings(maps: unknown, ptr: string): LinuxIDMapping[] {
  if (!Array.isArray(maps)) throw new SpecError(ptr, 'must be an array of {containerID, hostID, size}');
  maps.forEach((m, i) => {
    if (!isObj(m)) throw new SpecError(`${ptr}/${i}`, 'must be an object {containerID, hostID, size}');
    checkUint(m.containerID, `${ptr}/${i}/containerID`);
    checkUint(m.hostID, `${ptr}/${i}/hostID`);
    checkUint(m.size, `${ptr}/${i}/size`);
    if ((m.size as number) === 0) throw new SpecError(`${ptr}/${i}/size`, 'must be at least 1');
    for (const side of ['containerID', 'hostID'] as const)
      if ((m[side] as number) + (m.size as number) - 1 > MAX_ID)
        throw new SpecError(`${ptr}/${i}/size`, `${side} range ends past ${MAX_ID}, the largest valid id`);
  });
  const ms = maps as LinuxIDMapping[];
  for (let i = 0; i < ms.length; i++)
    for (let j = 0; j < i; j++) {
      for (const side of ['containerID', 'hostID'] as const) {
        const a = ms[i],
          b = ms[j];
        if (a[side] < b[side] + b.size && b[side] < a[side] + a.size)
          throw new SpecError(
            `${ptr}/${i}`,
            `${side} range ${a[side]}..${a[side] + a.size - 1} overlaps entry ${j} (${b[side]}..${b[side] + b.size - 1})`,
          );
      }
    }
  if (ms.length > 340) throw new SpecError(ptr, 'the kernel accepts at most 340 ranges');
  return ms;
}

export function validateSpec(spec: unknown): asserts spec is Spec {
  if (!isObj(spec)) throw new SpecError('', 'the spec must be an object');
  if (typeof spec.ociVersion !== 'string') throw new SpecError('/ociVersion', 'must be a string such as "1.2.0"');
  if (!/^1\./.test(spec.ociVersion))
    throw new SpecError('/ociVersion', `unsupported version ${spec.ociVersion} (1.x expected)`);
  const proc = spec.process;
  if (!isObj(proc)) throw new SpecError('/process', 'is required');
  checkStrings(proc.args, '/process/args', true);
  if ((proc.args as string[])[0] === '') throw new SpecError('/process/args/0', 'must name an executable');
  if (proc.env !== undefined) {
    checkStrings(proc.env, '/process/env').forEach((e, i) => {
      if (!e.includes('=')) throw new SpecError(`/process/env/${i}`, `must be NAME=VALUE, got ${JSON.stringify(e)}`);
    });
  }
  checkAbsolute(proc.cwd, '/process/cwd');
  if (proc.terminal !== undefined && typeof proc.terminal !== 'boolean')
    throw new SpecError('/process/terminal', 'must be a boolean');
  if (proc.consoleSize !== undefined) {
    if (!isObj(proc.consoleSize)) throw new SpecError('/process/consoleSize', 'must be {height, width}');
    checkUint(proc.consoleSize.height, '/process/consoleSize/height', 0xffff);
    checkUint(proc.consoleSize.width, '/process/consoleSize/width', 0xffff);
  }
  if (!isObj(proc.user)) throw new SpecError('/process/user', 'is required ({uid, gid})');
  // 4294967295 is (uid_t)-1, "leave unchanged" to setresuid: as root
  // without a user namespace the payload would stay root.
  checkUint(proc.user.uid, '/process/user/uid', MAX_ID);
  checkUint(proc.user.gid, '/process/user/gid', MAX_ID);
  if (proc.user.additionalGids !== undefined) {
    if (!Array.isArray(proc.user.additionalGids))
      throw new SpecError('/process/user/additionalGids', 'must be an array');
    proc.user.additionalGids.forEach((g, i) => checkUint(g, `/process/user/additionalGids/${i}`, MAX_ID));
  }
  if (proc.rlimits !== undefined) {
    if (!Array.isArray(proc.rlimits)) throw new SpecError('/process/rlimits', 'must be an array');
    proc.rlimits.forEach((r, i) => {
      if (!isObj(r) || typeof r.type !== 'string')
        throw new SpecError(`/process/rlimits/${i}/type`, 'must be a string such as RLIMIT_NOFILE');
      checkUint(r.soft, `/process/rlimits/${i}/soft`, Number.MAX_SAFE_INTEGER);
      checkUint(r.hard, `/process/rlimits/${i}/hard`, Number.MAX_SAFE_INTEGER);
      if ((r.soft as number) > (r.hard as number))
        throw new SpecError(`/process/rlimits/${i}`, 'soft must not exceed hard');
    });
  }
  if (proc.capabilities !== undefined) {
    if (!isObj(proc.capabilities)) throw new SpecError('/process/capabilities', 'must be an object');
    for (const [k, v] of Object.entries(proc.capabilities)) {
      if (!['bounding', 'effective', 'inheritable', 'permitted', 'ambient'].includes(k))
        throw new SpecError(
          `/process/capabilities/${k}`,
          'is not a capability set (bounding, effective, inheritable, permitted, ambient)',
        );
      checkStrings(v, `/process/capabilities/${k}`);
    }
  }
  if (!isObj(spec.root)) throw new SpecError('/root', 'is required ({path})');
  if (typeof spec.root.path !== 'string' || spec.root.path === '') throw new SpecError('/root/path', 'must be a path');
  if (spec.hostname !== undefined && (typeof spec.hostname !== 'string' || spec.hostname.length > 64))
    throw new SpecError('/hostname', 'must be a string of at most 64 bytes');
  if (spec.mounts !== undefined) {
    if (!Array.isArray(spec.mounts)) throw new SpecError('/mounts', 'must be an array');
    spec.mounts.forEach((m, i) => {
      if (!isObj(m)) throw new SpecError(`/mounts/${i}`, 'must be an object');
      checkAbsolute(m.destination, `/mounts/${i}/destination`);
      if (m.source !== undefined && typeof m.source !== 'string')
        throw new SpecError(`/mounts/${i}/source`, 'must be a string');
      if (m.type !== undefined && typeof m.type !== 'string')
        throw new SpecError(`/mounts/${i}/type`, 'must be a string');
      if (m.options !== undefined) checkStrings(m.options, `/mounts/${i}/options`);
    });
  }
  const linux = spec.linux;
  if (linux !== undefined) {
    if (!isObj(linux)) throw new SpecError('/linux', 'must be an object');
    if (linux.namespaces !== undefined) {
      if (!Array.isArray(linux.namespaces)) throw new SpecError('/linux/namespaces', 'must be an array');
      const seen = new Set<string>();
      linux.namespaces.forEach((ns, i) => {
        if (!isObj(ns) || typeof ns.type !== 'string' || !NAMESPACE_TYPES.has(ns.type))
          throw new SpecError(
            `/linux/namespaces/${i}/type`,
            `unknown namespace type ${JSON.stringify(isObj(ns) ? ns.type : ns)} (one of ${[...NAMESPACE_TYPES].join(', ')})`,
          );
        if (seen.has(ns.type)) throw new SpecError(`/linux/namespaces/${i}`, `namespace ${ns.type} is listed twice`);
        seen.add(ns.type);
        if (ns.path !== undefined) {
          checkAbsolute(ns.path, `/linux/namespaces/${i}/path`);
          if ((ns.path as string).includes('\0'))
            throw new SpecError(`/linux/namespaces/${i}/path`, 'must not contain a NUL byte');
        }
      });
    }
    if (linux.uidMappings !== undefined) checkIdMappings(linux.uidMappings, '/linux/uidMappings');
    if (linux.gidMappings !== undefined) checkIdMappings(linux.gidMappings, '/linux/gidMappings');
    for (const key of ['maskedPaths', 'readonlyPaths'] as const) {
      if (linux[key] !== undefined)
        checkStrings(linux[key], `/linux/${key}`).forEach((p, i) => checkAbsolute(p, `/linux/${key}/${i}`));
    }
    if (
      linux.rootfsPropagation !== undefined &&
      !['private', 'rprivate', 'slave', 'rslave', 'shared', 'rshared', 'unbindable', 'runbindable'].includes(
        linux.rootfsPropagation as string,
      )
    )
      throw new SpecError('/linux/rootfsPropagation', `unknown propagation ${JSON.stringify(linux.rootfsPropagation)}`);
    if (linux.seccomp !== undefined) validateSeccomp(linux.seccomp, '/linux/seccomp');
  }
}
