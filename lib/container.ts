// The public launcher: spawn() returns a ChildProcess-like Container, run()
// awaits one. One path from spec to addon: prepareLaunch -> binding.spawn.
import { EventEmitter } from 'node:events';
import { closeSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { ReadStream } from 'node:tty';
import { constants as osc } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { ContainerError, SpecError } from './errors.js';
import { loadBinding, type ContainerHandle, type NativeRusage, type SpawnSuccess } from './native.js';
import { hrtime } from 'node:process';
import { STEP_NAMES } from './errors.js';
import { prepareLaunch, type PlanOptions, type PreparedLaunch } from './plan/plan.js';
import { prepareEnter } from './plan/enter.js';
import type { Spec } from './oci/spec.js';
import { signalName, signalNumber } from './signals.js';
import { Cgroup, CgroupError } from './cgroups/cgroup.js';
import type { CgroupStats } from './cgroups/types.js';

/** One stdio slot: a pipe, the caller's own (inherit), /dev/null (ignore), or an fd of ours. */
export type StdioOption = 'pipe' | 'inherit' | 'ignore' | number;

export interface SpawnOptions extends PlanOptions {
  /** One value for all three, or one per stream (as child_process). Default 'pipe'. */
  stdio?: StdioOption | [StdioOption, StdioOption, StdioOption];
  /** Stop the container (killSignal, then SIGKILL after forceKillAfterDelay) when aborted. */
  signal?: AbortSignal;
  /** Stop the container (killSignal, then SIGKILL after forceKillAfterDelay) after this many ms. */
  timeout?: number;
  /** Signal for abort and timeout; default SIGTERM, forwarded by the init to the payload. */
  killSignal?: NodeJS.Signals | number;
  /**
   * ms between killSignal (sent for `timeout` or `signal`) and SIGKILL to the
   * container, when it is still running; default 10 000 (Docker's and
   * Apptainer's stop timeout; execa's option of the same name). `false`: never
   * escalate. An explicit kill() sends only what it is asked to.
   */
  forceKillAfterDelay?: number | false;
  /**
   * The create/start split (runc's create, then start): an fd of the caller's
   * (a FIFO opened O_RDWR, or a pipe's read end). The container is set up
   * completely and its init (always used then) waits, holding nothing of this
   * process, for one byte on it before it runs the payload; EOF or an error
   * ends the container (127) without running the payload, and a terminating
   * signal (SIGTERM, ...) ends it as that signal. 'spawn' and `spawned` come
   * once the init waits there (`pid` is the init's, PID 1 of the container);
   * starting is writing one byte. The fd stays the caller's to close.
   */
  startGate?: number;
  /**
   * With `process.terminal`: a connected AF_UNIX stream socket of the caller
   * (runc's --console-socket). The pty is made in the container's devpts and
   * its master sent over it with SCM_RIGHTS (the data is the slave's name,
   * "/dev/pts/N"), as runc does; `terminal` stays null then.
   */
  consoleSocket?: number;
  /** The caller's fds 3 .. 3+N-1 stay open in the payload at the same numbers (runc's --preserve-fds). */
  preserveFds?: number;
  /**
   * Hooks before pivot_root (runtime-spec's prestart, createRuntime,
   * createContainer): called with the container's pid once every namespace
   * exists and every mount is in place, while the container waits. Its
   * mount namespace's root is still the host's then, so a createContainer
   * hook run with `{joinPid: pid}` finds its path (and the bundle's rootfs,
   * with the container's mounts) as on the host. When the promise resolves
   * the launch goes on; when it rejects the container is ended and `spawned`
   * rejects with that error.
   */
  beforePivot?: (pid: number) => Promise<void>;
  /**
   * The name of the container's cgroup when `linux.resources` or
   * `linux.cgroupsPath` asks for one and the path does not say
   * (default `nodularity-<pid>-<n>`, under the caller's own cgroup).
   */
  cgroupName?: string;
  /**
   * Record when each phase of this launch happened (container.timing): the
   * bench's per-phase breakdown. A few clock reads per launch.
   */
  timing?: boolean;
}

/**
 * When the phases of a timed launch (SpawnOptions.timing) happened: ns on
 * process.hrtime.bigint()'s clock (CLOCK_MONOTONIC), as numbers.
 */
export interface LaunchTiming {
  /** spawn() (or a prepared container's spawn()) was called. */
  start: number;
  /** The launch plan is made (validation and planning, or a prepared container's per-launch part). */
  planned: number;
  /** The addon's spawn() entered; `queued`: it handed the launch to a worker thread and returned. */
  call: number;
  /** The plan converted to C (the rest of the addon's main-thread part: pipes, fds, the handle). */
  converted: number;
  queued: number;
  /** A worker thread took the launch; `clone`: just before clone(2). */
  worker: number;
  clone: number;
  /** The child's step table (vfork-style launches): its start, then the end of each step, by name. */
  childStart?: number;
  childSteps: { step: string; ns: number }[];
  /** clone(2) returned: the child exec'd (the init, or without one the payload). */
  cloneDone: number;
  /** The exec verdict was read (with the init: the payload exec'd). */
  verdict: number;
  /** Back on the main thread (`native`), in the JS spawn callback (`spawned`). */
  mainThread: number;
  spawned: number;
  /** The exit was seen (the pidfd polled readable), and the JS exit callback ran. */
  exitSeen?: number;
  exited?: number;
}

/** Default of SpawnOptions.forceKillAfterDelay, in ms. */
export const DEFAULT_FORCE_KILL_AFTER_DELAY = 10_000;

/**
 * As process.resourceUsage(), of the container: CPU times, faults, I/O and
 * context switches are the whole container's (the init's, children included).
 * maxRSS (KiB) is the payload's own peak as the init saw it, or null when
 * unknown: without an init (`init: false`), or when the init died before it
 * could report (see ExitResult.initDied). The kernel's figure for the process
 * we clone would include the Node process's memory, so none is given rather
 * than a wrong one.
 */
export type Rusage = Omit<NativeRusage, 'maxRSS'> & { maxRSS: number | null };

export interface ExitResult {
  pid: number;
  /** Exit code, or 128+N when the payload died of signal N (shell convention). */
  exitCode: number;
  /** Name of the signal that ended the container, or null. */
  signal: NodeJS.Signals | null;
  rusage: Rusage;
  /**
   * True when the timeout fired while the container was running, so its
   * killSignal was sent (and SIGKILL after forceKillAfterDelay if it was still
   * running; `signal` says which ended it). False when it ended first, of
   * whatever cause.
   */
  timedOut: boolean;
  /**
   * True when the container's init ended without reporting the payload's
   * status: it was SIGKILLed (by the timeout's or abort's escalation, by
   * kill('SIGKILL'), or by another process) or crashed. The pid namespace,
   * payload included, ended with it. exitCode and signal are then the init's,
   * rusage.maxRSS is null. Always false with `init: false`.
   */
  initDied: boolean;
  /**
   * The container's cgroup figures at exit (peak memory, OOM kills, CPU),
   * when it had a cgroup (linux.resources or linux.cgroupsPath); else absent.
   */
  cgroup?: CgroupStats;
}

function normalizeStdio(s: SpawnOptions['stdio']): [StdioOption, StdioOption, StdioOption] {
  const v = s ?? 'pipe';
  const arr = Array.isArray(v) ? v : [v, v, v];
  if (arr.length !== 3) throw new TypeError('options.stdio must be one value or an array of three');
  arr.forEach((x, i) => {
    if (!(
      x === 'pipe' ||
      x === 'inherit' ||
      x === 'ignore' ||
      (typeof x === 'number' && Number.isInteger(x) && x >= 0)
    ))
      throw new TypeError(
        `options.stdio[${i}] must be 'pipe', 'inherit', 'ignore' or a file descriptor, got ${JSON.stringify(x)}`,
      );
  });
  return arr as [StdioOption, StdioOption, StdioOption];
}

/**
 * A running (or starting) container, shaped like Node's ChildProcess.
 * Events: 'spawn' (payload exec'd; with startGate: the init waits at the gate), 'exit' (code, signal), 'close' (exit and
 * stdio drained), 'error' (launch failed; emitted only when listened to, the
 * `spawned` and `exited` promises reject as well).
 */
export class Container extends EventEmitter {
  /** Pid in the caller's pid namespace (of the init, when there is one); set at 'spawn'. */
  pid: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Resolves once the payload has been exec'd; rejects with ContainerError. */
  readonly spawned: Promise<void>;
  /** Resolves with the exit; rejects if the launch failed. */
  readonly exited: Promise<ExitResult>;
  /** µs that clone() blocked the worker thread (the vfork window). */
  cloneMicros: number | undefined;
  /** With SpawnOptions.timing: when each phase of the launch happened, once spawned (exitSeen, exited at the exit). */
  timing: LaunchTiming | undefined;
  /**
   * With `process.terminal`: the container's terminal (the pty master), set at
   * 'spawn'. Write keystrokes to it, read what the payload shows; stdin,
   * stdout and stderr are null then.
   */
  terminal: Socket | null = null;
  private terminalFd: number | undefined;

  private handle: ContainerHandle;
  /** Signals asked for before the launch completed, sent in order at 'spawn'. */
  private pendingSignals: Array<{ signal: number; stop: boolean; timeout: boolean }> = [];
  private state: 'starting' | 'running' | 'exited' | 'failed' = 'starting';
  private timedOut = false;
  private timer: NodeJS.Timeout | undefined;
  private forceKillTimer: NodeJS.Timeout | undefined;
  private abortCleanup: (() => void) | undefined;
  private readonly killSignalNumber: number;
  private readonly forceKillAfterDelay: number | false;

  /**
   * The container's cgroup, when linux.resources or linux.cgroupsPath asked
   * for one: every process of the container is in it from the payload's
   * first instruction. killAll(), freeze(), stats().
   */
  readonly cgroup: Cgroup | null;

  /**
   * @internal use spawn(). `enter`: an exec's target cgroup (Cgroup.ofProcess),
   * which the init joins at the gate as a container's own does, but which is
   * not this Container's to kill, read or remove.
   */
  constructor(
    prepared: PreparedLaunch,
    options: SpawnOptions,
    cgroup: Cgroup | null = null,
    enter: Cgroup | null = null,
    rootfsFd?: number,
    started?: { start: number; planned: number },
  ) {
    super();
    this.cgroup = cgroup;
    const placeIn = cgroup ?? enter;
    const stdio = normalizeStdio(options.stdio);
    const killSignal = signalNumber(options.killSignal ?? 'SIGTERM');
    this.killSignalNumber = killSignal;
    if (options.timeout !== undefined && !(Number.isFinite(options.timeout) && options.timeout > 0))
      throw new TypeError(`options.timeout must be a positive number of ms, got ${options.timeout}`);
    const fk = options.forceKillAfterDelay ?? DEFAULT_FORCE_KILL_AFTER_DELAY;
    if (fk !== false && !(Number.isFinite(fk) && fk >= 0))
      throw new TypeError(
        `options.forceKillAfterDelay must be a number of ms (0 or more) or false, got ${JSON.stringify(fk)}`,
      );
    this.forceKillAfterDelay = fk;
    if (options.signal?.aborted) throw options.signal.reason ?? new DOMException('aborted', 'AbortError');

    let resolveSpawned!: () => void, rejectSpawned!: (e: Error) => void;
    let resolveExited!: (r: ExitResult) => void, rejectExited!: (e: Error) => void;
    this.spawned = new Promise((res, rej) => {
      resolveSpawned = res;
      rejectSpawned = rej;
    });
    this.exited = new Promise((res, rej) => {
      resolveExited = res;
      rejectExited = rej;
    });
    // Callers may use only one of the two; neither should raise an unhandled rejection.
    this.spawned.catch(() => {});
    this.exited.catch(() => {});

    const binding = loadBinding();
    // A cgroup takes the init at the gate, before the payload runs: the
    // caller's gate (create/start), else one of ours released at once.
    let ownGate: [number, number] | undefined;
    if (placeIn && options.startGate === undefined) {
      const p = binding.makePipe();
      if (typeof p === 'number') throw new ContainerError('start gate', { step: 'prepare', errno: -p });
      ownGate = p;
    }
    const closeGate = () => {
      if (ownGate) for (const fd of ownGate) closeSync(fd);
      ownGate = undefined;
    };
    // With a terminal the child puts the pty on 0, 1, 2 itself.
    const slots: StdioOption[] = prepared.plan.terminal
      ? ['ignore', 'ignore', 'ignore']
      : stdio.map((s, i) => (s === 'inherit' ? i : s));
    let streamsOpen = 0;
    let exitInfo: [number, NodeJS.Signals | null] | undefined;
    const maybeClose = () => {
      if (exitInfo && streamsOpen === 0) this.emit('close', ...exitInfo);
    };
    let hookError: Error | undefined;
    const onSpawn = (err: Parameters<Parameters<typeof binding.spawn>[2]>[0], res?: SpawnSuccess) => {
      const spawnedAt = options.timing ? Number(hrtime.bigint()) : 0;
      if (!err && res!.paused) {
        // Set up but for pivot_root: into the container's cgroup first, so
        // that the caller's hooks (createContainer: execs joining this pid,
        // which join its cgroup) run under the container's limits, then the
        // hooks, then on. (Placed again below when it resumes: a no-op.)
        if (placeIn) {
          try {
            placeIn.addProcess(res!.pid);
          } catch (e) {
            cgroupFailure = e as Error;
            this.handle.resume(false, onSpawn);
            return;
          }
        }
        Promise.resolve()
          .then(() => options.beforePivot!(res!.pid))
          .then(
            () => this.handle.resume(true, onSpawn),
            (e: unknown) => {
              hookError = e instanceof Error ? e : new Error(String(e));
              this.handle.resume(false, onSpawn);
            },
          );
        return;
      }
      if (!err && placeIn) {
        try {
          placeIn.addProcess(res!.pid);
        } catch (e) {
          // The init waits at the gate: end it; the cgroup goes once it is gone (onExit).
          cgroupFailure = e as Error;
          this.handle.kill(osc.signals.SIGKILL);
        }
      }
      if (err || cgroupFailure) {
        this.state = 'failed';
        this.clearKillers();
        closeGate();
        if (err) {
          // It never held a process; a failure to remove it must not become an uncaught exception here.
          try {
            cgroup?.removeEmpty();
          } catch (e) {
            this.emit('cgroupError', e);
          }
        }
        const error = hookError ?? cgroupFailure ?? prepared.describeFailure(err!);
        for (const s of [this.stdin, this.stdout, this.stderr]) s?.destroy();
        rejectSpawned(error);
        rejectExited(error);
        if (this.listenerCount('error') > 0) this.emit('error', error);
        return;
      }
      if (ownGate) {
        // In its cgroup: let the init run the payload.
        writeSync(ownGate[1], 'g');
        closeGate();
      }
      this.state = 'running';
      this.pid = res!.pid;
      this.cloneMicros = res!.cloneMicros;
      if (options.timing && res!.times) this.timing = launchTiming(started, res!, spawnedAt);
      if (res!.terminalFd !== undefined) {
        // A pty master is a TTY to libuv: net.Socket refuses the fd, tty.ReadStream (a duplex) takes it.
        const term = new ReadStream(res!.terminalFd);
        // Reading a pty master whose last slave closed fails with EIO: that is its end.
        term.on('error', (e: NodeJS.ErrnoException) => {
          if (e.code !== 'EIO') this.emit('terminalError', e);
          term.destroy();
        });
        streamsOpen++;
        term.once('close', () => {
          streamsOpen--;
          maybeClose();
        });
        this.terminal = term;
        this.terminalFd = res!.terminalFd;
      }
      resolveSpawned();
      this.emit('spawn');
      // Asked for before the pid existed (kill(), the timeout, an abort):
      // delivered now that the payload runs, and a stop's grace period starts
      // here. The launch itself is not cancelled: it runs on a worker thread
      // with no cancellation point. A 'spawn' listener may have ended it already.
      for (const p of this.pendingSignals.splice(0)) {
        if (this.state !== 'running') break;
        this.deliver(p.signal, p.stop, p.timeout);
      }
    };
    const useInit = prepared.plan.init;
    let cgroupFailure: Error | undefined;
    const onExit = (code: number, sig: number | null, native: NativeRusage, seenNs?: number) => {
      if (this.timing && seenNs) Object.assign(this.timing, { exitSeen: seenNs, exited: Number(hrtime.bigint()) });
      if (cgroupFailure) {
        // The init we killed at the gate; the launch was reported failed.
        void cgroup?.destroy().catch(() => {});
        return;
      }
      this.state = 'exited';
      this.clearKillers();
      this.exitCode = code;
      this.signalCode = sig ? signalName(sig) : null;
      exitInfo = [code, this.signalCode];
      // exit_watch.cc: maxRSS -1 = no status record from the init.
      const known = native.maxRSS >= 0;
      const rusage: Rusage = { ...native, maxRSS: known ? native.maxRSS : null };
      const result: ExitResult = {
        pid: this.pid!,
        exitCode: code,
        signal: this.signalCode,
        rusage,
        timedOut: this.timedOut,
        initDied: useInit && !known,
      };
      const finish = () => {
        resolveExited(result);
        this.emit('exit', code, this.signalCode);
        maybeClose();
      };
      if (!cgroup) return finish();
      // The figures first, then what is left (a payload that left the pid
      // namespace's reach, or had none) is killed and the cgroup removed,
      // unless the container was detached: its owner removes it (oci delete).
      result.cgroup = cgroup.stats();
      if (options.detached) return finish();
      cgroup.destroy().then(finish, (e: Error) => {
        this.emit('cgroupError', e);
        finish();
      });
    };
    try {
      this.handle = binding.spawn(prepared.compiled?.plan ?? prepared.plan, slots, onSpawn, onExit, {
        override: prepared.compiled?.override,
        startGate: options.startGate ?? ownGate?.[0],
        consoleSocket: options.consoleSocket,
        preserveFds: options.preserveFds,
        rootfsFd,
        timing: options.timing === true,
      });
    } catch (e) {
      // Refused before clone (a bad fd, spawn_prepare's errno): our gate's pipe goes too.
      closeGate();
      throw e;
    }
    // Detached: the container outlives us, so its exit must not keep the loop
    // alive (the launch itself still does, until 'spawn').
    if (options.detached) this.handle.unref();
    const fds = this.handle.stdio;
    const wrap = (fd: number, readable: boolean) => {
      if (fd < 0) return null;
      const s = new Socket({ fd, readable, writable: !readable });
      if (readable) {
        streamsOpen++;
        s.once('close', () => {
          streamsOpen--;
          maybeClose();
        });
      } else {
        // A payload that exits without reading its stdin makes writes fail with EPIPE: not our error.
        s.on('error', () => {});
      }
      return s;
    };
    this.stdin = wrap(fds[0], false);
    this.stdout = wrap(fds[1], true);
    this.stderr = wrap(fds[2], true);

    if (options.timeout !== undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.stop(true);
      }, options.timeout);
      this.timer.unref?.();
    }
    if (options.signal) {
      const sigObj = options.signal;
      const onAbort = () => this.stop(false);
      sigObj.addEventListener('abort', onAbort, { once: true });
      this.abortCleanup = () => sigObj.removeEventListener('abort', onAbort);
    }
  }

  /** Set the terminal's size (process.terminal only); the payload gets SIGWINCH. */
  resize(columns: number, rows: number): void {
    if (!this.terminal) throw new Error('resize() needs a container started with process.terminal');
    if (this.terminal.destroyed || this.terminalFd === undefined) return;
    const r = loadBinding().setWindowSize(this.terminalFd, rows, columns);
    if (r < 0) throw Object.assign(new Error(`TIOCSWINSZ failed (errno ${-r})`), { errno: -r });
  }

  private clearKillers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.forceKillTimer) clearTimeout(this.forceKillTimer);
    this.timer = this.forceKillTimer = undefined;
    this.abortCleanup?.();
  }

  /** The timeout or the AbortSignal: killSignal now (or at 'spawn'), SIGKILL after the grace period. */
  private stop(timeout: boolean): void {
    if (this.state === 'starting') this.pendingSignals.push({ signal: this.killSignalNumber, stop: true, timeout });
    else if (this.state === 'running') this.deliver(this.killSignalNumber, true, timeout);
  }

  /**
   * Send through the pidfd. A stop (timeout, abort) arms the escalation: a
   * payload may ignore killSignal, and without an init it is PID 1 of its
   * namespace, which the kernel shields from every signal it has no handler
   * for (kernel/signal.c: sig_task_ignored() drops, when sent, a SIG_DFL
   * signal to a SIGNAL_UNKILLABLE task unless it is SIGKILL or SIGSTOP from
   * an ancestor pid namespace; get_signal() drops, when delivered, any
   * default-action signal but SIGKILL/SIGSTOP; SIG_IGN is ignored as
   * anywhere), so a plain `sleep` as PID 1 never sees our SIGTERM. SIGKILL
   * from here, an ancestor namespace, always ends it; sent to the init, it
   * ends the whole namespace.
   */
  private deliver(signal: number, stop: boolean, timeout: boolean): boolean {
    const ok = this.handle.kill(signal) === 0;
    // SIGKILL ends the whole container: with a cgroup, every process in it,
    // those outside the init's reach included (no pid namespace, a double fork).
    if (signal === osc.signals.SIGKILL && this.cgroup) void this.cgroup.killAll().catch(() => {});
    if (!ok || !stop) return ok;
    // Only a kill that reached a running container makes the result "timed out".
    if (timeout) this.timedOut = true;
    if (signal !== osc.signals.SIGKILL && this.forceKillAfterDelay !== false && !this.forceKillTimer) {
      this.forceKillTimer = setTimeout(() => {
        this.forceKillTimer = undefined;
        if (this.state === 'running') this.handle.kill(osc.signals.SIGKILL);
      }, this.forceKillAfterDelay);
      // As the timeout's: the exit watch is what keeps the loop alive (unless unref()).
      this.forceKillTimer.unref();
    }
    return ok;
  }

  /**
   * Send a signal (default SIGTERM) through the pidfd; the init forwards it to
   * the payload. Before the launch completes the signal is queued and sent once
   * the payload runs ('spawn'). No escalation: kill() sends what is asked.
   * Without an init a signal the payload has no handler for is dropped by the
   * kernel (PID 1, see deliver()), SIGKILL excepted. False once exited.
   */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const n = signalNumber(signal);
    if (this.state === 'starting') {
      this.pendingSignals.push({ signal: n, stop: false, timeout: false });
      return true;
    }
    if (this.state !== 'running') return false;
    return this.deliver(n, false, false);
  }

  /** Let the Node process exit while the container runs (as ChildProcess.unref). */
  unref(): this {
    this.handle.unref();
    return this;
  }

  ref(): this {
    this.handle.ref();
    return this;
  }
}

/**
 * Connect to a console socket (runc's --console-socket PATH, where conmon or
 * containerd's shim listen) and return the fd for SpawnOptions.consoleSocket
 * (close-on-exec; the caller closes it once the container is spawned).
 * Throws an Error with `code` (ENOENT, ECONNREFUSED, ...) naming the path.
 */
export function openConsoleSocket(path: string): number {
  const r = loadBinding().connectUnixSocket(path);
  if (r >= 0) return r;
  const code = Object.entries(osc.errno).find(([, n]) => n === -r)?.[0] ?? `errno ${-r}`;
  throw Object.assign(new Error(`console socket ${path}: cannot connect (${code})`), { code, errno: -r, path });
}

/** The LaunchTiming of a timed launch from the addon's figures. */
function launchTiming(started: { start: number; planned: number } | undefined, res: SpawnSuccess, spawned: number) {
  const t = res.times!;
  const steps = (res.stepTimes ?? []).filter(([, ns]) => ns > 0);
  return {
    start: started?.start ?? t[0],
    planned: started?.planned ?? t[0],
    call: t[0],
    converted: t[7],
    queued: t[1],
    worker: t[2],
    clone: t[3],
    childStart: steps.find(([s]) => s === -1)?.[1],
    childSteps: steps.filter(([s]) => s >= 0).map(([s, ns]) => ({ step: STEP_NAMES[s] ?? `step ${s}`, ns })),
    cloneDone: t[4],
    verdict: t[5],
    mainThread: t[6],
    spawned,
  } satisfies LaunchTiming;
}

/** Launch a container from an OCI runtime spec. Throws SpecError before clone for bad specs. */
export function spawn(spec: Spec, options: SpawnOptions = {}): Container {
  const start = options.timing ? Number(hrtime.bigint()) : 0;
  if (options.startGate !== undefined) {
    // The init waits on the gate: the clone child (which shares our memory
    // until its exec) must not.
    if (options.init === false) throw SpecError.inOption('init', 'startGate needs the init (init: false was given)');
    options = { ...options, init: true };
  }
  if (options.consoleSocket !== undefined && spec.process?.terminal !== true)
    throw SpecError.inOption('consoleSocket', 'needs process.terminal: true');
  // exec (joinPid) enters the target's cgroup (below), and makes none of its own.
  const cg = options.joinPid !== undefined ? false : cgroupWanted(spec);
  if (cg && options.init === false) throw SpecError.inOption('init', 'a cgroup needs the init (init: false was given)');
  if (cg) options = { ...options, init: true };
  const prepared = options.joinPid !== undefined ? prepareEnter(spec, options) : prepareLaunch(spec, options);
  const started = options.timing ? { start, planned: Number(hrtime.bigint()) } : undefined;
  return launchPlanned(spec, prepared, options, cg, undefined, started);
}

/**
 * @internal The launch once planned (spawn(), and a prepared container's
 * spawn()): the hooks' pause, the cgroup, the Container. `rootfsFd`: the
 * rootfs directory a prepared container pinned, which the child checks the
 * path against instead of the directory the path reaches now.
 */
export function launchPlanned(
  spec: Spec,
  prepared: PreparedLaunch,
  options: SpawnOptions,
  cg: 'required' | 'wanted' | false,
  rootfsFd?: number,
  started?: { start: number; planned: number },
): Container {
  if (options.beforePivot !== undefined) {
    if (typeof options.beforePivot !== 'function') throw new TypeError('options.beforePivot must be a function');
    if (options.joinPid !== undefined) throw SpecError.inOption('beforePivot', 'an exec has no pivot_root');
    prepared.plan.hooksPause = true;
  }
  // An exec joins every cgroup of the target that is not ours before its
  // payload runs (the init waits at a gate meanwhile), so the container's
  // limits hold for it, and kill --all, delete and pause reach it.
  const enter = options.joinPid !== undefined ? Cgroup.ofProcess(options.joinPid) : null;
  const cgroup = cg ? containerCgroup(spec, options, cg === 'required') : null;
  try {
    return new Container(prepared, options, cgroup, enter, rootfsFd, started);
  } catch (e) {
    cgroup?.removeEmpty();
    throw e;
  }
}

let cgroupCount = 0;

/**
 * Whether the spec asks for a cgroup: 'required' with limits (they must hold
 * or the launch fails), 'wanted' with only device rules or a cgroupsPath
 * (made where the caller may, else the container runs without one, as it
 * would without a cgroup manager), false otherwise (no cost at all).
 */
export function cgroupWanted(spec: Spec): 'required' | 'wanted' | false {
  const r = spec.linux?.resources;
  const some = (v: unknown) =>
    v !== undefined && v !== null && (typeof v !== 'object' || Object.keys(v as object).length > 0);
  // Every key but devices is a limit (or one we refuse by name: network, rdma).
  if (r && Object.entries(r).some(([k, v]) => k !== 'devices' && some(v))) return 'required';
  if ((r?.devices?.length ?? 0) > 0 || spec.linux?.cgroupsPath) return 'wanted';
  return false;
}

function containerCgroup(spec: Spec, options: SpawnOptions, required: boolean): Cgroup | null {
  try {
    return Cgroup.create({
      path: spec.linux?.cgroupsPath,
      id: options.cgroupName ?? `${process.pid}-${++cgroupCount}`,
      resources: spec.linux?.resources,
      devices: (spec.linux as { devices?: { type: string; major: number; minor: number }[] } | undefined)?.devices,
    });
  } catch (e) {
    if (!required && e instanceof CgroupError && e.code === 'EACCES') return null;
    throw e;
  }
}

export interface RunResult extends ExitResult {
  /** Collected output of the streams given as 'pipe'. */
  stdout?: Buffer;
  stderr?: Buffer;
}

/**
 * Launch and wait for the exit. "run" always means this here, as in `crun
 * run`, `nodularity run-bundle` and `oci run`; Apptainer's run verb is
 * `runscript()`. stdio defaults to 'inherit'; streams given as
 * 'pipe' are collected into the result. Rejects with ContainerError when the
 * launch fails, with the AbortSignal's reason when aborted (after the exit).
 */
export async function run(spec: Spec, options: SpawnOptions & { input?: string | Buffer } = {}): Promise<RunResult> {
  return awaitRun((o) => spawn(spec, o), options);
}

/** @internal run() over a launcher (spawn(), or a prepared container's spawn()). */
export async function awaitRun<O extends { stdio?: SpawnOptions['stdio']; signal?: AbortSignal }>(
  launch: (options: O) => Container,
  options: O & { input?: string | Buffer },
): Promise<RunResult> {
  const c = launch({
    ...options,
    stdio: options.stdio ?? (options.input !== undefined ? ['pipe', 'inherit', 'inherit'] : 'inherit'),
  });
  const collect = (s: Readable | null) => {
    if (!s) return undefined;
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    return new Promise<Buffer>((res) => s.once('close', () => res(Buffer.concat(chunks))));
  };
  const out = collect(c.stdout);
  const err = collect(c.stderr);
  if (c.stdin) c.stdin.end(options.input);
  const res: RunResult = await c.exited;
  if (out) res.stdout = await out;
  if (err) res.stderr = await err;
  if (options.signal?.aborted) throw options.signal.reason ?? new DOMException('aborted', 'AbortError');
  return res;
}

export { ContainerError };
