// Builds what the trials need (rootfs, floor binaries, OCI bundles) and finds
// out which runtimes can run here. The result is a plain "context" object
// written to JSON, so every trial process sees exactly the same setup.
import { spawnSync, execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, machine as osMachine, release as osRelease, tmpdir, type as osType, userInfo } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeBusyboxRootfs } from '../../scripts/busybox-rootfs.mjs';

export const BENCH_DIR = dirname(dirname(fileURLToPath(import.meta.url)));
export const REPO_DIR = dirname(BENCH_DIR);
export const DIST_INDEX = join(REPO_DIR, 'dist', 'index.js');

/** The apt package that provides each external tool, for error messages. */
export const APT_PACKAGE = {
  bwrap: 'bubblewrap',
  'ch-run': 'charliecloud-runtime',
  crun: 'crun',
  runc: 'runc',
  cc: 'gcc libc6-dev',
  busybox: 'busybox-static',
};

function writable(dir) {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * bench/out/launch when we may write there; otherwise (an unprivileged user
 * running a checkout owned by someone else) a per-user temp dir, so the
 * rootfs is owned by the user who launches the containers.
 */
export function chooseOutDir(requested) {
  if (requested) {
    if (!writable(requested)) throw new Error(`--out ${requested}: not writable by uid ${process.getuid()}`);
    return requested;
  }
  const inRepo = join(BENCH_DIR, 'out', 'launch');
  if (writable(inRepo)) return inRepo;
  const fallback = join(tmpdir(), `nodularity-bench-${process.getuid()}`);
  if (!writable(fallback)) throw new Error(`neither ${inRepo} nor ${fallback} is writable`);
  return fallback;
}

/** Absolute path of an executable, also looking in the sbin dirs an unprivileged PATH often lacks. */
export function which(cmd) {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, cmd);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {}
  }
  return null;
}

function firstLine(s) {
  return String(s ?? '').split('\n').map((l) => l.trim()).find(Boolean) ?? '';
}

function versionOf(path, args = ['--version'], env = process.env) {
  const r = spawnSync(path, args, { encoding: 'utf8', timeout: 10_000, env });
  return firstLine(r.stdout) || firstLine(r.stderr);
}

/** Compile a C file unless the binary is newer; throws with the compiler's output. */
function compile(src, bin) {
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  const cc = which('cc') ?? which('gcc');
  if (!cc) throw new Error(`no C compiler to build ${src}: apt-get install ${APT_PACKAGE.cc}`);
  const r = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-o', bin, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cc} ${src} failed:\n${r.stderr || r.error}`);
  return bin;
}

function ensureRootfs(outDir) {
  const rootfs = join(outDir, 'rootfs');
  if (existsSync(join(rootfs, 'bin', 'true'))) return rootfs;
  rmSync(rootfs, { recursive: true, force: true });
  makeBusyboxRootfs(rootfs);
  return rootfs;
}

/**
 * The container every runtime is asked for, as an OCI config: /bin/true in
 * new user, mount, pid, ipc and uts namespaces, read-only busybox root,
 * fresh /proc, tmpfs /dev (runtimes fill in the standard device nodes).
 * With `userns: false` the caller already provides the user namespace;
 * `maps: false` leaves the id maps to the runtime's default.
 */
export function benchSpec(rootfs, { net = false, userns = true, maps = true, uid = process.getuid(), gid = process.getgid(), args = ['/bin/true'] } = {}) {
  const namespaces = [userns && 'user', 'mount', 'pid', 'ipc', 'uts', net && 'network'].filter(Boolean).map((type) => ({ type }));
  const spec = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid, gid },
      args,
      env: ['PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'],
      cwd: '/',
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    ],
    linux: { namespaces },
  };
  if (userns && maps) {
    spec.linux.uidMappings = [{ containerID: uid, hostID: process.getuid(), size: 1 }];
    spec.linux.gidMappings = [{ containerID: gid, hostID: process.getgid(), size: 1 }];
  }
  return spec;
}

function writeBundle(dir, spec) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return dir;
}

/** Run one launch the way a trial will, capturing stderr; null when it worked, else the reason. */
function tryLaunch(cmd, args, env) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000, env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) return `${cmd}: ${r.error.message}`;
  if (r.status === 0) return null;
  const why = (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ');
  return `exit ${r.status ?? 'signal ' + r.signal}: ${why || '(no output)'}`;
}

let probeSeq = 0;
function containerId(tag) {
  return `nb-${tag}-${process.pid}-${probeSeq++}`;
}

/**
 * Probe one external runtime: missing (not installed), failed (installed but
 * cannot run the bench container here: the error is kept) or ok with the
 * exact command line a trial should use. `args` may contain the token
 * {{id}}, replaced by a fresh container id per launch.
 */
function probeExternal(name, bin, variants) {
  const path = which(bin);
  if (!path) return { name, status: 'missing', detail: `${bin} not found in PATH (apt-get install ${APT_PACKAGE[bin]})` };
  const errors = [];
  for (const v of variants) {
    const env = { ...process.env, ...v.envAdd };
    const cmd = v.cmd === undefined ? path : v.cmd;
    const args = v.args(path).map((a) => a.replaceAll('{{id}}', containerId(name)));
    const err = tryLaunch(cmd, args, env);
    if (!err) {
      return { name, status: 'ok', path, version: versionOf(path, undefined, env), cmd, args: v.args(path), envAdd: v.envAdd ?? null, note: v.note ?? null };
    }
    errors.push(`${v.label}: ${err}`);
    if (v.onlyIf && !v.onlyIf(err)) break;
  }
  return { name, status: 'failed', path, version: versionOf(path, undefined, { ...process.env, ...variants[0].envAdd }), detail: errors.join(' ; then ') };
}

/**
 * Prepare everything and probe every runtime. Throws only when the bench
 * itself cannot run (no rootfs, no compiler); a runtime that cannot run is
 * recorded, not fatal.
 */
export async function prepare({ outDir: requestedOut, dist = DIST_INDEX, log = () => {} } = {}) {
  const outDir = chooseOutDir(requestedOut);
  const uid = process.getuid();
  const gid = process.getgid();
  log(`out dir ${outDir}`);
  const rootfs = ensureRootfs(outDir);
  const floor = compile(join(BENCH_DIR, 'floor', 'floor.c'), join(outDir, 'floor'));
  const hideCgroup2 = compile(join(BENCH_DIR, 'floor', 'hide-cgroup2.c'), join(outDir, 'hide-cgroup2'));

  const user = process.env.USER || userInfo().username || `uid${uid}`;
  const runtimes = {};

  // bwrap: the same namespaces, its own --proc and --dev; it stays as pid 1
  // reaper by default, like nodularity's init.
  runtimes.bwrap = probeExternal('bwrap', 'bwrap', [{
    label: 'bwrap',
    args: () => ['--unshare-user', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true'],
  }]);

  // ch-run makes user and mount namespaces only (no pid/ipc/uts option in
  // charliecloud 0.3x); it refuses to start without $USER.
  runtimes['ch-run'] = probeExternal('ch-run', 'ch-run', [{
    label: 'ch-run', envAdd: { USER: user }, args: () => [rootfs, '--', '/bin/true'],
    note: 'user+mount namespaces only (ch-run has no pid/ipc/uts option)',
  }]);

  // crun and runc read a bundle. It maps container root to the caller: runc
  // insists on a mapping for uid 0 ("no user mapping found" otherwise), and
  // one single-ID map costs the same whichever ID it names.
  const bundle = writeBundle(join(outDir, 'bundle'), benchSpec(rootfs, { uid: 0, gid: 0 }));
  // Behind hide-cgroup2 an unprivileged crun already runs in a user
  // namespace made by the shim, so its bundle leaves that one out rather
  // than stacking a second.
  const bundleInUserns = writeBundle(join(outDir, 'bundle-in-userns'), benchSpec(rootfs, { userns: uid === 0, uid: 0, gid: 0 }));
  const crunState = join(outDir, 'crun-state');
  const runcState = join(outDir, 'runc-state');
  const crunArgs = (b) => (path) => [path, '--root', crunState, '--cgroup-manager=disabled', 'run', '--bundle', b, '{{id}}'];
  runtimes.crun = probeExternal('crun', 'crun', [
    { label: 'crun', cmd: undefined, args: (p) => crunArgs(bundle)(p).slice(1), onlyIf: (err) => /hybrid/.test(err) },
    {
      label: 'crun behind hide-cgroup2', cmd: hideCgroup2, args: crunArgs(uid === 0 ? bundle : bundleInUserns),
      note: 'started through bench/floor/hide-cgroup2 (one extra exec) because crun refuses cgroup v1 hybrid hosts',
    },
  ]);
  runtimes.runc = probeExternal('runc', 'runc', [{
    label: 'runc', args: () => ['--root', runcState, 'run', '--bundle', bundle, '{{id}}'],
  }]);

  const context = {
    createdAt: new Date().toISOString(),
    uid, gid, user,
    outDir, rootfs, floor, hideCgroup2,
    dist: resolve(dist),
    runtimes,
  };
  const contextPath = join(outDir, 'context.json');
  writeFileSync(contextPath, JSON.stringify(context, null, 2));
  return { context, contextPath };
}

export function readContext(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function newestMtime(dir, exts) {
  let newest = 0;
  let stack = [dir];
  while (stack.length) {
    const d = stack.pop();
    let entries;
    try { entries = readdirSync(d, { withFileTypes: true }); } catch { continue; }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (exts.some((x) => e.name.endsWith(x))) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  }
  return newest;
}

/**
 * Warnings when the build being measured is older than its sources: figures
 * from a stale dist/ or addon would be credited to code that is not in it.
 */
export function buildStaleness(dist) {
  const warnings = [];
  if (dist !== DIST_INDEX) return warnings; // another checkout: its owner knows
  // Per file, so the warning names what is stale and one can judge whether
  // it is on the launch path at all.
  const stale = [];
  const walk = (dir) => {
    let entries;
    try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const out = join(REPO_DIR, 'dist', p.slice(join(REPO_DIR, 'lib').length + 1).replace(/\.ts$/, '.js'));
        let outTime = 0;
        try { outTime = statSync(out).mtimeMs; } catch {}
        if (statSync(p).mtimeMs > outTime) stale.push(p.slice(REPO_DIR.length + 1));
      }
    }
  };
  walk(join(REPO_DIR, 'lib'));
  if (stale.length) warnings.push(`dist/ is older than ${stale.join(', ')}: run \`npm run build:ts\` to measure the current code`);
  const native = newestMtime(join(REPO_DIR, 'native'), ['.cc', '.c', '.h']);
  const addon = newestMtime(join(REPO_DIR, 'build', 'Release'), ['.node']);
  if (native && addon && native > addon) warnings.push('the addon in build/Release is older than native/: run `npx node-gyp rebuild` to measure the current code');
  return warnings;
}

/** Facts about this machine for RESULTS.md and the JSON report. */
export function machineInfo() {
  const sh = (cmd, args) => {
    try { return execFileSync(cmd, args, { encoding: 'utf8' }).trim(); } catch { return null; }
  };
  let cpu = null;
  try {
    cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1] ?? null;
  } catch {}
  let osName = null;
  try {
    osName = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)"?$/m)?.[1] ?? null;
  } catch {}
  return {
    date: new Date().toISOString(),
    // CPUs this process may run on (what nproc prints), not all installed.
    nproc: availableParallelism(),
    cpu,
    kernel: `${osType()} ${osRelease()} ${osMachine()}`,
    node: process.version,
    uid: process.getuid(),
    os: osName,
    // Other work on the machine colours every figure; say how busy it was.
    loadavg: loadavg(),
    // The launcher changes under the bench; name the code that was measured.
    git: (() => {
      // safe.directory: git refuses a checkout owned by another user, which is
      // exactly the unprivileged run's situation.
      const git = (...a) => sh('git', ['-c', `safe.directory=${REPO_DIR}`, '-C', REPO_DIR, ...a]);
      const head = git('rev-parse', '--short', 'HEAD');
      if (!head) return null;
      const dirty = git('status', '--porcelain', '--untracked-files=no', '--', 'lib', 'native', 'binding.gyp');
      return dirty ? `${head} + uncommitted changes in lib/native` : head;
    })(),
  };
}
