// Apptainer instances: a container that outlives the process that started it,
// found again by name, joined by later processes (exec/run/shell/test
// instance://NAME), and stopped as a whole.
//
// The instance is a detached container (spawn's `detached`) whose init is the
// instance: with no startscript, the init waits at a start gate that is never
// opened (a FIFO it holds open for reading and writing, so it never sees
// EOF): the instance is then its namespaces and mounts alone, as Apptainer's
// sinit. With a startscript (`instance start`) or the runscript (`instance
// run`) the init runs that, with stdout/stderr in the instance's log files,
// and the instance lives as long as it does.
//
// Joining uses spawn's `joinPid`: every namespace of the init is joined
// through pidfds, and the process gets the instance's security (user,
// capabilities, no_new_privs, seccomp, rlimits), recorded at start. The
// record (instance-store.ts) is checked for owner and mode and the pid for
// its start time and boot before anything is sent to it or joins it.
import { closeSync, constants as fsc, openSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Cgroup } from '../cgroups/index.js';
import type { Container } from '../container.js';
import { SpecError } from '../errors.js';
import type { Spec } from '../oci/spec.js';
import { readFileInRoot } from '../plan/inroot.js';
import { signalNumber } from '../signals.js';
import type { ResolvedRunImage } from './image.js';
import type { ExecOptions } from './compile.js';
import {
  bootId,
  checkInstanceName,
  currentUser,
  InstanceStore,
  procStat,
  recordAlive,
  type InstanceRecord,
  type StoreUser,
} from './instance-store.js';

export { checkInstanceName, MAX_NAME, type InstanceRecord } from './instance-store.js';

/** The image launcher of index.ts (passed in, to keep the module graph acyclic). */
export type Launcher = typeof import('./index.js');

let launcher: Launcher | undefined;
async function api(): Promise<Launcher> {
  return (launcher ??= await import('./index.js'));
}

export interface InstanceStoreOptions {
  /** The store's base directory (default $NODULARITY_INSTANCE_DIR, else ~/.nodularity/instances). */
  instanceDir?: string;
}

export interface InstanceOptions extends Omit<ExecOptions, 'stdio' | 'terminal' | 'detached' | 'timeout'> {
  /** 'start': the image's startscript, else the init alone keeps it (`instance start`); 'run': its runscript (`instance run`). */
  mode?: 'start' | 'run';
  /** Arguments for the startscript or runscript. */
  args?: string[];
  instanceDir?: string;
}

export interface StopOptions {
  /** Sent first (default SIGTERM); the init passes it to the instance's process. */
  signal?: NodeJS.Signals | number;
  /** Seconds before SIGKILL (default 10, as Apptainer); 0 = SIGKILL at once (`--force`). */
  timeout?: number;
}

export interface StopResult {
  name: string;
  /** The instance was running when stop was called (false: it had died, its record was cleaned). */
  wasRunning: boolean;
  /** It had to be killed with SIGKILL after the timeout. */
  killed: boolean;
}

/** A running instance, as its record describes it. */
export class Instance {
  readonly name: string;
  readonly pid: number;
  readonly image: ResolvedRunImage;
  readonly logs: { out: string; err: string };
  /** @internal */
  readonly record: InstanceRecord;
  /** @internal */
  readonly store: InstanceStore;
  /** @internal the container, when this process started the instance (its init is our child). */
  container?: Container;

  /** @internal use startInstance(), getInstance() or listInstances() */
  constructor(store: InstanceStore, record: InstanceRecord) {
    this.store = store;
    this.record = record;
    this.name = record.name;
    this.pid = record.pid;
    this.image = record.image as ResolvedRunImage;
    this.logs = record.logs ?? store.logPaths(record.name);
  }

  /** Still the process recorded (not a reused pid, not a zombie, same boot). */
  alive(): boolean {
    return recordAlive(this.record);
  }

  /** Run argv in the instance (its namespaces, its security): the same handle exec() returns. */
  async exec(argv: string[], options: ExecOptions = {}) {
    return (await api()).exec(this, argv, options);
  }

  /** The image's runscript in the instance (`run instance://NAME`). */
  async runscript(args: string[] = [], options: ExecOptions = {}) {
    return (await api()).runscript(this, args, options);
  }

  /** SIGTERM (or `signal`), SIGKILL after `timeout` s; resolves when every process of the instance is gone. */
  async stop(options: StopOptions = {}): Promise<StopResult> {
    return stopRecord(this.store, this.record, options, this.container);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitGone(r: InstanceRecord, cg: Cgroup | null, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (!recordAlive(r) && (!cg || cg.pids().length === 0)) return true;
    if (Date.now() >= end) return false;
    await sleep(20);
  }
}

function sendTo(r: InstanceRecord, sig: number): void {
  if (!recordAlive(r)) return;
  try {
    process.kill(r.pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

async function stopRecord(
  store: InstanceStore,
  r: InstanceRecord,
  o: StopOptions,
  own?: Container,
): Promise<StopResult> {
  const timeout = o.timeout ?? 10;
  if (!(Number.isFinite(timeout) && timeout >= 0))
    throw SpecError.inOption('--timeout', `must be a number of seconds (0 or more), not ${JSON.stringify(o.timeout)}`);
  const sig = signalNumber(o.signal ?? 'SIGTERM');
  const cg = r.cgroup?.dirs.length ? Cgroup.fromDirs(r.cgroup.dirs, r.cgroup.created) : null;
  const wasRunning = r.status === 'running' && recordAlive(r);
  let killed = false;
  if (wasRunning) {
    if (timeout === 0 || sig === 9) killed = true;
    else {
      sendTo(r, sig);
      killed = !(await waitGone(r, cg, timeout * 1000));
    }
    if (killed) {
      // SIGKILL to the init ends its pid namespace: the kernel kills every
      // process in it (exec'd ones too) before the init is gone.
      sendTo(r, 9);
      await cg?.killAll('SIGKILL');
      if (!(await waitGone(r, cg, 30_000)))
        throw new SpecError('instance', `instance ${r.name} (pid ${r.pid}) did not end within 30 s of SIGKILL`);
    }
  }
  // Started by this process: the init is our child, a zombie until the
  // container's exit watch reaps it; let it (the timer keeps the loop alive).
  if (own) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([own.exited.catch(() => {}), new Promise((res) => (timer = setTimeout(res, 5000)))]);
    clearTimeout(timer);
  }
  await cleanRecord(store, r);
  return { name: r.name, wasRunning, killed };
}

/** Remove what an ended instance leaves: its cgroup and its record (logs stay). */
async function cleanRecord(store: InstanceStore, r: InstanceRecord): Promise<void> {
  if (r.cgroup?.dirs.length) await Cgroup.fromDirs(r.cgroup.dirs, r.cgroup.created).destroy();
  store.remove(r.name);
}

/**
 * The record if its instance lives; a dead one (killed init, reboot, a start
 * that died half-way) is cleaned and null returned. A claim younger than
 * `graceMs` without a record yet is another start in progress: 'busy'.
 */
async function liveRecord(store: InstanceStore, name: string): Promise<InstanceRecord | null | 'busy'> {
  const r = store.read(name);
  if (!r) {
    let age = Infinity;
    try {
      age = Date.now() - statSync(store.instanceDir(name)).mtimeMs;
    } catch {
      return null;
    }
    if (age < 30_000) return 'busy';
    store.remove(name);
    return null;
  }
  if (recordAlive(r)) return r.status === 'running' ? r : 'busy';
  await cleanRecord(store, r);
  return null;
}

function storeFor(o: InstanceStoreOptions & { user?: StoreUser }, create = false): InstanceStore {
  return new InstanceStore(o.user ?? currentUser(), { base: o.instanceDir, create });
}

/** The running instance called `name`, or null (a dead one found is cleaned). */
export async function getInstance(name: string, options: InstanceStoreOptions = {}): Promise<Instance | null> {
  checkInstanceName(name);
  const store = storeFor(options);
  if (!store.exists()) return null;
  store.checkDirs();
  const r = await liveRecord(store, name);
  return r && r !== 'busy' ? new Instance(store, r) : null;
}

/** The caller's running instances (root: another user's with `user`), dead ones cleaned on the way. */
export async function listInstances(options: InstanceStoreOptions & { user?: StoreUser } = {}): Promise<Instance[]> {
  const store = storeFor(options);
  const out: Instance[] = [];
  for (const name of store.names()) {
    const r = await liveRecord(store, name);
    if (r && r !== 'busy') out.push(new Instance(store, r));
  }
  return out;
}

/** Stop `name` (see Instance.stop); null when there is no such instance. */
export async function stopInstance(
  name: string,
  options: StopOptions & InstanceStoreOptions = {},
): Promise<StopResult | null> {
  checkInstanceName(name);
  const store = storeFor(options);
  if (!store.exists()) return null;
  const r = store.read(name);
  if (!r) return null;
  return stopRecord(store, r, options);
}

// Spawned but not yet recorded: should this process end then (an exit, an
// uncaught error), the instance would run on with no record: it goes too.
const unrecordedPids = new Set<number>();
let exitHook = false;

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}

function watchUnrecorded(pid: number): void {
  unrecordedPids.add(pid);
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const p of unrecordedPids) killPid(p);
  });
}

function hasStartscript(rootfs: string): boolean {
  try {
    readFileInRoot(rootfs, '/.singularity.d/startscript', 1 << 20);
    return true;
  } catch {
    return false;
  }
}

/**
 * Start an instance of `image` called `name` (`instance start IMAGE NAME`,
 * or `instance run` with mode 'run'). Resolves once it runs and is recorded;
 * it outlives this process. A name in use by a live instance is refused.
 */
export async function startInstance(image: string, name: string, options: InstanceOptions = {}): Promise<Instance> {
  checkInstanceName(name, 'instance name');
  const store = storeFor(options, true);
  let claimed = store.claim(name);
  if (!claimed) {
    const r = await liveRecord(store, name);
    if (r !== null) throw SpecError.inOption('instance name', `an instance ${name} already exists`);
    claimed = store.claim(name);
    if (!claimed) throw SpecError.inOption('instance name', `an instance ${name} already exists`);
  }
  const self = procStat(process.pid)!;
  const base: InstanceRecord = {
    version: 1,
    name,
    status: 'starting',
    pid: process.pid,
    startTime: self.startTime,
    bootId: bootId(),
    uid: store.uid,
    created: new Date().toISOString(),
  };
  let out: number | undefined, err: number | undefined, gate: number | undefined;
  const closeAll = () => {
    for (const fd of [out, err, gate]) if (fd !== undefined) closeSync(fd);
    out = err = gate = undefined;
  };
  let started = false;
  let unrecorded: number | undefined;
  const killUnrecorded = () => {
    if (unrecorded !== undefined) killPid(unrecorded);
    forget();
  };
  const forget = () => {
    if (unrecorded !== undefined) unrecordedPids.delete(unrecorded);
    unrecorded = undefined;
  };
  try {
    store.write(base);
    const logs = store.logPaths(name);
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_APPEND | fsc.O_NOFOLLOW | fsc.O_NOCTTY;
    out = openSync(logs.out, flags, 0o600);
    err = openSync(logs.err, flags, 0o600);
    const { resolveRunImage, presetImage } = await import('./image.js');
    const img = await resolveRunImage(image, options.pull);
    const mode: InstanceRecord['mode'] =
      options.mode === 'run' ? 'runscript' : hasStartscript(img.rootfs) ? 'startscript' : 'keepalive';
    if (mode === 'keepalive') {
      // A FIFO opened read-write: the init holds a writer itself, so its read
      // at the gate never ends (no EOF when we exit), and no one opens it.
      const fifo = join(store.instanceDir(name), 'gate');
      execFileSync('mkfifo', ['-m', '600', '--', fifo]);
      gate = openSync(fifo, fsc.O_RDWR | fsc.O_NOFOLLOW);
    }
    let spec: Spec | undefined;
    const hooks = {
      prepare: (c: { spec: Spec }) => {
        spec = c.spec;
      },
      spawned: (c: Container) => {
        unrecorded = c.pid;
        watchUnrecorded(c.pid!);
      },
      launch: {
        detached: true,
        stdio: ['ignore', out, err] as ['ignore', number, number],
        cgroupName: `instance-${store.uid}-${name}`,
        ...(gate !== undefined ? { startGate: gate } : {}),
      },
    };
    const { launchImage } = await api();
    const { mode: _m, args = [], instanceDir: _d, ...rest } = options;
    const eo: ExecOptions = { ...rest, stdio: ['ignore', out, err], terminal: false };
    const argv = mode === 'startscript' ? ['/.singularity.d/startscript', ...args] : args;
    const c = await presetImage.run(img, () =>
      launchImage(image, argv, eo, mode === 'runscript' ? 'run' : mode === 'startscript' ? 'exec' : 'shell', hooks),
    );
    const st = procStat(c!.pid!);
    if (!st) throw new SpecError('instance', `instance ${name} ended as it started (see ${logs.err})`);
    const p = spec!.process!;
    const record: InstanceRecord = {
      ...base,
      status: 'running',
      pid: c!.pid!,
      startTime: st.startTime,
      image: { ref: img.ref, rootfs: img.rootfs, sandbox: img.sandbox, config: img.config, digest: img.digest },
      mode,
      argv: c!.argv,
      security: {
        user: p.user,
        capabilities: p.capabilities,
        noNewPrivileges: p.noNewPrivileges,
        rlimits: p.rlimits,
        apparmorProfile: p.apparmorProfile,
        seccomp: spec!.linux?.seccomp,
      },
      cgroup: c!.cgroup ? { dirs: c!.cgroup.dirs, created: c!.cgroup.created } : null,
      logs,
      net: !!spec!.linux?.namespaces?.some((n) => n.type === 'network'),
      contain: !!(options.contain || options.containall),
    };
    store.write(record);
    started = true;
    forget();
    const inst = new Instance(store, record);
    inst.container = c!;
    return inst;
  } finally {
    closeAll();
    if (!started) {
      killUnrecorded();
      store.remove(name);
    }
  }
}

/** Resolve `instance://NAME` (the IMAGE argument of exec/run/shell/test) to its running instance. */
export async function instanceFromRef(ref: string, options: InstanceStoreOptions = {}): Promise<Instance> {
  const name = ref.slice('instance://'.length);
  checkInstanceName(name, 'image');
  const i = await getInstance(name, options);
  if (!i) throw SpecError.inOption('image', `no instance ${name} is running (see \`nodularity instance list\`)`);
  return i;
}

/** The exec's spec made a joining one: the instance's security replaces what the exec's options compiled. */
export function joinSpec(spec: Spec, r: InstanceRecord): void {
  const s = r.security ?? {};
  const p = spec.process!;
  if (s.user) p.user = s.user as typeof p.user;
  p.capabilities = s.capabilities as typeof p.capabilities;
  p.noNewPrivileges = s.noNewPrivileges;
  p.rlimits = s.rlimits as typeof p.rlimits;
  if (s.apparmorProfile) p.apparmorProfile = s.apparmorProfile;
  else delete p.apparmorProfile;
  if (spec.linux) {
    delete spec.linux.uidMappings;
    delete spec.linux.gidMappings;
    if (s.seccomp) spec.linux.seccomp = s.seccomp as typeof spec.linux.seccomp;
    else delete spec.linux.seccomp;
  }
}

/** Check a record still names its process right before a join; throws when it died meanwhile. */
export function checkJoinable(i: Instance): void {
  if (!i.alive()) throw SpecError.inOption('image', `instance ${i.name} is no longer running`);
  const st = procStat(i.pid);
  if (st && st.uid !== i.store.uid && process.geteuid!() !== 0)
    throw SpecError.inOption('image', `instance ${i.name}: process ${i.pid} is not yours`);
}
