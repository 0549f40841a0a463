// Stage "etc": the caller in the image's /etc/passwd and /etc/group (the
// image's entries kept, read inside the image: session-files.ts), and name
// resolution and time zone from the host (/etc/resolv.conf, /etc/hosts,
// /etc/localtime, read-only), as Apptainer binds them; --no-mount leaves any
// of them out (bind-paths: /etc/hosts and /etc/localtime).
import { existsSync } from 'node:fs';
import type { Mount } from '../../oci/spec.js';
import { groupFor, hostUser, passwdFor } from '../session-files.js';
import { bind, imageHas } from './paths.js';

/** Apptainer's `bind path` defaults, what --no-mount bind-paths leaves out. */
export const BIND_PATHS = ['/etc/localtime', '/etc/hosts'];
const HOST_ETC = ['/etc/resolv.conf', '/etc/hosts', '/etc/localtime'];

/** Read-only binds of the host's /etc files that exist and are not left out. */
export function planEtcBinds(noMount: ReadonlySet<string>, exists: (p: string) => boolean = existsSync): Mount[] {
  return HOST_ETC.filter(
    (f) => exists(f) && !noMount.has(f) && !(noMount.has('bind-paths') && BIND_PATHS.includes(f)),
  ).map((f) => bind(f, f, true));
}

/** Contents of the session's /etc/passwd and /etc/group (container path -> text), for session.ts. */
export async function planIdentityFiles(
  rootfs: string,
  ids: { uid: number; gid: number },
  home: string,
): Promise<Map<string, string>> {
  const user = hostUser(ids.uid, ids.gid, home);
  const files = new Map<string, string>();
  files.set('/etc/passwd', await passwdFor(rootfs, user, (p) => imageHas(rootfs, p, 'file')));
  files.set('/etc/group', await groupFor(rootfs, user));
  return files;
}
