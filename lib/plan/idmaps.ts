// Stage "id maps": the user namespace's uid/gid maps and who writes them
// (the child itself for a single ID, the parent for root's ranges,
// newuidmap/newgidmap otherwise), and the ids the setup runs as.
import { SpecError } from '../errors.js';
import type { LinuxIDMapping, Spec } from '../oci/spec.js';
import { which } from '../which.js';
import { IDMAP } from './types.js';

const helperCache = new Map<string, string | null>();
/** Absolute path of newuidmap/newgidmap, or null (one PATH search: lib/which.ts). */
export function findHelper(name: string): string | null {
  if (!helperCache.has(name)) helperCache.set(name, which(name));
  return helperCache.get(name)!;
}

export function idMapText(maps: LinuxIDMapping[]): string {
  return maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}`).join('\n') + '\n';
}

export function isMapped(maps: LinuxIDMapping[], id: number): boolean {
  return maps.some((m) => id >= m.containerID && id < m.containerID + m.size);
}

/** What the id-map stage decides (the LaunchPlan fields it fills, and what later stages need). */
export interface IdMapPlan {
  idMode: number;
  uidMap?: string;
  gidMap?: string;
  setgroupsDeny: boolean;
  uidHelperArgs?: string[];
  gidHelperArgs?: string[];
  setupUid: number;
  setupGid: number;
  /** Supplementary groups to set, or undefined to leave them (denied with a single-ID map). */
  groups?: number[];
  /** Whether gid 5 (tty, devpts gid=5) exists in the container. */
  mapsGid5: boolean;
}

/**
 * The id maps for a spec, as the caller (euid, egid) may write them.
 * `helper` finds newuidmap/newgidmap (injected so the stage stays pure).
 */
export function planIdMaps(
  spec: Spec,
  userns: boolean,
  euid: number,
  egid: number,
  helper: (name: string) => string | null = findHelper,
  userJoined = false,
): IdMapPlan {
  const proc = spec.process!;
  const linux = spec.linux ?? {};
  if (userJoined) {
    // A user namespace joined by path has its maps already; nothing to write.
    // Its setgroups may be denied (a single-ID namespace): groups are set only
    // when the spec asks for some, and then a denial is the step's error.
    return {
      idMode: IDMAP.NONE,
      setgroupsDeny: false,
      setupUid: -1,
      setupGid: -1,
      groups: proc.user.additionalGids?.length ? proc.user.additionalGids : undefined,
      mapsGid5: false,
    };
  }
  if (!userns) {
    if (euid !== 0) throw new SpecError('/linux/namespaces', 'a user namespace is required when not running as root');
    if (linux.uidMappings?.length || linux.gidMappings?.length)
      throw new SpecError('/linux/uidMappings', 'id mappings need a user namespace in /linux/namespaces');
    return {
      idMode: IDMAP.NONE,
      setgroupsDeny: false,
      setupUid: -1,
      setupGid: -1,
      groups: proc.user.additionalGids ?? [],
      mapsGid5: true,
    };
  }
  const uidMaps = linux.uidMappings ?? [{ containerID: proc.user.uid, hostID: euid, size: 1 }];
  const gidMaps = linux.gidMappings ?? [{ containerID: proc.user.gid, hostID: egid, size: 1 }];
  if (uidMaps.length === 0) throw new SpecError('/linux/uidMappings', 'must map at least one id');
  if (gidMaps.length === 0) throw new SpecError('/linux/gidMappings', 'must map at least one id');
  if (!isMapped(uidMaps, proc.user.uid))
    throw new SpecError('/process/user/uid', `uid ${proc.user.uid} is not in linux.uidMappings`);
  if (!isMapped(gidMaps, proc.user.gid))
    throw new SpecError('/process/user/gid', `gid ${proc.user.gid} is not in linux.gidMappings`);
  const single = (maps: LinuxIDMapping[], id: number) =>
    maps.length === 1 && maps[0].size === 1 && maps[0].hostID === id;
  let idMode: number;
  let uidHelperArgs: string[] | undefined, gidHelperArgs: string[] | undefined;
  if (single(uidMaps, euid) && single(gidMaps, egid) && !proc.user.additionalGids?.length) {
    idMode = IDMAP.SELF;
  } else if (euid === 0) {
    idMode = IDMAP.PARENT;
  } else {
    const nu = helper('newuidmap'),
      ng = helper('newgidmap');
    if (!nu || !ng)
      throw new SpecError(
        '/linux/uidMappings',
        'mapping ranges (or ids other than your own) as an unprivileged user needs newuidmap and newgidmap (Debian package uidmap) and entries in /etc/subuid and /etc/subgid',
      );
    idMode = IDMAP.HELPER;
    const flat = (maps: LinuxIDMapping[]) =>
      maps.flatMap((m) => [String(m.containerID), String(m.hostID), String(m.size)]);
    uidHelperArgs = [nu, ...flat(uidMaps)];
    gidHelperArgs = [ng, ...flat(gidMaps)];
  }
  for (const [k, g] of (proc.user.additionalGids ?? []).entries())
    if (!isMapped(gidMaps, g))
      throw new SpecError(`/process/user/additionalGids/${k}`, `gid ${g} is not in linux.gidMappings`);
  // Parent-written ranges: act as the namespace's root (when mapped) for the setup.
  const byParent = idMode === IDMAP.PARENT || idMode === IDMAP.HELPER;
  return {
    idMode,
    uidMap: idMapText(uidMaps),
    gidMap: idMapText(gidMaps),
    setgroupsDeny: idMode === IDMAP.SELF,
    uidHelperArgs,
    gidHelperArgs,
    setupUid: byParent && isMapped(uidMaps, 0) ? 0 : -1,
    setupGid: byParent && isMapped(gidMaps, 0) ? 0 : -1,
    // setgroups is denied with a single-ID map; elsewhere set exactly the spec's groups.
    groups: idMode === IDMAP.SELF ? undefined : (proc.user.additionalGids ?? []),
    mapsGid5: isMapped(gidMaps, 5),
  };
}
