// Stage "identity": who the payload is and what it may do. --fakeroot maps
// uid 0 to the caller (and 1..N to the caller's subordinate ranges when both
// exist), with the namespace's full capability set (Apptainer's
// SetupPrivileged); root keeps no capabilities unless asked (--keep-privs,
// --add-caps), as a pilot's payload must not get them; --drop-caps last.
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { SpecError } from '../../errors.js';
import type { LinuxIDMapping } from '../../oci/spec.js';
import { CAPS } from '../../plan/flags.js';

let capLastCache: number | undefined;
/** Every capability this kernel knows (up to /proc/sys/kernel/cap_last_cap). */
export function allCaps(): string[] {
  if (capLastCache === undefined) {
    try {
      capLastCache = parseInt(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'), 10);
    } catch {
      capLastCache = 40;
    }
  }
  return Object.keys(CAPS).filter((c) => CAPS[c]! <= capLastCache!);
}

/** `CAP_X`, `cap_x`, `x` or `all`, comma lists, into CAP_ names; an unknown one names the option. */
export function capList(v: string | string[] | undefined, option: string): string[] {
  const out: string[] = [];
  for (const raw of (Array.isArray(v) ? v : v === undefined ? [] : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (raw.toLowerCase() === 'all') {
      out.push(...allCaps());
      continue;
    }
    const n = raw.toUpperCase().startsWith('CAP_') ? raw.toUpperCase() : `CAP_${raw.toUpperCase()}`;
    if (!(n in CAPS)) throw new SpecError(option, `unknown capability ${JSON.stringify(raw)}`);
    out.push(n);
  }
  return out;
}

/**
 * The caller's subordinate range from /etc/subuid or /etc/subgid (by name or
 * uid, the first entry, as newuidmap reads them). NODULARITY_SUBUID_FILE and
 * NODULARITY_SUBGID_FILE name other files (tests; newuidmap still checks
 * the real ones for an unprivileged caller).
 */
export function subordinateRange(
  file: string,
  uid: number,
  name: string | undefined,
): { start: number; count: number } | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if ((who === name || who === String(uid)) && /^\d+$/.test(start ?? '') && /^[1-9]\d*$/.test(count ?? ''))
      return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/** uid/gid maps for --fakeroot: 0 -> the caller, 1..N -> the caller's ranges when both exist. */
export function fakerootMappings(
  euid: number,
  egid: number,
  env: NodeJS.ProcessEnv,
  infos: string[],
): { uid: LinuxIDMapping[]; gid: LinuxIDMapping[] } {
  let name: string | undefined;
  try {
    name = userInfo().username;
  } catch {
    /* no passwd entry */
  }
  const subuid = env.NODULARITY_SUBUID_FILE || '/etc/subuid';
  const subgid = env.NODULARITY_SUBGID_FILE || '/etc/subgid';
  const ur = subordinateRange(subuid, euid, name),
    gr = subordinateRange(subgid, euid, name);
  const uid: LinuxIDMapping[] = [{ containerID: 0, hostID: euid, size: 1 }];
  const gid: LinuxIDMapping[] = [{ containerID: 0, hostID: egid, size: 1 }];
  if (ur && gr) {
    uid.push({ containerID: 1, hostID: ur.start, size: ur.count });
    gid.push({ containerID: 1, hostID: gr.start, size: gr.count });
  } else {
    infos.push(`User not listed in ${ur ? subgid : subuid}, using a root-mapped namespace (only uid 0 exists inside)`);
  }
  return { uid, gid };
}

export interface IdentityInput {
  fakeroot: boolean;
  keepPrivs: boolean;
  /** The caller's effective ids. */
  euid: number;
  egid: number;
  hostEnv: NodeJS.ProcessEnv;
  /** CAP_ names, from capList. */
  addCaps: readonly string[];
  dropCaps: readonly string[];
}

export interface IdentityPlan {
  /** Set only with --fakeroot (else createSpec's default maps stand). */
  uidMappings?: LinuxIDMapping[];
  gidMappings?: LinuxIDMapping[];
  /** Bounding = effective = permitted, in capability-number order; absent when none. */
  capabilities?: string[];
  /** INFO remarks (a root-mapped namespace taken). */
  infos: string[];
}

/** The id maps and capability sets of the payload. */
export function planIdentity(i: IdentityInput): IdentityPlan {
  const out: IdentityPlan = { infos: [] };
  if (i.fakeroot) {
    const maps = fakerootMappings(i.euid, i.egid, i.hostEnv, out.infos);
    out.uidMappings = maps.uid;
    out.gidMappings = maps.gid;
  }
  const caps = new Set<string>(i.fakeroot || (i.euid === 0 && i.keepPrivs) ? allCaps() : []);
  for (const c of i.addCaps) caps.add(c);
  for (const c of i.dropCaps) caps.delete(c);
  if (caps.size) out.capabilities = [...caps].sort((a, b) => CAPS[a]! - CAPS[b]!);
  return out;
}
