// Unpack throughput of a Debian minbase layer: nodularity vs GNU tar vs umoci,
// same layer blob, same disk, same run, each trial a fresh process.
//
//   node bench/unpack/index.mjs [--trials N] [--dist DIR] [--scratch DIR]
//
// --scratch puts the unpacked trees elsewhere than bench/out (e.g. /dev/shm,
// to take the destination file system's own costs out of the comparison).
// The rootfs is built once with debootstrap (needs root and the Debian
// mirror) and kept in bench/out/, which is not committed.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const out = path.join(repo, 'bench/out');
const MIRROR_FILE = '/etc/apt/sources.list.d/debian.sources';

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error)
    throw new Error(
      `${cmd}: ${r.error.message}${r.error.code === 'ENOENT' ? ` (not installed? apt-get install ${cmd === 'tar' ? 'tar' : cmd})` : ''}`,
    );
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
  return r.stdout;
}

/** The Debian mirror apt uses here (deb822 URIs: line), so debootstrap works offline-from-internet. */
function debianMirror() {
  try {
    const m = /^URIs:\s*(\S+)/m.exec(fs.readFileSync(MIRROR_FILE, 'utf8'));
    if (m) return m[1];
  } catch {
    /* fall back */
  }
  return 'http://deb.debian.org/debian';
}

function ensureRootfs() {
  const dir = path.join(out, 'debian-minbase');
  if (fs.existsSync(path.join(dir, 'etc/debian_version'))) return dir;
  if (process.getuid() !== 0)
    throw new Error(`${dir} is missing and debootstrap needs root: run this benchmark once as root`);
  const tmp = dir + '.tmp';
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  console.error(`building ${dir} with debootstrap --variant=minbase bookworm (${debianMirror()}) ...`);
  sh('debootstrap', ['--variant=minbase', 'bookworm', tmp, debianMirror()], { stdio: ['ignore', 'ignore', 'inherit'] });
  fs.renameSync(tmp, dir);
  return dir;
}

/** gzip layer of the rootfs, and an OCI layout around exactly that blob. */
function ensureLayout(rootfs) {
  const layer = path.join(out, 'debian-minbase.tar.gz');
  if (!fs.existsSync(layer)) {
    sh('tar', ['--numeric-owner', '--sort=name', '-C', rootfs, '-czf', layer + '.tmp', '.']);
    fs.renameSync(layer + '.tmp', layer);
  }
  const layout = path.join(out, 'minbase-layout');
  if (fs.existsSync(path.join(layout, 'index.json'))) return { layer, layout };
  fs.rmSync(layout, { recursive: true, force: true });
  fs.mkdirSync(path.join(layout, 'blobs/sha256'), { recursive: true });
  const sha = (buf) => createHash('sha256').update(buf).digest('hex');
  const layerBytes = fs.readFileSync(layer);
  const layerHex = sha(layerBytes);
  const diffId = 'sha256:' + sha(execFileSync('gzip', ['-dc', layer], { maxBuffer: 1 << 30 }));
  fs.copyFileSync(layer, path.join(layout, 'blobs/sha256', layerHex));
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } }),
  );
  fs.writeFileSync(path.join(layout, 'blobs/sha256', sha(config)), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: 'sha256:' + sha(config),
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          digest: 'sha256:' + layerHex,
          size: layerBytes.length,
        },
      ],
    }),
  );
  fs.writeFileSync(path.join(layout, 'blobs/sha256', sha(manifest)), manifest);
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: 'sha256:' + sha(manifest),
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': 'bench' },
        },
      ],
    }),
  );
  return { layer, layout };
}

/**
 * Compiled lib/image: --dist DIR, else a private build of lib/image alone
 * (dist/ may be stale or half-built by other work in the tree).
 */
function ensureDist(distArg) {
  if (distArg) return path.resolve(distArg);
  const dist = path.join(out, 'image-dist');
  sh(path.join(repo, 'node_modules/.bin/tsc'), [
    '--outDir',
    dist,
    '--rootDir',
    path.join(repo, 'lib'),
    '--module',
    'NodeNext',
    '--moduleResolution',
    'NodeNext',
    '--target',
    'ES2022',
    '--strict',
    '--skipLibCheck',
    '--esModuleInterop',
    path.join(repo, 'lib/image/index.ts'),
  ]);
  return dist;
}

function rmTree(dir) {
  spawnSync('chmod', ['-R', 'u+rwX', dir], { stdio: 'ignore' });
  fs.rmSync(dir, { recursive: true, force: true });
}

function timed(fn) {
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Run the benchmark; returns {rows, meta}. Rows: tool, median and best ms,
 * MB/s (uncompressed) and files/s at the median.
 */
export async function main({ trials = 3, dist: distArg, scratch: scratchArg, quiet = false } = {}) {
  const rootfs = ensureRootfs();
  const { layer, layout } = ensureLayout(rootfs);
  const dist = ensureDist(distArg);
  const rootless = process.getuid() === 0 ? [] : ['--rootless'];
  const scratch = fs.mkdtempSync(path.join(scratchArg ? path.resolve(scratchArg) : out, 'unpack-scratch-'));
  let stats;
  // pullImage's own time in the trial process: what a caller that already
  // runs Node (a pilot) waits for, without node's start and module loading.
  const inProcess = [];
  const tools = {
    nodularity: (dest) => {
      const r = JSON.parse(sh(process.execPath, [path.join(here, 'trial.mjs'), dist, layout, dest]));
      stats = r.stats;
      inProcess.push(r.ms);
    },
    'GNU tar -xzf': (dest) => {
      fs.mkdirSync(dest);
      sh('tar', ['-xzf', layer, '-C', dest]);
    },
    'umoci unpack': (dest) => {
      sh('umoci', ['unpack', ...rootless, '--image', `${layout}:bench`, dest]);
    },
  };
  const times = Object.fromEntries(Object.keys(tools).map((k) => [k, []]));
  const loadStart = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  try {
    for (let i = 0; i < trials; i++) {
      // Interleaved, so that load from other work on the machine hits all alike.
      for (const [name, fn] of Object.entries(tools)) {
        const dest = path.join(scratch, 'd');
        times[name].push(timed(() => fn(dest)));
        rmTree(dest);
      }
    }
  } finally {
    rmTree(scratch);
  }
  const bytes = stats.bytes;
  const files = stats.entries;
  times['nodularity, pullImage in-process'] = inProcess;
  const rows = Object.entries(times).map(([tool, ts]) => ({
    tool,
    medianMs: median(ts),
    bestMs: Math.min(...ts),
    mbPerS: bytes / 1e6 / (median(ts) / 1000),
    entriesPerS: files / (median(ts) / 1000),
  }));
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? '?',
    cpus: os.cpus().length,
    kernel: os.release(),
    load: `${loadStart} at the start, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} at the end`,
    uid: process.getuid(),
    layerBytes: fs.statSync(layer).size,
    uncompressedBytes: bytes,
    entries: files,
    trials,
    fs: sh('stat', ['-f', '-c', '%T', scratchArg ?? out]).trim(),
    scratch: scratchArg ?? out,
  };
  if (!quiet) {
    console.log(
      `unpack: Debian bookworm minbase, ${(meta.layerBytes / 1e6).toFixed(1)} MB gzip layer -> ${(bytes / 1e6).toFixed(1)} MB, ${files} entries; ${trials} trials, fresh process each, wall time incl. process start`,
    );
    console.log(
      `${meta.cpus} x ${meta.cpu}, Linux ${meta.kernel}, node ${meta.node}, uid ${meta.uid}, destination ${meta.scratch} (${meta.fs}), load ${meta.load}`,
    );
    console.log('| tool | median ms | best ms | MB/s | entries/s |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of rows)
      console.log(
        `| ${r.tool} | ${r.medianMs.toFixed(0)} | ${r.bestMs.toFixed(0)} | ${r.mbPerS.toFixed(0)} | ${r.entriesPerS.toFixed(0)} |`,
      );
  }
  return { rows, meta };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  await main({ trials: Number(opt('--trials') ?? 5), dist: opt('--dist'), scratch: opt('--scratch') });
}
