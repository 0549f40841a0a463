// Shared by the hostile tests: the built CLI as a pilot starts it
// (bin/nodularity -> `node -- dist/cli/main.js`), the unprivileged test user,
// and a minimal OCI layout built by hand.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/env.js';
import { makeTar } from '../image/fixtures/tarball.js';
import { requireFreshDist } from '../helpers/cli.js';

/** package.json's bin, made executable as npm install/link makes it. */
export const binPath = join(
  repoRoot,
  (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin.nodularity!,
);
if (existsSync(binPath) && !(statSync(binPath).mode & 0o100)) chmodSync(binPath, statSync(binPath).mode | 0o111);
export const mainJs = join(repoRoot, 'dist', 'cli', 'main.js');

/** Throw unless dist/ is at least as new as every lib/ source: the CLI under test is this checkout's. */
export const requireBuiltCli = requireFreshDist;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

/**
 * argv that runs `argv` without NODE_OPTIONS in its environment. Deleting it
 * from spawn's env is not enough under tap: @tapjs/processinfo wraps
 * child_process and puts its own NODE_OPTIONS back, and a NODE_OPTIONS in
 * the real environment is what Node prefers over one in an --env-file, so
 * the attack would not even be tried. env(1) execs, so the pid is the CLI's.
 */
export function bare(argv: string[]): [string, string[]] {
  return ['/usr/bin/env', ['-u', 'NODE_OPTIONS', ...argv]];
}

/** Run the installed-style CLI, with no NODE_OPTIONS (see bare). */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000): CliResult {
  const e = { ...process.env, ...env };
  const r = spawnSync(...bare([binPath, ...args]), { encoding: 'utf8', env: e, timeout });
  return { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr };
}

export const TEST_USER = process.env.NODULARITY_TEST_USER || 'nodularity-test';
/** uid:gid of the unprivileged test user (root pass only). */
export function testUser(): { uid: number; gid: number } {
  return {
    uid: Number(execFileSync('id', ['-u', TEST_USER], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', TEST_USER], { encoding: 'utf8' }).trim()),
  };
}

function blob(layout: string, data: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(data).digest('hex');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/**
 * An OCI layout (tag `latest`) with one layer (a small file, or the tar
 * given) and the given config fields; returns the layout dir and its
 * manifest digest (the cache key).
 */
export async function makeLayout(
  dir: string,
  config: Record<string, unknown> = {},
  layerTar?: Buffer,
): Promise<{ layout: string; manifestDigest: string }> {
  const layout = join(dir, 'layout');
  mkdirSync(layout, { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const tarBuf = layerTar ?? (await makeTar([{ name: 'hello.txt', content: 'from the real image\n' }]));
  const layer = blob(layout, tarBuf);
  const cfg = blob(
    layout,
    Buffer.from(
      JSON.stringify({
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: { Env: ['PATH=/bin'], ...config },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
        history: [{ created_by: 'nodularity hostile test' }],
      }),
    ),
  );
  const manifest = blob(
    layout,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    ),
  );
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'latest' },
        },
      ],
    }),
  );
  return { layout, manifestDigest: manifest.digest };
}

export { spawnSync };
