// `pull SRC DEST` makes DEST/rootfs a Singularity sandbox, as
// `apptainer build --sandbox DEST docker://...` does: the image config's Env
// as /.singularity.d/env/10-docker2singularity.sh and its Entrypoint + Cmd as
// /.singularity.d/runscript, so `exec`/`run DEST/rootfs` keep the config
// (labels in /.singularity.d/labels.json). The tree is still in the pull's
// private 0700 temp directory when this runs, so nobody else can change it;
// an image that brings its own /.singularity.d (or a symlink there) is left
// as it is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageConfig } from './config.js';

/** A word for sh, single-quoted. */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function isRealDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

function writeNew(p: string, text: string, mode: number): void {
  const fd = fs.openSync(
    p,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
    mode,
  );
  try {
    fs.writeSync(fd, text);
    fs.fchmodSync(fd, mode);
  } finally {
    fs.closeSync(fd);
  }
}

/** The env script's text: `export NAME='value'` per Env entry. */
export function envScript(env: string[]): string {
  const lines = ['#!/bin/sh', "# Made by nodularity pull from the image config's Env."];
  for (const kv of env) {
    const eq = kv.indexOf('=');
    if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(kv.slice(0, eq))) continue;
    lines.push(`export ${kv.slice(0, eq)}=${q(kv.slice(eq + 1))}`);
  }
  return lines.join('\n') + '\n';
}

/** The runscript's text: Entrypoint followed by the arguments, or by Cmd when there are none (docker's rule). */
export function runscript(entrypoint: string[], cmd: string[]): string {
  const ep = entrypoint.map(q).join(' ');
  const dflt = cmd.map(q).join(' ');
  return [
    '#!/bin/sh',
    '# Made by nodularity pull from the image config: Entrypoint, then the',
    '# arguments given, or Cmd when there are none (as docker runs an image).',
    `if [ $# -eq 0 ]; then set -- ${dflt}; fi`,
    ep ? `exec ${ep} "$@"` : 'exec "$@"',
    '',
  ].join('\n');
}

/** Write /.singularity.d for `rootfs` from `config`, where the image has not. Needs the image's /bin/sh to be usable. */
export function writeSandboxFiles(rootfs: string, config: ImageConfig): void {
  const sd = path.join(rootfs, '.singularity.d');
  if (fs.existsSync(sd) || isSymlink(sd)) return;
  // Without a shell in the image neither file could run; `exec DEST` still
  // takes the config from DEST/image.json.
  if (!isRealDir(path.join(rootfs, 'bin')) && !isRealDir(path.join(rootfs, 'usr', 'bin'))) return;
  fs.mkdirSync(sd, 0o755);
  fs.mkdirSync(path.join(sd, 'env'), 0o755);
  writeNew(path.join(sd, 'env', '10-docker2singularity.sh'), envScript(config.env), 0o755);
  if (config.entrypoint.length || config.cmd.length)
    writeNew(path.join(sd, 'runscript'), runscript(config.entrypoint, config.cmd), 0o755);
  writeNew(path.join(sd, 'labels.json'), JSON.stringify(config.labels ?? {}, null, 2) + '\n', 0o644);
}

function isSymlink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
