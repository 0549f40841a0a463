// Test images built with the real tools from the offline busybox rootfs:
//   v1: `umoci repack` of busybox plus files exercising modes, links, setuid
//   v2: v1 + a tar-stream layer (whiteout, opaque directory, device, fifo),
//       added with `umoci raw add-layer` (umoci never writes opaque entries)
//   v3: v2 unpacked, changed and `umoci repack`ed (umoci's own whiteouts)
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { makeTar } from './tarball.js';
import { isRoot, repoRoot, run, scratch } from './tools.js';

/** scripts/busybox-rootfs.mjs has no typings; load it by URL so TypeScript does not look for them. */
async function makeBusyboxRootfs(dir: string): Promise<string> {
  const mod = (await import(new URL(`file://${repoRoot}/scripts/busybox-rootfs.mjs`).href)) as { makeBusyboxRootfs: (d: string) => string };
  return mod.makeBusyboxRootfs(dir);
}

export interface FixtureImage {
  /** OCI layout directory holding tags v1, v2, v3. */
  layout: string;
  /** Scratch directory everything lives under. */
  dir: string;
}

const rootless = (): string[] => (isRoot ? [] : ['--rootless']);

/** Build the three-tag layout described above under a fresh scratch dir. */
export async function buildFixtureImage(): Promise<FixtureImage> {
  const dir = scratch('img');
  const layout = path.join(dir, 'layout');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:base`]);

  // v1
  const b1 = path.join(dir, 'b1');
  run('umoci', ['unpack', ...rootless(), '--image', `${layout}:base`, b1]);
  const r = path.join(b1, 'rootfs');
  await makeBusyboxRootfs(r);
  fs.mkdirSync(path.join(r, 'data/nested/deeper'), { recursive: true });
  fs.writeFileSync(path.join(r, 'data/hello.txt'), 'hello from layer 1\n');
  fs.linkSync(path.join(r, 'data/hello.txt'), path.join(r, 'data/hardlink.txt'));
  fs.writeFileSync(path.join(r, 'data/exec.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  fs.writeFileSync(path.join(r, 'data/setuid-bin'), 'not really a binary\n');
  fs.chmodSync(path.join(r, 'data/setuid-bin'), 0o4755);
  fs.writeFileSync(path.join(r, 'data/setgid-bin'), 'sg\n');
  fs.chmodSync(path.join(r, 'data/setgid-bin'), 0o2750);
  fs.writeFileSync(path.join(r, 'data/private'), 'secret\n', { mode: 0o600 });
  fs.writeFileSync(path.join(r, 'data/empty'), '');
  fs.writeFileSync(path.join(r, 'data/nested/deeper/file'), Buffer.alloc(300_000, 7));
  fs.symlinkSync('hello.txt', path.join(r, 'data/rel-link'));
  fs.symlinkSync('/etc/passwd', path.join(r, 'data/abs-link'));
  fs.symlinkSync('/does/not/exist', path.join(r, 'data/dangling'));
  fs.mkdirSync(path.join(r, 'data/ro-dir'));
  fs.writeFileSync(path.join(r, 'data/ro-dir/inside'), 'in a read-only dir\n');
  fs.chmodSync(path.join(r, 'data/ro-dir'), 0o555);
  fs.writeFileSync(path.join(r, 'deleteme.txt'), 'layer 2 deletes me\n');
  fs.mkdirSync(path.join(r, 'replaced/sub'), { recursive: true });
  fs.writeFileSync(path.join(r, 'replaced/old1.txt'), 'old 1\n');
  fs.writeFileSync(path.join(r, 'replaced/sub/old2.txt'), 'old 2\n');
  fs.utimesSync(path.join(r, 'data/hello.txt'), new Date('2001-02-03T04:05:06Z'), new Date('2001-02-03T04:05:06Z'));
  fs.appendFileSync(path.join(r, 'etc/passwd'), 'app:x:1234:2345:app user:/home/app:/bin/sh\n');
  fs.appendFileSync(path.join(r, 'etc/group'), 'appgrp:x:2345:\nextra:x:3456:app\n');
  run('umoci', ['repack', '--image', `${layout}:v1`, b1]);
  run('umoci', ['config', '--image', `${layout}:v1`, '--config.env', 'GREETING=hello world', '--config.env', 'PATH=/bin:/usr/bin',
    '--config.entrypoint', '/bin/sh', '--config.cmd', '-c', '--config.cmd', 'echo $GREETING', '--config.workingdir', '/data',
    '--config.user', 'app', '--config.label', 'org.example.test=nodularity']);

  // v2: opaque directory and whiteout, crafted
  const layer2 = await makeTar([
    { name: '.wh.deleteme.txt' },
    { name: 'replaced/', type: 'directory', mode: 0o750 },
    { name: 'replaced/.wh..wh..opq' },
    { name: 'replaced/new.txt', content: 'new in layer 2\n' },
    { name: 'dev/', type: 'directory', mode: 0o755 },
    { name: 'dev/null2', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
    { name: 'data/fifo', type: 'fifo', mode: 0o644 },
    { name: 'data/from-layer2.txt', content: 'layer 2 file\n', mode: 0o640 },
  ]);
  const layer2File = path.join(dir, 'layer2.tar');
  fs.writeFileSync(layer2File, layer2);
  run('umoci', ['raw', 'add-layer', '--image', `${layout}:v1`, '--tag', 'v2', layer2File]);

  // v3: changed by umoci itself
  const b3 = path.join(dir, 'b3');
  run('umoci', ['unpack', ...rootless(), '--image', `${layout}:v2`, b3]);
  const r3 = path.join(b3, 'rootfs');
  fs.rmSync(path.join(r3, 'data/exec.sh'));
  fs.writeFileSync(path.join(r3, 'data/new-in-3.txt'), 'layer 3\n');
  fs.writeFileSync(path.join(r3, 'data/hello.txt'), 'hello from layer 3\n');
  fs.rmSync(path.join(r3, 'replaced/new.txt'));
  fs.symlinkSync('../data/hello.txt', path.join(r3, 'replaced/link-in-3'));
  run('umoci', ['repack', '--image', `${layout}:v3`, b3]);
  return { layout, dir };
}

/**
 * Tag `tag` in the layout as an OCI image index over existing tags, each
 * with a platform, so that index resolution has something to choose from.
 */
export function addIndexTag(layout: string, tag: string, entries: { from: string; platform: { os: string; architecture: string; variant?: string } }[]): string {
  const indexFile = path.join(layout, 'index.json');
  const top = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as { manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[] };
  const byTag = (t: string) => {
    const d = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === t);
    if (!d) throw new Error(`no tag ${t} in ${layout}`);
    return d;
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: entries.map((e) => {
      const d = byTag(e.from);
      return { mediaType: d.mediaType, digest: d.digest, size: d.size, platform: e.platform };
    }),
  };
  const bytes = Buffer.from(JSON.stringify(index));
  const hex = createHash('sha256').update(bytes).digest('hex');
  fs.writeFileSync(path.join(layout, 'blobs/sha256', hex), bytes);
  top.manifests.push({ mediaType: index.mediaType, digest: `sha256:${hex}`, size: bytes.length, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(indexFile, JSON.stringify(top));
  return `sha256:${hex}`;
}

/** The manifest digest a tag points to in a layout. */
export function tagDigest(layout: string, tag: string): string {
  const top = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const d = top.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!d) throw new Error(`no tag ${tag} in ${layout}`);
  return d.digest;
}

/**
 * A layer big enough that a pull can be killed in the middle of unpacking
 * it: thousands of small files and some incompressible data.
 */
export async function addBigLayer(layout: string, from: string, tag: string, dir: string): Promise<void> {
  const entries: Parameters<typeof makeTar>[0] = [{ name: 'big/', type: 'directory' }];
  for (let i = 0; i < 40; i++) entries.push({ name: `big/d${i}/`, type: 'directory' });
  for (let i = 0; i < 4000; i++) entries.push({ name: `big/d${i % 40}/f${i}`, content: `file ${i}\n`.repeat(1 + (i % 50)) });
  for (let i = 0; i < 24; i++) entries.push({ name: `big/blob${i}`, content: randomBytes(1 << 20) });
  const file = path.join(dir, `${tag}.tar`);
  fs.writeFileSync(file, await makeTar(entries));
  run('umoci', ['raw', 'add-layer', '--image', `${layout}:${from}`, '--tag', tag, file]);
  fs.rmSync(file);
}
