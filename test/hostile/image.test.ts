// Hostile images against the pull side (issue 11, items 1, 2, 6, 18): an
// image's device nodes and setuid bits never become live on the host by
// default, a tree written outside the cache is unreachable until complete,
// image files that are FIFOs, devices or huge sparse files are refused
// without hanging or eating memory, sparse tar entries unpack exactly as
// GNU tar unpacks them, and a killed docker-archive pull's staging is swept.
// Through the library and the built CLI; each test checks the host after.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pullImage, type PulledImage } from '../../lib/image/index.js';
import { makeTar, type TarEntrySpec } from '../image/fixtures/tarball.js';
import { isRoot, removeAll, run, scratch } from '../image/fixtures/tools.js';
import { requireFreshBuild, runBuiltCli } from '../image/fixtures/built-cli.js';

type T = { teardown: (fn: () => void | Promise<void>) => void };

function tmpdir(t: T, prefix: string): string {
  const d = scratch(prefix);
  t.teardown(() => removeAll(d));
  return d;
}

/** An OCI layout (umoci) tagged `v1`: an empty image plus one layer of exactly `entries`. */
async function layoutWith(dir: string, entries: TarEntrySpec[]): Promise<string> {
  const layout = path.join(dir, 'layout');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:base`]);
  const tarFile = path.join(dir, 'layer.tar');
  fs.writeFileSync(tarFile, await makeTar(entries));
  run('umoci', ['raw', 'add-layer', '--image', `${layout}:base`, '--tag', 'v1', tarFile]);
  fs.rmSync(tarFile);
  return layout;
}

/** Every device node and every setuid/setgid file under `root`. */
function privileged(root: string): { devices: string[]; setid: string[] } {
  const out = { devices: [] as string[], setid: [] as string[] };
  const walk = (rel: string): void => {
    for (const n of fs.readdirSync(path.join(root, rel))) {
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.lstatSync(path.join(root, r));
      if (st.isBlockDevice() || st.isCharacterDevice()) out.devices.push(r);
      if (!st.isSymbolicLink() && st.mode & 0o6000) out.setid.push(r);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

// The image of items 1 and 2: a block device 7:0 (a loop device on the
// host), a world-writable char device, a setuid-root "su", a setgid dir.
const DEVICE_ENTRIES: TarEntrySpec[] = [
  { name: 'opt/', type: 'directory', mode: 0o755 },
  { name: 'opt/disk', type: 'block-device', mode: 0o600, devmajor: 7, devminor: 0 },
  { name: 'opt/mem', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: 'usr/', type: 'directory', mode: 0o755 },
  { name: 'usr/bin/', type: 'directory', mode: 0o755 },
  { name: 'usr/bin/su', content: '#!/bin/sh\nexec /bin/sh\n', mode: 0o4755 },
  { name: 'usr/bin/wall', content: '#!/bin/sh\n', mode: 0o2755, gid: 5 },
  { name: 'srv/', type: 'directory', mode: 0o2775 },
  { name: 'srv/file', content: 'plain\n', mode: 0o644 },
];

t.test('item 1: pull makes no device node by default; keepDevices is a cache entry of its own', async (t) => {
  const dir = tmpdir(t, 'hostile-dev');
  const layout = await layoutWith(dir, DEVICE_ENTRIES);
  const cacheDir = path.join(dir, 'cache');
  const plain = await pullImage(`oci:${layout}:v1`, { cacheDir });
  t.same(privileged(plain.rootfs).devices, [], 'no device node in the unpacked root');
  t.equal(plain.stats.devicesSkipped, 2, 'both devices counted as skipped');
  t.notOk(fs.existsSync(path.join(plain.rootfs, 'opt/disk')), 'nothing at all at opt/disk');
  // The pull result says so through progress too.
  const events: unknown[] = [];
  const again = await pullImage(`oci:${layout}:v1`, { cacheDir: path.join(dir, 'cache2'), onProgress: (e) => events.push(e) });
  t.same(events.filter((e) => (e as { type: string }).type === 'dropped'), [{ type: 'dropped', devicesSkipped: 2, setidDropped: isRoot ? 0 : 3 }], 'a `dropped` progress event counts them');
  t.same(privileged(again.rootfs).devices, []);

  const kept = await pullImage(`oci:${layout}:v1`, { cacheDir, keepDevices: true });
  t.equal(kept.manifestDigest, plain.manifestDigest, 'the same image');
  if (isRoot) {
    t.not(kept.rootfs, plain.rootfs, 'a root made with keepDevices is another cache entry');
    t.equal(kept.cached, false, 'not served from the default entry');
    const disk = fs.lstatSync(path.join(kept.rootfs, 'opt/disk'));
    t.ok(disk.isBlockDevice(), 'with keepDevices, root makes the block device');
    t.equal(disk.rdev, 7 * 256 + 0, 'as 7:0');
    t.ok(fs.lstatSync(path.join(kept.rootfs, 'opt/mem')).isCharacterDevice(), 'and the char device');
    t.equal(kept.stats.devicesSkipped, 0);
  } else {
    // mknod(2) needs CAP_MKNOD in the initial namespace: asked or not, skipped,
    // so the root is the default one.
    t.equal(kept.rootfs, plain.rootfs, 'unprivileged: keepDevices changes nothing, same entry');
    t.same(privileged(kept.rootfs).devices, [], 'unprivileged: no device even when asked');
    t.equal(kept.stats.devicesSkipped, 2);
  }
  // Neither entry is handed out for the other afterwards.
  const plainAgain = await pullImage(`oci:${layout}:v1`, { cacheDir });
  t.equal(plainAgain.cached, true);
  t.equal(plainAgain.rootfs, plain.rootfs, 'the default pull gets the default entry back');
  t.same(privileged(plainAgain.rootfs).devices, [], 'still without devices');
  const keptAgain = await pullImage(`oci:${layout}:v1`, { cacheDir, keepDevices: true });
  t.equal(keptAgain.rootfs, kept.rootfs, 'and keepDevices gets its own');
});

/** Sample the directory DEST is made in while a pull runs: what appeared, with which mode. */
function watchDest(dest: string): { stop: () => { temps: Map<string, Set<number>>; destSeenIncomplete: boolean; samples: number } } {
  const parent = path.dirname(dest);
  const base = path.basename(dest);
  const temps = new Map<string, Set<number>>();
  let destSeenIncomplete = false;
  let samples = 0;
  const timer = setInterval(() => {
    samples++;
    for (const n of fs.readdirSync(parent)) {
      let st: fs.Stats;
      try { st = fs.lstatSync(path.join(parent, n)); } catch { continue; }
      if (n === base) {
        if (!fs.existsSync(path.join(dest, 'image.json'))) destSeenIncomplete = true;
      } else if (n.startsWith(base)) {
        if (!temps.has(n)) temps.set(n, new Set());
        temps.get(n)!.add(st.mode & 0o7777);
      }
    }
  }, 1);
  return { stop: () => { clearInterval(timer); return { temps, destSeenIncomplete, samples }; } };
}

t.test('item 2: pull SRC DEST through the built CLI drops setuid/setgid and devices, and DEST is private until complete', async (t) => {
  requireFreshBuild();
  const dir = tmpdir(t, 'hostile-dest');
  // Some megabytes too, so the pull lasts long enough to be watched.
  const bulk: TarEntrySpec[] = [{ name: 'bulk/', type: 'directory' }];
  for (let i = 0; i < 400; i++) bulk.push({ name: `bulk/f${i}`, content: randomBytes(40_000) });
  const layout = await layoutWith(dir, [...DEVICE_ENTRIES, ...bulk]);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out, { mode: 0o755 });
  const dest = path.join(out, 'sandbox');
  const cache = path.join(dir, 'cache');
  const watch = watchDest(dest);
  const r = await runBuiltCli(['pull', '--cache', cache, `oci:${layout}:v1`, dest]);
  const seen = watch.stop();
  t.equal(r.code, 0, r.err);
  t.equal(r.out.trim(), path.join(dest, 'rootfs'));
  const rootfs = path.join(dest, 'rootfs');
  t.same(privileged(rootfs), { devices: [], setid: [] }, 'no device node and no setuid/setgid bit anywhere in DEST');
  t.equal(fs.statSync(path.join(rootfs, 'usr/bin/su')).mode & 0o7777, 0o755, 'su kept as 0755');
  t.equal(fs.statSync(path.join(rootfs, 'srv')).mode & 0o7777, 0o775, 'setgid dir kept as 0775');
  t.equal(fs.statSync(dest).mode & 0o7777, 0o755 & ~0o022, 'DEST ends 0755');
  t.match(r.err, new RegExp(`2 device nodes skipped \\(${isRoot ? 'see --keep-devices' : 'not root'}\\)`), 'the CLI says devices were skipped');
  t.match(r.err, /setuid\/setgid dropped on 3 files/, 'and setuid/setgid dropped');
  // While it was written: the temp dir next to DEST was 0700 whenever seen, DEST never seen half-made.
  t.ok(seen.temps.size >= 1, `the temp dir next to DEST was observed (${seen.samples} samples)`);
  for (const [n, modes] of seen.temps) t.same([...modes], [0o700], `${n} was 0700 while written`);
  t.notOk(seen.destSeenIncomplete, 'DEST did not appear before it was complete');
  t.same(fs.readdirSync(out), ['sandbox'], 'no temp dir left next to DEST');

  // The options exist and do something (so the checks above can fail).
  const dest2 = path.join(out, 'kept');
  const k = await runBuiltCli(['pull', '--cache', cache, '--keep-setid', '--keep-devices', `oci:${layout}:v1`, dest2]);
  t.equal(k.code, 0, k.err);
  const kept = privileged(path.join(dest2, 'rootfs'));
  t.same(kept.setid.sort(), ['srv', 'usr/bin/su', 'usr/bin/wall'], '--keep-setid keeps the bits');
  t.same(kept.devices.sort(), isRoot ? ['opt/disk', 'opt/mem'] : [], isRoot ? '--keep-devices makes the nodes as root' : 'no devices unprivileged');
  if (isRoot) t.equal(fs.statSync(path.join(dest2, 'rootfs/usr/bin/su')).uid, 0, 'su is root-owned (the dangerous case the default avoids)');
});
