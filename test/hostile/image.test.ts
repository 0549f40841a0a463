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
import { isRoot, removeAll, run, scratch, skopeoEnv } from '../image/fixtures/tools.js';
import { requireFreshBuild, runBuiltCli } from '../image/fixtures/built-cli.js';
import type { Tap } from '../helpers/env.js';

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
  const again = await pullImage(`oci:${layout}:v1`, {
    cacheDir: path.join(dir, 'cache2'),
    onProgress: (e) => events.push(e),
  });
  t.same(
    events.filter((e) => (e as { type: string }).type === 'dropped'),
    [{ type: 'dropped', devicesSkipped: 2, setidDropped: isRoot ? 0 : 3 }],
    'a `dropped` progress event counts them',
  );
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
function watchDest(dest: string): {
  stop: () => { temps: Map<string, Set<number>>; destSeenIncomplete: boolean; samples: number };
} {
  const parent = path.dirname(dest);
  const base = path.basename(dest);
  const temps = new Map<string, Set<number>>();
  let destSeenIncomplete = false;
  let samples = 0;
  const timer = setInterval(() => {
    samples++;
    for (const n of fs.readdirSync(parent)) {
      let st: fs.Stats;
      try {
        st = fs.lstatSync(path.join(parent, n));
      } catch {
        continue;
      }
      if (n === base) {
        if (!fs.existsSync(path.join(dest, 'image.json'))) destSeenIncomplete = true;
      } else if (n.startsWith(base)) {
        if (!temps.has(n)) temps.set(n, new Set());
        temps.get(n)!.add(st.mode & 0o7777);
      }
    }
  }, 1);
  return {
    stop: () => {
      clearInterval(timer);
      return { temps, destSeenIncomplete, samples };
    },
  };
}

t.test(
  'item 2: pull SRC DEST through the built CLI drops setuid/setgid and devices, and DEST is private until complete',
  async (t) => {
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
    t.match(
      r.err,
      new RegExp(`2 device nodes skipped \\(${isRoot ? 'see --keep-devices' : 'not root'}\\)`),
      'the CLI says devices were skipped',
    );
    t.match(r.err, /setuid\/setgid dropped on 3 files/, 'and setuid/setgid dropped');
    // While it was written: the temp dir next to DEST was 0700 whenever seen, DEST never seen half-made.
    t.ok(seen.temps.size >= 1, `the temp dir next to DEST was observed (${seen.samples} samples)`);
    for (const [n, modes] of seen.temps) t.same([...modes], [0o700], `${n} was 0700 while written`);
    t.notOk(seen.destSeenIncomplete, 'DEST did not appear before it was complete');
    t.same(fs.readdirSync(out), ['sandbox'], 'no temp dir left next to DEST');

    // The options exist and do something (so the checks above can fail).
    const dest2 = path.join(out, 'kept');
    const k = await runBuiltCli([
      'pull',
      '--cache',
      cache,
      '--keep-setid',
      '--keep-devices',
      `oci:${layout}:v1`,
      dest2,
    ]);
    t.equal(k.code, 0, k.err);
    const kept = privileged(path.join(dest2, 'rootfs'));
    t.same(kept.setid.sort(), ['srv', 'usr/bin/su', 'usr/bin/wall'], '--keep-setid keeps the bits');
    t.same(
      kept.devices.sort(),
      isRoot ? ['opt/disk', 'opt/mem'] : [],
      isRoot ? '--keep-devices makes the nodes as root' : 'no devices unprivileged',
    );
    if (isRoot)
      t.equal(
        fs.statSync(path.join(dest2, 'rootfs/usr/bin/su')).uid,
        0,
        'su is root-owned (the dangerous case the default avoids)',
      );
  },
);

/** Peak RSS (kB) of a process, sampled until it exits; SIGKILL above `limitKb`. */
function rssWatch(limitKb: number): { onSpawn: (pid: number) => void; peak: () => number } {
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  return {
    onSpawn: (pid) => {
      timer = setInterval(() => {
        let status: string;
        try {
          status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
        } catch {
          clearInterval(timer);
          return;
        }
        const kb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
        peak = Math.max(peak, kb);
        if (kb > limitKb) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }, 5);
    },
    peak: () => {
      clearInterval(timer);
      return peak;
    },
  };
}

/** A library call that must settle within `ms`; a hang fails the test instead of the run. */
async function within<T>(ms: number, p: Promise<T>): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    p,
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    }),
  ]);
  clearTimeout(timer);
  return r;
}

/** Release anything blocked opening this FIFO for reading (on a broken build): open it for writing, close. */
function unblockFifo(fifo: string): void {
  try {
    fs.closeSync(
      fs.openSync(fs.existsSync(fifo) ? fifo : '/dev/null', fs.constants.O_WRONLY | fs.constants.O_NONBLOCK),
    );
  } catch {
    /* no reader: nothing blocked */
  }
}

/** The one-line error contract of the CLI: exit 255, one line on stderr naming `what`, no stack. */
function oneLineError(
  t: Tap,
  r: { code: number | null; signal: NodeJS.Signals | null; err: string },
  what: RegExp,
  label: string,
): void {
  t.equal(r.signal, null, `${label}: not killed (no hang, no runaway memory)`);
  t.equal(r.code, 255, `${label}: exit 255`);
  const lines = r.err.trim().split('\n');
  t.equal(lines.length, 1, `${label}: one line (${JSON.stringify(r.err)})`);
  t.match(lines[0], what, `${label}: names the file and what is wrong`);
  t.notMatch(r.err, /^\s+at /m, `${label}: no stack trace`);
}

const SMALL_LAYER: TarEntrySpec[] = [
  { name: 'etc/', type: 'directory' },
  { name: 'etc/hello', content: 'hello\n' },
];

/** Blob files of a layout tag: manifest, config and layers, by role. */
function blobsOf(
  layout: string,
  tag: string,
): { manifest: string; config: string; layers: string[]; configSize: number } {
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const d = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)!.digest;
  const file = (digest: string) => path.join(layout, 'blobs', ...digest.split(':'));
  const m = JSON.parse(fs.readFileSync(file(d), 'utf8')) as {
    config: { digest: string; size: number };
    layers: { digest: string }[];
  };
  return {
    manifest: file(d),
    config: file(m.config.digest),
    configSize: m.config.size,
    layers: m.layers.map((l) => file(l.digest)),
  };
}

t.test(
  'item 6: a FIFO as index.json, oci-layout or a blob is refused at once, naming it (library and built CLI)',
  async (t) => {
    requireFreshBuild();
    const dir = tmpdir(t, 'hostile-fifo');
    const cases: [string, (layout: string) => string][] = [
      ['index.json', (l) => path.join(l, 'index.json')],
      ['oci-layout', (l) => path.join(l, 'oci-layout')],
      ['manifest blob', (l) => blobsOf(l, 'v1').manifest],
      ['layer blob', (l) => blobsOf(l, 'v1').layers[0]!],
    ];
    for (const [label, pick] of cases) {
      const sub = path.join(dir, label.replace(/\W/g, '-'));
      fs.mkdirSync(sub);
      const layout = await layoutWith(sub, SMALL_LAYER);
      const victim = pick(layout);
      fs.rmSync(victim);
      run('mkfifo', [victim]);
      t.teardown(() => unblockFifo(victim));
      const cacheDir = path.join(dir, `cache-${label.replace(/\W/g, '-')}`);
      const started = Date.now();
      const r = await within(
        10_000,
        pullImage(`oci:${layout}:v1`, { cacheDir }).then(
          (): unknown => 'pulled',
          (e: unknown) => e,
        ),
      );
      if (r === 'timeout') unblockFifo(victim);
      t.not(r, 'timeout', `${label}: the library call returns (no hang on the FIFO)`);
      t.ok(Date.now() - started < 5000, `${label}: quickly (${Date.now() - started} ms)`);
      t.match(
        r,
        { name: 'ImageError', message: new RegExp(`${path.basename(victim)}.* is a FIFO, not a regular file`) },
        `${label}: an ImageError naming the file`,
      );
      const cli = await runBuiltCli(['pull', '-q', '--cache', cacheDir, `oci:${layout}:v1`], { timeoutMs: 15_000 });
      unblockFifo(victim);
      oneLineError(t, cli, new RegExp(`${path.basename(victim)} is a FIFO, not a regular file`), `${label} (CLI)`);
      const tmp = path.join(cacheDir, 'tmp');
      t.same(fs.existsSync(tmp) ? fs.readdirSync(tmp) : [], [], `${label}: nothing left in the cache`);
    }
  },
);

t.test(
  'item 6: a blob that is a symlink to /dev/zero or to a huge sparse file is refused without reading it',
  async (t) => {
    requireFreshBuild();
    const dir = tmpdir(t, 'hostile-zero');
    const sparse = path.join(dir, 'sparse');
    // 1.5 GiB of nothing: main read it whole into memory.
    fs.closeSync(fs.openSync(sparse, 'w'));
    fs.truncateSync(sparse, 3 << 29);
    const cases: [string, (b: ReturnType<typeof blobsOf>) => string, string, RegExp][] = [
      ['config -> /dev/zero', (b) => b.config, '/dev/zero', /is a symlink; image files must be regular files/],
      ['manifest -> /dev/zero', (b) => b.manifest, '/dev/zero', /is a symlink; image files must be regular files/],
      ['layer -> /dev/zero', (b) => b.layers[0]!, '/dev/zero', /is a symlink; image files must be regular files/],
      ['config -> sparse file', (b) => b.config, sparse, /is a symlink; image files must be regular files/],
      ['config is a sparse file', (b) => b.config, '', /has 1610612736 bytes, its descriptor declares \d+/],
      ['layer is a sparse file', (b) => b.layers[0]!, '', /has 1610612736 bytes, its descriptor declares \d+/],
    ];
    for (const [label, pick, target, why] of cases) {
      const sub = path.join(dir, label.replace(/\W+/g, '-'));
      fs.mkdirSync(sub);
      const layout = await layoutWith(sub, SMALL_LAYER);
      const victim = pick(blobsOf(layout, 'v1'));
      fs.rmSync(victim);
      if (target) fs.symlinkSync(target, victim);
      else {
        fs.closeSync(fs.openSync(victim, 'w'));
        fs.truncateSync(victim, 3 << 29);
      }
      const cacheDir = path.join(sub, 'cache');
      const before = process.memoryUsage().rss;
      const r = await within(
        20_000,
        pullImage(`oci:${layout}:v1`, { cacheDir }).then(
          (): unknown => 'pulled',
          (e: unknown) => e,
        ),
      );
      t.match(r, { name: 'ImageError', message: why }, `${label}: refused (library)`);
      t.ok(process.memoryUsage().rss - before < 64 << 20, `${label}: the test process grew by less than 64 MiB`);
      const rss = rssWatch(1 << 20);
      const cli = await runBuiltCli(['pull', '-q', '--cache', cacheDir, `oci:${layout}:v1`], {
        timeoutMs: 20_000,
        onSpawn: rss.onSpawn,
      });
      const peak = rss.peak();
      oneLineError(t, cli, why, `${label} (CLI)`);
      t.ok(peak < 200 << 10, `${label}: the CLI's RSS stayed under 200 MiB (peak ${peak} kB)`);
    }
    t.equal(fs.statSync(sparse).blocks, 0, 'the sparse file was never written to');
  },
);

t.test('item 6: docker-archive: /dev/zero as the archive is refused; a pipe works (docker save | pull)', async (t) => {
  requireFreshBuild();
  const dir = tmpdir(t, 'hostile-archive');
  const layout = await layoutWith(dir, SMALL_LAYER);
  const archive = path.join(dir, 'img.tar');
  run('skopeo', ['copy', '--quiet', `oci:${layout}:v1`, `docker-archive:${archive}:test/img:v1`], {
    env: skopeoEnv(path.join(dir, 'home')),
  });
  const cacheDir = path.join(dir, 'cache');
  const rss = rssWatch(1 << 20);
  const zero = await runBuiltCli(['pull', '--cache', cacheDir, 'docker-archive:/dev/zero'], {
    timeoutMs: 20_000,
    onSpawn: rss.onSpawn,
  });
  oneLineError(t, zero, /\/dev\/zero is a character device; a docker-archive is a regular file or a pipe/, '/dev/zero');
  t.ok(rss.peak() < 200 << 10, 'bounded memory');
  await t.rejects(pullImage('docker-archive:/dev/zero', { cacheDir }), {
    reason: 'BAD_SOURCE',
    message: /character device/,
  });
  // A pipe, as from `docker save IMG | nodularity pull docker-archive:/dev/stdin`.
  const fifo = path.join(dir, 'pipe');
  run('mkfifo', [fifo]);
  t.teardown(() => unblockFifo(fifo));
  const writer = import('node:child_process').then(
    ({ spawn }) =>
      new Promise<number | null>((resolve) => {
        spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', archive, fifo], { stdio: 'ignore' }).on('close', resolve);
      }),
  );
  const viaPipe = await runBuiltCli(['pull', '--cache', cacheDir, `docker-archive:${fifo}`], { timeoutMs: 30_000 });
  t.equal(await writer, 0, 'the writer finished');
  t.equal(viaPipe.code, 0, viaPipe.err);
  t.equal(
    fs.readFileSync(path.join(viaPipe.out.trim(), 'etc/hello'), 'utf8'),
    'hello\n',
    'the image came through the pipe',
  );
  const tmp = path.join(cacheDir, 'tmp');
  t.same(fs.existsSync(tmp) ? fs.readdirSync(tmp) : [], [], 'staging removed');
});

t.test(
  "item 18: a killed docker-archive pull's staging is swept by the next pull; live, fresh, foreign and linked entries stay",
  async (t) => {
    requireFreshBuild();
    const { spawn } = await import('node:child_process');
    const dir = tmpdir(t, 'hostile-sweep');
    const bulk: TarEntrySpec[] = [{ name: 'bulk/', type: 'directory' }];
    for (let i = 0; i < 60; i++) bulk.push({ name: `bulk/f${i}`, content: randomBytes(1 << 20) });
    const layout = await layoutWith(dir, bulk);
    const archive = path.join(dir, 'img.tar');
    run('skopeo', ['copy', '--quiet', `oci:${layout}:v1`, `docker-archive:${archive}:test/img:v1`], {
      env: skopeoEnv(path.join(dir, 'home')),
    });
    const cache = path.join(dir, 'cache');
    const tmp = path.join(cache, 'tmp');

    // A real kill: SIGKILL the built CLI once its staging dir has content.
    let killed = '';
    const r = await runBuiltCli(['pull', '-q', '--cache', cache, `docker-archive:${archive}`], {
      timeoutMs: 60_000,
      onSpawn: (pid) => {
        const poll = setInterval(() => {
          const names = fs.existsSync(tmp) ? fs.readdirSync(tmp).filter((n) => n.startsWith(`archive-${pid}-`)) : [];
          if (names.length && fs.readdirSync(path.join(tmp, names[0]!)).length >= 2) {
            clearInterval(poll);
            killed = names[0]!;
            process.kill(pid, 'SIGKILL');
          }
        }, 2);
        setTimeout(() => clearInterval(poll), 60_000).unref();
      },
    });
    t.equal(r.signal, 'SIGKILL', 'the pull was killed while staging');
    t.ok(killed && fs.existsSync(path.join(tmp, killed)), `it left ${killed}`);

    // Planted entries around it.
    const dead = await new Promise<number>((resolve) => {
      const c = spawn('true');
      c.on('close', () => resolve(c.pid!));
    });
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    t.teardown(() => {
      sleeper.kill('SIGKILL');
    });
    const old = new Date(Date.now() - 10 * 60_000);
    const plant = (name: string, age: Date | undefined): string => {
      const p = path.join(tmp, name);
      fs.mkdirSync(p);
      fs.writeFileSync(path.join(p, '0'), randomBytes(1 << 16));
      if (age) {
        fs.utimesSync(path.join(p, '0'), age, age);
        fs.utimesSync(p, age, age);
      }
      return p;
    };
    const stale = plant(`archive-${dead}-stale1`, old);
    const live = plant(`archive-${sleeper.pid}-live1`, old);
    const fresh = plant(`archive-${dead}-fresh1`, undefined);
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'canary'), 'keep\n');
    const link = path.join(tmp, `archive-${dead}-link1`);
    fs.symlinkSync(outside, link);
    fs.lutimesSync(link, old, old);
    let foreign: string | undefined;
    if (isRoot) {
      foreign = plant(`archive-${dead}-foreign1`, old);
      const testUid = Number(run('id', ['-u', 'nodularity-test']).trim());
      fs.chownSync(foreign, testUid, testUid);
      fs.utimesSync(foreign, old, old);
    }
    // The killed pull's dir, aged past the grace period (its pid is dead now).
    for (const n of fs.readdirSync(path.join(tmp, killed))) fs.utimesSync(path.join(tmp, killed, n), old, old);
    fs.utimesSync(path.join(tmp, killed), old, old);

    const again = await runBuiltCli(['pull', '-q', '--cache', cache, `docker-archive:${archive}`], {
      timeoutMs: 60_000,
    });
    t.equal(again.code, 0, again.err);
    t.notOk(fs.existsSync(path.join(tmp, killed)), "the killed pull's staging is gone");
    t.notOk(fs.existsSync(stale), 'a stale entry of a dead pid is gone');
    t.ok(fs.existsSync(live), 'an entry of a live pid stays');
    t.ok(
      fs.existsSync(fresh),
      'an entry changed within the grace period stays (its pid may live in another pid namespace)',
    );
    t.ok(fs.lstatSync(link).isSymbolicLink(), 'a symlink is left alone');
    t.equal(fs.readFileSync(path.join(outside, 'canary'), 'utf8'), 'keep\n', 'and what it points to is untouched');
    if (foreign) t.ok(fs.existsSync(path.join(foreign, '0')), 'an entry owned by another user stays');
    t.same(
      fs.readdirSync(tmp).sort(),
      [
        path.basename(live),
        path.basename(fresh),
        path.basename(link),
        ...(foreign ? [path.basename(foreign)] : []),
      ].sort(),
      'nothing else is left in tmp/',
    );
  },
);

t.test(
  'item 18: GNU and PAX sparse files are refused naming the entry, never unpacked as another tree; the same file without --sparse equals tar -xf',
  async (t) => {
    requireFreshBuild();
    const dir = tmpdir(t, 'hostile-sparse');
    const src = path.join(dir, 'src');
    fs.mkdirSync(path.join(src, 'data'), { recursive: true });
    // 10 MiB with data in 12 places: more than the 4 map entries a GNU header
    // holds, so GNU format needs extension blocks too.
    const file = path.join(src, 'data/holes.img');
    const fd = fs.openSync(file, 'w');
    fs.ftruncateSync(fd, 10 << 20);
    for (let i = 0; i < 12; i++) fs.writeSync(fd, Buffer.from(`segment ${i}\n`), 0, undefined, i * 850_000 + 4096);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src, 'data/plain.txt'), 'not sparse\n');
    const cases: [string, string[], RegExp][] = [
      [
        'gnu',
        ['--sparse', '--format=gnu'],
        /entry `data\/holes\.img` has a tar type flag that is not supported \(a GNU sparse file, type 'S'/,
      ],
      [
        'pax',
        ['--sparse', '--format=pax'],
        /entry `data\/holes\.img` is a GNU sparse file \(PAX format 1\.0, stored as `\.\/data\/GNUSparseFile\.\d+\/holes\.img`\)/,
      ],
    ];
    for (const [label, flags, why] of cases) {
      const sub = path.join(dir, label);
      fs.mkdirSync(sub);
      const layout = path.join(sub, 'layout');
      run('umoci', ['init', '--layout', layout]);
      run('umoci', ['new', '--image', `${layout}:base`]);
      const tarFile = path.join(sub, 'layer.tar');
      run('tar', [...flags, '-cf', tarFile, '-C', src, './data']);
      run('umoci', ['raw', 'add-layer', '--image', `${layout}:base`, '--tag', 'v1', tarFile]);
      const cacheDir = path.join(sub, 'cache');
      await t.rejects(
        pullImage(`oci:${layout}:v1`, { cacheDir }),
        { name: 'ImageError', reason: 'BAD_LAYER', entry: 'data/holes.img', message: why },
        `${label}: the library refuses the layer naming the entry`,
      );
      const cli = await runBuiltCli(['pull', '-q', '--cache', cacheDir, `oci:${layout}:v1`, path.join(sub, 'dest')]);
      oneLineError(t, cli, why, `${label} (CLI)`);
      t.notOk(fs.existsSync(path.join(sub, 'dest')), `${label}: no DEST`);
      t.same(
        fs.readdirSync(sub).filter((n) => n.startsWith('dest')),
        [],
        `${label}: nothing next to DEST`,
      );
      t.same(
        fs.existsSync(path.join(cacheDir, 'roots'))
          ? fs.readdirSync(path.join(cacheDir, 'roots'), { recursive: true })
          : [],
        [],
        `${label}: no cache entry`,
      );
    }
    // Control: the same file in a PAX layer without --sparse (holes stored as zeros) unpacks as tar -xf unpacks it.
    const layout = path.join(dir, 'plain', 'layout');
    fs.mkdirSync(path.dirname(layout));
    run('umoci', ['init', '--layout', layout]);
    run('umoci', ['new', '--image', `${layout}:base`]);
    const tarFile = path.join(dir, 'plain', 'layer.tar');
    run('tar', ['--format=pax', '-cf', tarFile, '-C', src, './data']);
    run('umoci', ['raw', 'add-layer', '--image', `${layout}:base`, '--tag', 'v1', tarFile]);
    const byTar = path.join(dir, 'plain', 'tar-x');
    fs.mkdirSync(byTar);
    run('tar', ['-xf', tarFile, '-C', byTar]);
    const img: PulledImage = await pullImage(`oci:${layout}:v1`, { cacheDir: path.join(dir, 'plain', 'cache') });
    for (const n of ['data/holes.img', 'data/plain.txt']) {
      t.ok(
        fs.readFileSync(path.join(img.rootfs, n)).equals(fs.readFileSync(path.join(byTar, n))),
        `${n}: same content as tar -xf`,
      );
    }
    t.equal(fs.statSync(path.join(img.rootfs, 'data/holes.img')).size, 10 << 20);
  },
);
