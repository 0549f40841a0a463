// Files made for one launch and bound into the container: /etc/passwd and
// /etc/group carrying the calling user (the image's entries kept). They live
// in a private temp dir only until the child has bound them: the kernel
// refuses to bind an unlinked file, so they cannot be unlinked before.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { SpecError } from '../errors.js';
import { InRootReadError, readFileInRoot } from '../plan/inroot.js';

export interface SessionUser {
  name: string;
  uid: number;
  gid: number;
  groupName: string;
  home: string;
  shell: string;
  gecos: string;
}

const hostUsers = new Map<string, Omit<SessionUser, 'home'>>();

/**
 * The calling user as the host's passwd/group know it (or a made-up name when
 * they do not). Looked up once per uid:gid: a pilot launches many containers.
 */
export function hostUser(uid: number, gid: number, home: string): SessionUser {
  const key = `${uid}:${gid}`;
  let u = hostUsers.get(key);
  if (!u) hostUsers.set(key, (u = lookUpHostUser(uid, gid)));
  return { ...u, home };
}

function lookUpHostUser(uid: number, gid: number): Omit<SessionUser, 'home'> {
  let name = uid === 0 ? 'root' : `user${uid}`;
  let shell = '/bin/sh';
  let gecos = '';
  try {
    const u = userInfo();
    if (u.uid === uid) {
      name = u.username;
      if (u.shell) shell = u.shell;
    }
  } catch {
    /* no passwd entry for this uid */
  }
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((f) => Number(f[2]) === uid && f[0] === name);
    if (line) gecos = line[4] ?? '';
  } catch {
    /* none */
  }
  let groupName = gid === 0 ? 'root' : name;
  try {
    const g = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .map((l) => l.split(':'))
      .find((f) => f.length >= 3 && Number(f[2]) === gid);
    if (g) groupName = g[0];
  } catch {
    /* none */
  }
  return { name, uid, gid, groupName, shell, gecos };
}

/**
 * The lines of the image's /etc/passwd or /etc/group. Absent is fine (the
 * user's entry alone); anything else odd about it (a FIFO, a device, a huge
 * file, a symlink loop) is an error naming the file, not a hang.
 */
async function imageTable(rootfs: string, file: string): Promise<string[]> {
  try {
    return readFileInRoot(rootfs, file, 4 << 20)
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
  } catch (e) {
    if ((e as InRootReadError).code === 'ENOENT' || (e as InRootReadError).code === 'ENOTDIR') return [];
    throw new SpecError('image', (e as Error).message);
  }
}

/** The image's /etc/passwd with the user's entry replacing any of the same name or uid. */
export async function passwdFor(rootfs: string, u: SessionUser, shellExists: (p: string) => boolean): Promise<string> {
  const lines = (await imageTable(rootfs, '/etc/passwd')).filter((l) => {
    const f = l.split(':');
    return f[0] !== u.name && Number(f[2]) !== u.uid;
  });
  const shell = shellExists(u.shell) ? u.shell : '/bin/sh';
  lines.push(`${u.name}:x:${u.uid}:${u.gid}:${u.gecos}:${u.home}:${shell}`);
  return lines.join('\n') + '\n';
}

/** The image's /etc/group with the user's primary group (and the user as its member). */
export async function groupFor(rootfs: string, u: SessionUser): Promise<string> {
  const lines = (await imageTable(rootfs, '/etc/group')).filter((l) => {
    const f = l.split(':');
    return f[0] !== u.groupName && Number(f[2]) !== u.gid;
  });
  lines.push(`${u.groupName}:x:${u.gid}:${u.name}`);
  return lines.join('\n') + '\n';
}

export interface SessionFiles {
  /** Bind sources by container path. */
  files: Map<string, string>;
  /** Remove them: call once the container has started (or failed to). */
  close(): void;
}

export function makeSessionFiles(contents: Map<string, string>): SessionFiles {
  const dir = mkdtempSync(join(tmpdir(), 'nodularity-session-'));
  const files = new Map<string, string>();
  const close = () => rmSync(dir, { recursive: true, force: true });
  try {
    for (const [dest, text] of contents) {
      const p = join(dir, dest.replace(/\//g, '_'));
      writeFileSync(p, text, { mode: 0o644 });
      files.set(dest, p);
    }
  } catch (e) {
    close();
    throw e;
  }
  return { files, close };
}
