// The OCI runtime operations behind runc's command line (lib/cli/oci-command.ts):
// create, start, state, kill, delete, run, exec, list, ps, features, spec.
// Lifecycle as runtime-spec's runtime.md says it:
//
//   create: bundle checked -> ROOT/ID claimed (state.json "creating") ->
//           exec.fifo made and opened -> spawn with the fifo as start gate,
//           detached. With createRuntime/createContainer hooks the launch
//           pauses before pivot_root (beforePivot): createRuntime here,
//           createContainer as an exec into every namespace of the
//           container (a failure of either ends the launch: nothing is
//           left). Then the init waits at the gate -> state.json gets the
//           init's pid -> --pid-file -> exit; the init lives on,
//           reparented to the caller's subreaper (conmon, the containerd
//           shim)                                                  => created
//   start:  only from created: exec.fifo opened O_WRONLY|O_NONBLOCK (no reader:
//           the init is gone) -> prestart hooks (state "created") ->
//           startContainer hooks, an exec into the container as its
//           payload's user (a failure of either destroys the container) ->
//           fifo removed, one byte written -> the payload's exec awaited
//           -> poststart                                          => running
//   kill:   created or running: the signal to the init (--all: to every
//           process of the container)
//   delete: only stopped (--force: SIGKILL first) -> state removed -> poststop
//
// A `start` killed half way cannot wedge a container: the fifo is removed
// before the byte is written, so a killed start closes the last writer and
// the init reads EOF and exits without running the payload (stopped).
//
// prestart runs at start, not at create: runtime-spec 1.0 said "after the
// start operation is called but before the user-specified program command is
// executed", and the runtime-tools suite (prestart, hooks_stdin: status
// "created") checks that; 1.1 moved it into create "before pivot_root",
// which would fail hooks_stdin and prestart. Both keep the promise hooks
// rely on: the namespaces exist, the payload has not run. createRuntime and createContainer run in create, before pivot_root.
import { execFileSync } from 'node:child_process';
import {
  constants as fsc,
  closeSync,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { spawn, type Container, type SpawnOptions } from '../container.js';
import { SpecError } from '../errors.js';
import { loadBundle } from './bundle.js';
import type { Process, Spec } from './spec.js';
import {
  checkHooks,
  HookError,
  runHooks,
  runHooksIn,
  setupIdentity,
  type HookIdentity,
  type Hooks,
  type OciState,
} from './hooks.js';
import {
  checkId,
  ContainerDir,
  isAlive,
  listIds,
  load,
  mustLoad,
  notExist,
  OciStateError,
  procStat,
  self,
  signalChecked,
  statusOf,
  waitStopped,
  type LoadedState,
  type StateRecord,
  type Status,
} from './state.js';
import { parseSignal } from '../signals.js';
import { isBindMount, splitBindOptions } from '../plan/mount-options.js';

/** The runtime-spec version this runtime follows (lib/oci/spec.ts's types). */
export const SPEC_VERSION = '1.2.0';

/** Where warnings and debug lines go (the CLI's --log, in runc's text or JSON form). */
export interface Logger {
  warn(message: string): void;
  debug(message: string): void;
}

type OciSpawnOptions = SpawnOptions;

export interface BundleOptions {
  /** Run the payload as the calling user whatever config.json says; its id mappings are dropped (Slurm). */
  asCaller?: boolean;
  /** Do not run the bundle's hooks. */
  ignoreHooks?: boolean;
  /** Read for an exec (its mounts are not made): no warnings about them again. */
  forExec?: boolean;
}

/** BUNDLE/config.json checked, with its hooks; errors name the file. */
export async function bundleSpec(
  dir: string,
  o: BundleOptions = {},
): Promise<{ spec: Spec; dir: string; hooks: Hooks }> {
  let b;
  try {
    b = await loadBundle(dir);
  } catch (e) {
    // The file as a whole (unreadable, not JSON): its own message names it.
    if (e instanceof SpecError && !e.pointer && !e.option) throw new OciStateError(e.message.replace(/^\/: /, ''));
    if (e instanceof SpecError && e.pointer)
      throw new SpecError(
        e.pointer,
        `${e.message.slice(e.pointer.length + 2)} (in ${join(resolve(dir), 'config.json')})`,
        {
          code: e.code,
        },
      );
    throw e;
  }
  const spec = b.spec;
  // runtime-spec: an absent process.noNewPrivileges is false (the library's
  // own default, for specs it builds, is true). The close-fds step then runs
  // under the early-loaded seccomp profile, and falls back from close_range
  // to /proc/self/fd when the profile lacks it (runtime-tools' does).
  if (spec.process && spec.process.noNewPrivileges === undefined) spec.process.noNewPrivileges = false;
  // A bind's fs data and superblock options (runtime-tools' `mode=755`):
  // runc and crun hand them to the bind, where the kernel ignores them, so
  // bundles written for them carry such options. Dropped here with one
  // warning each; the library refuses them (lib/plan/mount-options.ts).
  (spec.mounts ?? []).forEach((m, i) => {
    if (!isBindMount(m) || !Array.isArray(m.options)) return;
    const { kept, ignored } = splitBindOptions(m.options);
    if (!ignored.length) return;
    m.options = kept;
    if (!o.forExec)
      for (const opt of ignored)
        process.emitWarning(
          `/mounts/${i} (${m.destination}): option ${JSON.stringify(opt)} ignored: a bind mount cannot apply it (as runc and crun)`,
          { code: 'NODULARITY_SPEC_IGNORED' },
        );
  });
  let hooks: Hooks;
  try {
    hooks = o.ignoreHooks ? {} : checkHooks((spec as { hooks?: unknown }).hooks);
  } catch (e) {
    if (e instanceof SpecError)
      throw new SpecError(e.pointer, `${e.message.slice(e.pointer.length + 2)} (in ${join(b.dir, 'config.json')})`);
    throw e;
  }
  delete (spec as { hooks?: unknown }).hooks;
  if (o.asCaller) {
    // The batch system ran us as the job's user: that user runs the payload,
    // whatever uid the bundle's author wrote, with its own ids mapped to themselves.
    const proc = spec.process!; // validateSpec requires it
    const umask = proc.user?.umask;
    proc.user = { uid: process.geteuid!(), gid: process.getegid!(), ...(umask === undefined ? {} : { umask }) };
    if (spec.linux) {
      delete spec.linux.uidMappings;
      delete spec.linux.gidMappings;
    }
  }
  return { spec, dir: b.dir, hooks };
}

/** The state JSON of runtime-spec (runtime.md "State"), plus runc's extra fields (rootfs, created, owner). */
export function ociState(s: LoadedState, status: Status = statusOf(s)): OciState & Record<string, unknown> {
  const { rec } = s;
  return {
    ociVersion: SPEC_VERSION,
    id: rec.id,
    pid: status === 'stopped' ? 0 : rec.pid,
    status,
    bundle: rec.bundle,
    rootfs: (rec as { rootfs?: string }).rootfs ?? '',
    created: rec.created,
    owner: ownerName(s.owner),
    annotations: rec.annotations ?? {},
  };
}

function ownerName(uid: number): string {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[2] === String(uid)) return f[0]!;
    }
  } catch {
    /* no passwd */
  }
  return String(uid);
}

/** Write a pid file as runc does: a temp file in the same directory, renamed into place. */
function writePidFile(file: string, pid: number): void {
  const path = resolve(file);
  const tmp = join(dirname(path), `.${path.slice(dirname(path).length + 1)}.${process.pid}`);
  writeFileSync(tmp, String(pid), { mode: 0o644 });
  renameSync(tmp, path);
}

/** Hooks from a state directory run only for its owner: root must not run a program a user named. */
function mayRunRecordedHooks(s: LoadedState, log: Logger, kind: string): boolean {
  if (s.owner === process.geteuid!()) return true;
  if (s.rec.hooks && Object.values(s.rec.hooks).some((l) => l?.length))
    log.warn(
      `not running the ${kind} hooks of container ${s.rec.id}: its state belongs to uid ${s.owner}, and this is uid ${process.geteuid!()}`,
    );
  return false;
}

export interface CreateOptions extends BundleOptions {
  bundle: string;
  pidFile?: string;
  /** A connected unix socket's fd to send the terminal's master to (process.terminal). */
  consoleSocket?: number;
  /** Pass the caller's fds 3 .. 3+N-1 to the payload. */
  preserveFds?: number;
  /** `run`: keep the container attached to this process (not detached). */
  attached?: boolean;
  /** Called with the container right after spawn (the CLI listens for its 'close' from then on). */
  onSpawn?: (c: Container) => void;
  /** --cgroup-manager: cgroupfs (default), disabled (no cgroup, a warning), systemd (refused). */
  cgroupManager?: import('./cgroup-verbs.js').CgroupManager;
}

export interface Created {
  container: Container;
  dir: ContainerDir;
  rec: StateRecord;
  hooks: Hooks;
  /** Our fd of exec.fifo (O_RDWR). */
  fifo: number;
}

/**
 * create: everything up to the payload's exec. Returns with the lock still
 * held and the directory open; the caller (the CLI) ends the process, which
 * closes both.
 */
export async function create(root: string, id: string, o: CreateOptions, log: Logger): Promise<Created> {
  checkId(id);
  const b = await bundleSpec(o.bundle, o);
  (await import('./cgroup-verbs.js')).applyCgroupManager(b.spec, o.cgroupManager, log);
  if (o.consoleSocket !== undefined && !b.spec.process?.terminal)
    throw new OciStateError('--console-socket is given but process.terminal is false in config.json', 'usage');
  if (o.consoleSocket === undefined && b.spec.process?.terminal && !o.attached)
    throw new OciStateError('process.terminal is true in config.json: pass --console-socket (as runc needs)', 'usage');
  const dir = await ContainerDir.claim(root, id);
  const [runtimePid, runtimeStart] = self();
  const rootPath = b.spec.root?.path ?? 'rootfs';
  const rec: StateRecord & { rootfs: string } = {
    ociVersion: b.spec.ociVersion,
    id,
    bundle: b.dir,
    rootfs: isAbsolute(rootPath) ? rootPath : join(b.dir, rootPath),
    created: new Date().toISOString(),
    pid: 0,
    pidStart: '',
    runtimePid,
    runtimeStart,
    annotations: b.spec.annotations ?? {},
    hooks: {
      prestart: b.hooks.prestart,
      startContainer: b.hooks.startContainer,
      poststart: b.hooks.poststart,
      poststop: b.hooks.poststop,
    },
    ...(b.hooks.startContainer?.length
      ? {
          hookIdentity: payloadIdentity(b.spec),
          ...(b.spec.linux?.seccomp ? { hookSeccomp: b.spec.linux.seccomp } : {}),
        }
      : {}),
  };
  let fifo: number | undefined;
  let container: Container | undefined;
  try {
    dir.writeRecord(rec);
    // Node has no mkfifo(3); mkfifo(1) makes it through our fd of the directory.
    execFileSync('mkfifo', ['-m', '0600', dir.atForChild('exec.fifo')], { stdio: ['ignore', 'ignore', 'pipe'] });
    fifo = openSync(dir.at('exec.fifo'), fsc.O_RDWR | fsc.O_NOFOLLOW);
    if (!fstatSync(fifo).isFIFO()) throw new OciStateError(`${join(dir.path, 'exec.fifo')} is not a FIFO`);
    // createRuntime (runtime namespace) then createContainer (the
    // container's): while the launch waits before pivot_root, with every
    // namespace and mount made, as runtime-spec places them. A failure ends
    // the launch: spawned rejects with the HookError.
    const creating = (pid: number): OciState => ({
      ociVersion: SPEC_VERSION,
      id,
      status: 'creating',
      pid,
      bundle: b.dir,
      annotations: rec.annotations,
    });
    const beforePivot =
      b.hooks.createRuntime?.length || b.hooks.createContainer?.length
        ? async (pid: number) => {
            await runHooks('createRuntime', b.hooks.createRuntime, creating(pid), log.warn);
            if (b.hooks.createContainer?.length) {
              const who = setupIdentity(pid, b.spec.process!.user);
              await runHooksIn('createContainer', b.hooks.createContainer, pid, b.spec, who, creating(pid));
            }
          }
        : undefined;
    const options: OciSpawnOptions = {
      bundleDir: b.dir,
      stdio: 'inherit',
      startGate: fifo,
      ...(beforePivot ? { beforePivot } : {}),
      ...(o.attached ? {} : { detached: true }),
      ...(o.consoleSocket !== undefined ? { consoleSocket: o.consoleSocket } : {}),
      ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}),
      // Unique on the host while it lives (two --root dirs may hold the same id): the create process's pid.
      cgroupName: `${id}-${process.pid}`,
    };
    container = spawn(b.spec, options);
    if (o.attached) o.onSpawn?.(container);
    await container.spawned;
    const pid = container.pid!;
    const st = procStat(pid);
    if (!st) throw new OciStateError(`the container's init (pid ${pid}) ended during create`);
    Object.assign(rec, { pid, pidStart: st[1] });
    // A detached container's cgroup outlives create: delete removes it.
    if (container.cgroup)
      rec.cgroup = {
        dirs: container.cgroup.dirs,
        created: container.cgroup.created,
        ...(b.spec.linux?.resources ? { resources: b.spec.linux.resources } : {}),
      };
    dir.writeRecord(rec);
    log.debug(`container ${id}: init pid ${pid}`);
    if (o.pidFile) writePidFile(o.pidFile, pid);
    return { container, dir, rec, hooks: b.hooks, fifo };
  } catch (e) {
    // runtime.md: a failing create leaves nothing; a failing createRuntime hook destroys the container.
    if (container?.pid) {
      try {
        process.kill(container.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (fifo !== undefined) closeSync(fifo);
    await container?.cgroup?.destroy().catch(() => undefined);
    try {
      await dir.remove();
    } catch {
      /* the error that brought us here is the one to report */
    }
    dir.close();
    if (e instanceof HookError) {
      if (container?.pid) await waitGone(container.pid, rec.pidStart, 5000);
      await runHooks('poststop', b.hooks.poststop, { ...stateOf(rec), status: 'stopped' }, log.warn);
    }
    throw e;
  }
}

function stateOf(rec: StateRecord): OciState {
  return {
    ociVersion: SPEC_VERSION,
    id: rec.id,
    status: 'stopped',
    bundle: rec.bundle,
    annotations: rec.annotations ?? {},
  };
}

async function waitGone(pid: number, start: string, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 10) {
    if (!isAlive(pid, start)) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

/** Take the container's lock, then read its record again: another verb may have changed it while we waited. */
async function lockFresh(s: LoadedState): Promise<NonNullable<LoadedState['rec']>> {
  await s.dir.lock();
  const rec = s.dir.readRecord();
  if (!rec) throw notExist(s.rec.id);
  s.rec = rec;
  return rec;
}

/** start: release a created container's payload (see the file's head); then the poststart hooks. */
export async function start(root: string, id: string, log: Logger): Promise<void> {
  const s = mustLoad(root, checkId(id));
  try {
    const rec = await lockFresh(s);
    const status = statusOf(s);
    if (status === 'stopped') throw new OciStateError(`cannot start a container that has stopped: ${id}`, 'state');
    if (status === 'running') throw new OciStateError(`cannot start an already running container: ${id}`, 'state');
    if (status === 'creating')
      throw new OciStateError(`cannot start a container that is still being created: ${id}`, 'state');
    let fd: number;
    try {
      fd = openSync(s.dir.at('exec.fifo'), fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOFOLLOW);
    } catch (e) {
      const c = (e as NodeJS.ErrnoException).code;
      // No reader: the init is gone (or its gate was closed).
      if (c === 'ENXIO') throw new OciStateError(`cannot start a container that has stopped: ${id}`, 'state');
      if (c === 'ELOOP') throw new OciStateError(`${join(s.dir.path, 'exec.fifo')} is a symbolic link: refusing it`);
      throw new OciStateError(`cannot open ${join(s.dir.path, 'exec.fifo')}: ${c}`);
    }
    try {
      if (!fstatSync(fd).isFIFO())
        throw new OciStateError(`${join(s.dir.path, 'exec.fifo')} is not a FIFO: refusing it`);
      await prestart(s, log);
      await startContainer(s, log);
      // Removed first: a start killed after this leaves no writer, and the init reads EOF (stopped, not wedged).
      s.dir.unlinkFifo();
      s.rec = { ...rec, started: true };
      s.dir.writeRecord(s.rec);
      writeSync(fd, Buffer.from([0]));
    } finally {
      closeSync(fd);
    }
    s.dir.unlock();
    await payloadExecuted(rec.pid, rec.pidStart);
    if (mayRunRecordedHooks(s, log, 'poststart'))
      await runHooks('poststart', rec.hooks?.poststart, ociState(s, 'running'), log.warn);
  } finally {
    s.dir.close();
  }
}

/**
 * The prestart hooks of a created container (state "created", the runtime's
 * namespaces). A failure destroys the container (its processes, cgroup and
 * state; then poststop), as runtime.md says, and is the operation's error.
 * Only the state's owner runs them: root refuses to start a user's container
 * that names hooks rather than run programs a user chose.
 */
/** Hooks named in a state are run by its owner only: root does not run programs a user chose. */
function ownerRunsHooks(s: LoadedState, kind: 'prestart' | 'startContainer'): void {
  if (s.owner !== process.geteuid!())
    throw new OciStateError(
      `container ${s.rec.id} has ${kind} hooks and its state belongs to uid ${s.owner}: only that user may start it`,
    );
}

async function prestart(s: LoadedState, log: Logger): Promise<void> {
  const hooks = s.rec.hooks?.prestart;
  if (!hooks?.length) return;
  ownerRunsHooks(s, 'prestart');
  try {
    await runHooks('prestart', hooks, ociState(s, 'created'), log.warn);
  } catch (e) {
    await destroy(s, log);
    throw e;
  }
}

/** What startContainer hooks run as: the payload's identity, as runc's init runs them once it has taken it. */
function payloadIdentity(spec: Spec): HookIdentity {
  const p = spec.process!;
  return { user: p.user, capabilities: p.capabilities, noNewPrivileges: p.noNewPrivileges };
}

/**
 * The startContainer hooks of a created container, in its namespaces (path
 * resolved in the container), before the payload is released; a failure
 * destroys the container as prestart's does. Its owner only, as prestart.
 */
async function startContainer(s: LoadedState, log: Logger): Promise<void> {
  const hooks = s.rec.hooks?.startContainer;
  if (!hooks?.length) return;
  ownerRunsHooks(s, 'startContainer');
  const rec = s.rec as StateRecord & { rootfs?: string };
  const spec: Spec = {
    ociVersion: rec.ociVersion,
    root: { path: rec.rootfs ?? '/' },
    linux: rec.hookSeccomp ? { seccomp: rec.hookSeccomp } : {},
  };
  try {
    await runHooksIn('startContainer', hooks, rec.pid, spec, rec.hookIdentity!, ociState(s, 'created'));
  } catch (e) {
    await destroy(s, log);
    throw e;
  }
}

/** Kill a container, remove its cgroup and state, run its poststop hooks (its owner only). */
async function destroy(s: LoadedState, log: Logger): Promise<void> {
  try {
    process.kill(s.rec.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  await waitGone(s.rec.pid, s.rec.pidStart, 5000);
  await removeCgroup(s, log).catch((e: Error) => log.warn(`cgroup of ${s.rec.id}: ${e.message}`));
  await s.dir.remove();
  if (mayRunRecordedHooks(s, log, 'poststop'))
    await runHooks('poststop', s.rec.hooks?.poststop, ociState(s, 'stopped'), log.warn);
}

/**
 * Wait until the init's payload has been exec'd (a child of the init whose
 * command name is no longer the init's), or the init is gone (the payload
 * ran and ended, or failed to run): poststart comes "after the
 * user-specified process is executed". At most `ms`.
 */
async function payloadExecuted(pid: number, start: string, ms = 5000): Promise<void> {
  const comm = (p: number) => {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      return st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
    } catch {
      return undefined;
    }
  };
  const initComm = comm(pid);
  for (let waited = 0; waited < ms; waited += 2) {
    if (!isAlive(pid, start)) return;
    let kids: string[] = [];
    try {
      kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      return;
    }
    const execd = kids.some((k) => {
      const c = comm(Number(k));
      return c !== undefined && c !== initComm;
    });
    if (execd) return;
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** state: the OCI state JSON of ID. */
export function state(root: string, id: string): Record<string, unknown> {
  const s = mustLoad(root, checkId(id));
  try {
    return ociState(s);
  } finally {
    s.dir.close();
  }
}

/** Host pids of the container's processes: those in the init's PID namespace (or, sharing ours, its descendants). */
export function containerPids(pid: number): number[] {
  let ns: string;
  try {
    ns = readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return [];
  }
  const shared = ns === readlinkSync('/proc/self/ns/pid');
  const parents = new Map<number, number>();
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const p = Number(d);
    try {
      if (shared) {
        const st = readFileSync(`/proc/${p}/stat`, 'utf8');
        parents.set(p, Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
      } else if (readlinkSync(`/proc/${p}/ns/pid`) === ns) out.push(p);
    } catch {
      /* gone, or not ours to look at */
    }
  }
  if (!shared) return out.sort((a, b) => a - b);
  // No PID namespace of its own: the init and its descendants.
  const inside = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, pp] of parents)
      if (!inside.has(p) && inside.has(pp)) {
        inside.add(p);
        grew = true;
      }
  }
  return [...inside].sort((a, b) => a - b);
}

/** kill: SIGNAL (name or number) to the init, or with `all` to every process of the container. */
export async function kill(root: string, id: string, signal: string, all: boolean): Promise<void> {
  const sig = parseSignal(signal);
  if (!sig)
    throw new OciStateError(`unknown signal \`${signal}\` (a name such as TERM or SIGKILL, or a number)`, 'usage');
  const s = mustLoad(root, checkId(id));
  try {
    const status = statusOf(s);
    if (status === 'stopped') throw new OciStateError(`cannot signal ${id}: container not running`, 'not-running');
    if (status === 'creating')
      throw new OciStateError(`cannot signal ${id}: container is being created (not created or running)`, 'state');
    if (all && s.rec.cgroup) {
      // Through the cgroup: every process of the container, those that left
      // the init's tree or its pid namespace's reach included (cgroup.kill on
      // v2, else freeze, signal each, thaw, so nothing forks meanwhile).
      if (s.owner !== process.geteuid!())
        throw new OciStateError(`cannot signal ${id}: its state belongs to uid ${s.owner}`, 'state');
      const { Cgroup } = await import('../cgroups/cgroup.js');
      await Cgroup.fromDirs(s.rec.cgroup.dirs, s.rec.cgroup.created).killAll(sig);
      return;
    }
    if (all && sig !== 'SIGKILL') {
      // SIGKILL to the init ends its whole PID namespace; other signals go to each process.
      // A process may end while we go (the signals themselves end some, and
      // the init's end takes the namespace with it): one that is gone is no
      // error, as in runc's signalAllProcesses; the init must have been there.
      let signalled = 0;
      for (const p of containerPids(s.rec.pid)) {
        const st = procStat(p);
        if (!st) continue;
        try {
          signalChecked(s, p, st[1], sig);
          signalled++;
        } catch (e) {
          if (!(e instanceof OciStateError && e.kind === 'not-running') || p === s.rec.pid) throw e;
        }
      }
      if (!signalled) throw new OciStateError(`cannot signal ${id}: container not running`, 'not-running');
      return;
    }
    signalChecked(s, s.rec.pid, s.rec.pidStart, sig);
  } finally {
    s.dir.close();
  }
}

/**
 * delete: a stopped container's state goes, then its poststop hooks run.
 * --force kills a created or running one first (and a creating one's create
 * process), and is no error when there is no such container.
 */
export async function remove(root: string, id: string, force: boolean, log: Logger): Promise<void> {
  checkId(id);
  const s = load(root, id);
  if (!s) {
    // runc's rule: a directory without a record (a create that died before writing it) goes too.
    const dir = ContainerDir.open(root, id);
    if (dir) {
      try {
        await dir.lock(2000);
        if (!dir.readRecord()) await dir.remove();
      } finally {
        dir.close();
      }
    }
    if (force) return;
    throw notExist(id);
  }
  try {
    const status = statusOf(s);
    if (status !== 'stopped') {
      if (!force) throw new OciStateError(`cannot delete container ${id} that is not stopped: ${status}`, 'state');
      if (status === 'creating') signalChecked(s, s.rec.runtimePid, s.rec.runtimeStart, 'SIGKILL');
      else signalChecked(s, s.rec.pid, s.rec.pidStart, 'SIGKILL');
      if (!(await waitStopped(s, 5000)))
        throw new OciStateError(`container ${id} is still ${statusOf(s)} 5 s after SIGKILL`);
    }
    try {
      await s.dir.lock();
    } catch (e) {
      // Another delete got there first.
      if (force && e instanceof OciStateError && e.kind === 'not-exist') return;
      throw e;
    }
    await removeCgroup(s, log);
    await s.dir.remove();
    if (mayRunRecordedHooks(s, log, 'poststop'))
      await runHooks('poststop', s.rec.hooks?.poststop, ociState(s, 'stopped'), log.warn);
  } finally {
    s.dir.close();
  }
}

/**
 * pause / resume: freeze or thaw every process of the container through its
 * cgroup (v2 cgroup.freeze, else the v1 freezer), as runc. A container
 * without a cgroup (no linux.resources and no cgroupsPath, or a caller who
 * may write no hierarchy) cannot be paused, and says why.
 */
export async function freeze(root: string, id: string, pause: boolean): Promise<void> {
  const verb = pause ? 'pause' : 'resume';
  const s = mustLoad(root, checkId(id));
  try {
    const rec = await lockFresh(s);
    const status = statusOf(s);
    if (pause && status !== 'running')
      throw new OciStateError(`cannot pause ${id}: container not running (${status})`, 'state');
    if (!pause && status !== 'paused')
      throw new OciStateError(`cannot resume ${id}: container not paused (${status})`, 'state');
    if (!rec.cgroup)
      throw new OciStateError(
        `cannot ${verb} ${id}: it has no cgroup (the freezer needs one: give the bundle linux.resources or linux.cgroupsPath, as root or in a delegated cgroup)`,
        'state',
      );
    if (s.owner !== process.geteuid!())
      throw new OciStateError(`cannot ${verb} ${id}: its state belongs to uid ${s.owner}`, 'state');
    const { Cgroup } = await import('../cgroups/cgroup.js');
    const cg = Cgroup.fromDirs(rec.cgroup.dirs, rec.cgroup.created);
    if (pause) await cg.freeze();
    else await cg.thaw();
  } finally {
    s.dir.close();
  }
}

/** The cgroup create recorded, removed at delete; only for the state's owner (the record names directories). */
async function removeCgroup(s: LoadedState, log: Logger): Promise<void> {
  const cg = s.rec.cgroup;
  if (!cg) return;
  if (s.owner !== process.geteuid!()) {
    log.warn(`not removing the cgroup of container ${s.rec.id}: its state belongs to uid ${s.owner}`);
    return;
  }
  const { Cgroup } = await import('../cgroups/cgroup.js');
  await Cgroup.fromDirs(cg.dirs, cg.created).destroy();
}

/** list: every container under ROOT with its state. A directory that cannot be read is reported, not fatal. */
export function list(root: string, log: Logger): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const id of listIds(root)) {
    try {
      const s = load(root, id);
      if (!s) continue;
      try {
        out.push(ociState(s));
      } finally {
        s.dir.close();
      }
    } catch (e) {
      log.warn(`${id}: ${(e as Error).message}`);
    }
  }
  return out;
}

/**
 * ps: host pids of the container's processes (created, running or paused):
 * its cgroup.procs when it has a cgroup (an exec'd process and one that left
 * the init's tree are in it too), else the init's pid namespace or tree.
 */
export async function ps(root: string, id: string): Promise<number[]> {
  const s = mustLoad(root, checkId(id));
  try {
    const status = statusOf(s);
    if (status !== 'running' && status !== 'created' && status !== 'paused') return [];
    if (s.rec.cgroup) {
      const { Cgroup } = await import('../cgroups/cgroup.js');
      return Cgroup.fromDirs(s.rec.cgroup.dirs, s.rec.cgroup.created)
        .pids()
        .sort((a, b) => a - b);
    }
    return containerPids(s.rec.pid);
  } finally {
    s.dir.close();
  }
}

export interface ExecOptions {
  /** A runtime-spec process object (JSON file), replacing the bundle's. */
  processFile?: string;
  args: string[];
  tty?: boolean;
  consoleSocket?: number;
  detach?: boolean;
  pidFile?: string;
  env?: string[];
  cwd?: string;
  user?: string;
  caps?: string[];
  noNewPrivs?: boolean;
  preserveFds?: number;
}

/** The process `exec` runs: --process FILE, or the container's own with the command line's changes. */
export function execProcess(base: Process, o: ExecOptions): Process {
  let p: Process;
  if (o.processFile) {
    let text: string;
    try {
      text = readFileSync(o.processFile, 'utf8');
    } catch (e) {
      throw new OciStateError(`--process: cannot read ${o.processFile}: ${(e as NodeJS.ErrnoException).code}`, 'usage');
    }
    try {
      p = JSON.parse(text);
    } catch {
      throw new OciStateError(`--process: ${o.processFile} is not valid JSON`, 'usage');
    }
    if (!p || typeof p !== 'object' || !Array.isArray(p.args))
      throw new OciStateError(`--process: ${o.processFile} is not a runtime-spec process (no args)`, 'usage');
    return p;
  }
  if (!o.args.length) throw new OciStateError('exec needs a command (ID COMMAND [ARG...]) or --process FILE', 'usage');
  p = structuredClone(base);
  p.args = o.args;
  p.terminal = !!o.tty;
  if (o.cwd) p.cwd = o.cwd;
  if (o.env?.length) {
    const env = new Map((p.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e]));
    for (const e of o.env) {
      if (!e.includes('=')) throw new OciStateError(`--env ${e}: must be NAME=VALUE`, 'usage');
      env.set(e.slice(0, e.indexOf('=')), e);
    }
    p.env = [...env.values()];
  }
  if (o.user) {
    const m = /^(\d+)(?::(\d+))?$/.exec(o.user);
    if (!m) throw new OciStateError(`--user ${o.user}: must be UID or UID:GID (numbers)`, 'usage');
    p.user = { ...p.user, uid: Number(m[1]), gid: m[2] !== undefined ? Number(m[2]) : p.user.gid };
  }
  if (o.caps?.length) {
    const caps = p.capabilities ?? {};
    for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const) {
      const cur = new Set(caps[set] ?? []);
      for (const c of o.caps) cur.add(c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`);
      caps[set] = [...cur];
    }
    p.capabilities = caps;
  }
  if (o.noNewPrivs) p.noNewPrivileges = true;
  return p;
}

/**
 * exec: a new process in a created or running container, joining every
 * namespace of its init. Returns the Container (the CLI waits for it, or
 * with detach writes the pid file and leaves).
 */
export async function exec(root: string, id: string, o: ExecOptions): Promise<Container> {
  const s = mustLoad(root, checkId(id));
  let spec: Spec;
  let pid: number;
  try {
    const status = statusOf(s);
    if (status !== 'running' && status !== 'created')
      throw new OciStateError(`cannot exec in a container that is ${status}: ${id}`, 'not-running');
    if (s.owner !== process.geteuid!())
      throw new OciStateError(`container ${id} belongs to uid ${s.owner}: exec into it only as that user`);
    pid = s.rec.pid;
    spec = (await bundleSpec(s.rec.bundle, { ignoreHooks: true, forExec: true })).spec;
  } finally {
    s.dir.close();
  }
  spec.process = execProcess(spec.process!, o);
  if (spec.process.terminal && o.consoleSocket === undefined)
    throw new OciStateError('exec --tty needs --console-socket', 'usage');
  const options: OciSpawnOptions = {
    stdio: 'inherit',
    joinPid: pid,
    ...(o.detach ? { detached: true } : {}),
    ...(o.consoleSocket !== undefined ? { consoleSocket: o.consoleSocket } : {}),
    ...(o.preserveFds ? { preserveFds: o.preserveFds } : {}),
  };
  const c = spawn(spec, options);
  await c.spawned;
  if (o.pidFile) writePidFile(o.pidFile, c.pid!);
  return c;
}

/** run: start a container this process created (its own fd of the fifo), then the poststart hooks. */
export async function startCreated(created: Created, log: Logger): Promise<void> {
  const { dir, rec } = created;
  if (created.hooks.prestart?.length || created.hooks.startContainer?.length) {
    const s: LoadedState = { dir, rec, owner: dir.owner };
    try {
      await runHooks('prestart', created.hooks.prestart, ociState(s, 'created'), log.warn);
    } catch (e) {
      await destroy(s, log);
      dir.close();
      throw e;
    }
    try {
      await startContainer(s, log); // destroys the container when a hook fails
    } catch (e) {
      dir.close();
      throw e;
    }
  }
  dir.unlinkFifo();
  created.rec = { ...rec, started: true };
  dir.writeRecord(created.rec);
  writeSync(created.fifo, Buffer.from([0]));
  closeSync(created.fifo);
  dir.unlock();
  await payloadExecuted(rec.pid, rec.pidStart);
  await runHooks('poststart', created.hooks.poststart, { ...stateOf(rec), status: 'running', pid: rec.pid }, log.warn);
}

/** run's end: the payload exited; remove the state and run the poststop hooks. */
export async function afterRun(created: Created, log: Logger): Promise<void> {
  const { dir, rec } = created;
  try {
    await dir.lock().catch(() => undefined);
    await dir.remove();
  } catch (e) {
    log.warn(`cannot remove the state of ${rec.id}: ${(e as Error).message}`);
  } finally {
    dir.close();
  }
  await runHooks('poststop', created.hooks.poststop, stateOf(rec), log.warn);
}

/** runtime-spec's features document (features.md) for what this runtime implements. */
export async function features(): Promise<Record<string, unknown>> {
  const { OPTION_TABLE, PROPAGATION } = await import('../plan/mount-options.js');
  const { CAPS } = await import('../plan/flags.js');
  const { SECCOMP_ACTIONS, SECCOMP_OPERATORS, SECCOMP_ARCHES, SECCOMP_FLAGS } = await import('../seccomp/types.js');
  const { seccompProbe } = await import('../seccomp/validate.js');
  let supportedFlags: string[] = [];
  let enabled = true;
  try {
    const probe = seccompProbe();
    supportedFlags = Object.entries(SECCOMP_FLAGS)
      .filter(([, bit]) => probe.flags & bit)
      .map(([name]) => name);
  } catch {
    enabled = false;
  }
  return {
    ociVersionMin: '1.0.0',
    ociVersionMax: SPEC_VERSION,
    hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
    mountOptions: [...Object.keys(OPTION_TABLE), ...Object.keys(PROPAGATION), 'bind', 'rbind', 'ro']
      .filter((v, i, a) => a.indexOf(v) === i)
      .sort(),
    linux: {
      namespaces: ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts'],
      capabilities: Object.keys(CAPS).sort(),
      cgroup: { v1: true, v2: true, systemd: false, systemdUser: false, rdma: false },
      seccomp: {
        enabled,
        actions: [...SECCOMP_ACTIONS],
        operators: [...SECCOMP_OPERATORS],
        archs: [...SECCOMP_ARCHES],
        knownFlags: Object.keys(SECCOMP_FLAGS),
        supportedFlags,
      },
      apparmor: { enabled: false },
      selinux: { enabled: false },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: false } },
    },
    annotations: { 'org.nodularity.runtime': 'nodularity-oci' },
  };
}

/** `spec`: a default config.json as `runc spec` writes one (rootfs "rootfs", `sh` at a terminal). */
export async function defaultSpec(rootless: boolean): Promise<Spec> {
  const { createSpec } = await import('./defaults.js');
  const uid = process.geteuid!();
  const gid = process.getegid!();
  const spec = createSpec({ rootfs: 'rootfs', args: ['sh'], network: 'none', hostname: 'nodularity', uid: 0, gid: 0 });
  spec.ociVersion = SPEC_VERSION;
  spec.process!.terminal = true;
  spec.root!.readonly = true;
  const ns = spec.linux!.namespaces!;
  if (rootless) {
    spec.linux!.uidMappings = [{ containerID: 0, hostID: uid, size: 1 }];
    spec.linux!.gidMappings = [{ containerID: 0, hostID: gid, size: 1 }];
  } else {
    spec.linux!.namespaces = ns.filter((n) => n.type !== 'user');
  }
  return spec;
}

export { OciStateError, statusOf };
