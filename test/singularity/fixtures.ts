// Images for the Apptainer-compatible front end: Singularity sandboxes made
// from the busybox test rootfs, and a runner that collects output.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, type ExecOptions } from '../../lib/index.js';
import { scratch, testRootfs } from '../helpers/env.js';

type T = Parameters<typeof scratch>[0];

export interface SandboxParts {
  env?: Record<string, string>;
  runscript?: string;
  test?: string;
  files?: Record<string, string>;
}

/** A Singularity sandbox: the test rootfs plus /.singularity.d (env scripts, runscript, test). */
export function makeSandbox(
  t: T,
  parts: SandboxParts = {},
  dir = join(scratch(t, 'nodularity-sandbox-'), 'img'),
): string {
  execFileSync('cp', ['-a', testRootfs(), dir]);
  const sd = join(dir, '.singularity.d');
  mkdirSync(join(sd, 'env'), { recursive: true });
  for (const [name, text] of Object.entries(parts.env ?? {})) writeFileSync(join(sd, 'env', name), text);
  const exe = (p: string, text: string) => {
    writeFileSync(p, text);
    chmodSync(p, 0o755);
  };
  if (parts.runscript) exe(join(sd, 'runscript'), parts.runscript);
  if (parts.test) exe(join(sd, 'test'), parts.test);
  for (const [p, text] of Object.entries(parts.files ?? {})) exe(join(dir, p), text);
  return dir;
}

/** exec() a shell script in an image, output collected. */
export async function sh(image: string, script: string, o: ExecOptions = {}) {
  const c = await exec(image, ['/bin/sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'], ...o });
  let out = '',
    err = '';
  c.stdout!.on('data', (d) => (out += d));
  c.stderr!.on('data', (d) => (err += d));
  const closed = new Promise((res) => c.once('close', res));
  const r = await c.exited;
  await closed;
  return { code: r.exitCode, out, err, container: c };
}
