// The Debian image of the --fakeroot tests (scripts/debian-image.sh) and what
// goes with it: a .deb made with dpkg-deb, the state of a tree to compare, and
// the subordinate ids for root.
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { isRoot, repoRoot } from '../helpers/env.js';

/** The Debian image for this identity (built here as root when missing; the unprivileged pass needs the CI step). */
export function debianImage(): string {
  const args = isRoot ? [] : [userInfo().username];
  try {
    return execFileSync('sh', [join(repoRoot, 'scripts', 'debian-image.sh'), ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (e) {
    throw new Error(`the Debian test image is missing: ${(e as { stderr?: string }).stderr ?? e}`);
  }
}

/** A .deb installing /usr/bin/NAME, made with dpkg-deb. */
export function makeDeb(dir: string, name: string): string {
  const root = join(dir, `${name}-pkg`);
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
  writeFileSync(
    join(root, 'DEBIAN', 'control'),
    `Package: ${name}\nVersion: 1.0\nArchitecture: all\nMaintainer: nodularity <dev@nodularity>\nDescription: fakeroot test package\n`,
  );
  writeFileSync(join(root, 'usr', 'bin', name), `#!/bin/sh\necho "${name} installed"\n`);
  chmodSync(join(root, 'usr', 'bin', name), 0o755);
  const deb = join(dir, `${name}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-b', root, deb], { stdio: 'ignore' });
  return deb;
}

/** Owner, mode, size and mtime of every file of a tree: what "unchanged" means for the image. */
export function treeState(dir: string): string {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = lstatSync(p);
    out.push(`${p} ${st.uid}:${st.gid} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
    if (st.isDirectory()) for (const e of readdirSync(p).sort()) walk(join(p, e));
  };
  walk(dir);
  return out.join('\n');
}

/**
 * The environment for --fakeroot with ranges in this pass: the test user's
 * come from /etc/subuid; root has none on a CI machine, so its pass maps ids
 * 1..65535 to themselves (the base image's files are owned by the host's
 * ids) through a subuid file of its own.
 */
export function fakerootIdEnv(dir: string): NodeJS.ProcessEnv {
  if (!isRoot) return {};
  const ids = join(dir, 'root-subid');
  writeFileSync(ids, 'root:1:65535\n');
  return { NODULARITY_SUBUID_FILE: ids, NODULARITY_SUBGID_FILE: ids };
}
