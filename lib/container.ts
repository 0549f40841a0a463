// The public launcher: spawn() returns a ChildProcess-like Container, run()
// awaits one. One path from spec to addon: prepareLaunch -> binding.spawn.
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { ReadStream } from 'node:tty';
import { constants as osc } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { ContainerError } from './errors.js';
import { loadBinding, type ContainerHandle, type NativeRusage, type StdioSlot } from './native.js';
import { prepareLaunch, type PlanOptions, type PreparedLaunch } from './plan/plan.js';
import type { Spec } from './oci/spec.js';

export type StdioOption = 'pipe' | 'inherit' | 'ignore' | number;

export interface SpawnOptions extends PlanOptions {
  /** One value for all three, or one per stream (as child_process). Default 'pipe'. */
  stdio?: StdioOption | [StdioOption, StdioOption, StdioOption];
  /** Kill the container (killSignal) when aborted. */
  signal?: AbortSignal;
  /** Kill the container (killSignal) after this many ms. */
  timeout?: number;
  /** Signal for abort and timeout; default SIGTERM, forwarded by the init to the payload. */
  killSignal?: NodeJS.Signals | number;
}

export type Rusage = NativeRusage;

export interface ExitResult {
  pid: number;
  /** Exit code, or 128+N when the payload died of signal N (shell convention). */
  exitCode: number;
  /** Name of the signal that ended the payload, or null. */
  signal: NodeJS.Signals | null;
  rusage: Rusage;
  /** True when the timeout option fired. */
  timedOut: boolean;
}

function signalNumber(sig: NodeJS.Signals | number): number {
  if (typeof sig === 'number') return sig;
  const n = (osc.signals as Record<string, number>)[sig];
  if (n === undefined) throw new TypeError(`unknown signal ${JSON.stringify(sig)}`);
  return n;
}

function signalName(n: number): NodeJS.Signals | null {
  for (const [name, num] of Object.entries(osc.signals)) if (num === n) return name as NodeJS.Signals;
  return null;
}

function normalizeStdio(s: SpawnOptions['stdio']): [StdioOption, StdioOption, StdioOption] {
  const v = s ?? 'pipe';
  const arr = Array.isArray(v) ? v : [v, v, v];
  if (arr.length !== 3) throw new TypeError('options.stdio must be one value or an array of three');
  arr.forEach((x, i) => {
    if (!(x === 'pipe' || x === 'inherit' || x === 'ignore' || (typeof x === 'number' && Number.isInteger(x) && x >= 0)))
      throw new TypeError(`options.stdio[${i}] must be 'pipe', 'inherit', 'ignore' or a file descriptor, got ${JSON.stringify(x)}`);
  });
  return arr as [StdioOption, StdioOption, StdioOption];
}

/**
 * A running (or starting) container, shaped like Node's ChildProcess.
 * Events: 'spawn' (payload exec'd), 'exit' (code, signal), 'close' (exit and
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
  /**
   * With `process.terminal`: the container's terminal (the pty master), set at
   * 'spawn'. Write keystrokes to it, read what the payload shows; stdin,
   * stdout and stderr are null then.
   */
  terminal: Socket | null = null;
  private terminalFd: number | undefined;

  private handle: ContainerHandle;
  private pendingSignals: number[] = [];
  private state: 'starting' | 'running' | 'exited' | 'failed' = 'starting';
  private timedOut = false;
  private timer: NodeJS.Timeout | undefined;
  private abortCleanup: (() => void) | undefined;

  /** @internal use spawn() */
  constructor(prepared: PreparedLaunch, options: SpawnOptions) {
    super();
    const stdio = normalizeStdio(options.stdio);
    const killSignal = signalNumber(options.killSignal ?? 'SIGTERM');
    if (options.timeout !== undefined && !(Number.isFinite(options.timeout) && options.timeout > 0))
      throw new TypeError(`options.timeout must be a positive number of ms, got ${options.timeout}`);
    if (options.signal?.aborted) throw options.signal.reason ?? new DOMException('aborted', 'AbortError');

    let resolveSpawned!: () => void, rejectSpawned!: (e: Error) => void;
    let resolveExited!: (r: ExitResult) => void, rejectExited!: (e: Error) => void;
    this.spawned = new Promise((res, rej) => { resolveSpawned = res; rejectSpawned = rej; });
    this.exited = new Promise((res, rej) => { resolveExited = res; rejectExited = rej; });
    // Callers may use only one of the two; neither should raise an unhandled rejection.
    this.spawned.catch(() => {});
    this.exited.catch(() => {});

    const binding = loadBinding();
    // With a terminal the child puts the pty on 0, 1, 2 itself.
    const slots: StdioSlot[] = prepared.plan.terminal ? ['ignore', 'ignore', 'ignore'] : stdio.map((s, i) => (s === 'inherit' ? i : s));
    let streamsOpen = 0;
    let exitInfo: [number, NodeJS.Signals | null] | undefined;
    const maybeClose = () => {
      if (exitInfo && streamsOpen === 0) this.emit('close', ...exitInfo);
    };
    const onSpawn = (err: Parameters<Parameters<typeof binding.spawn>[2]>[0], res?: { pid: number; cloneMicros: number; terminalFd?: number }) => {
      if (err) {
        this.state = 'failed';
        this.clearKillers();
        const error = prepared.describeFailure(err);
        for (const s of [this.stdin, this.stdout, this.stderr]) s?.destroy();
        rejectSpawned(error);
        rejectExited(error);
        if (this.listenerCount('error') > 0) this.emit('error', error);
        return;
      }
      this.state = 'running';
      this.pid = res!.pid;
      this.cloneMicros = res!.cloneMicros;
      if (res!.terminalFd !== undefined) {
        // A pty master is a TTY to libuv: net.Socket refuses the fd, tty.ReadStream (a duplex) takes it.
        const term = new ReadStream(res!.terminalFd);
        // Reading a pty master whose last slave closed fails with EIO: that is its end.
        term.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'EIO') this.emit('terminalError', e); term.destroy(); });
        streamsOpen++;
        term.once('close', () => { streamsOpen--; maybeClose(); });
        this.terminal = term;
        this.terminalFd = res!.terminalFd;
      }
      resolveSpawned();
      this.emit('spawn');
      for (const sig of this.pendingSignals.splice(0)) this.handle.kill(sig);
    };
    const onExit = (code: number, sig: number | null, rusage: NativeRusage) => {
      this.state = 'exited';
      this.clearKillers();
      this.exitCode = code;
      this.signalCode = sig ? signalName(sig) : null;
      exitInfo = [code, this.signalCode];
      resolveExited({ pid: this.pid!, exitCode: code, signal: this.signalCode, rusage, timedOut: this.timedOut });
      this.emit('exit', code, this.signalCode);
      maybeClose();
    };
    this.handle = binding.spawn(prepared.plan, slots, onSpawn, onExit);
    const fds = this.handle.stdio;
    const wrap = (fd: number, readable: boolean) => {
      if (fd < 0) return null;
      const s = new Socket({ fd, readable, writable: !readable });
      if (readable) {
        streamsOpen++;
        s.once('close', () => { streamsOpen--; maybeClose(); });
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
      this.timer = setTimeout(() => { this.timedOut = true; this.kill(killSignal); }, options.timeout);
      this.timer.unref?.();
    }
    if (options.signal) {
      const sigObj = options.signal;
      const onAbort = () => this.kill(killSignal);
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
    this.abortCleanup?.();
  }

  /** Send a signal (default SIGTERM) through the pidfd; the init forwards it. False once exited. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const n = signalNumber(signal);
    if (this.state === 'starting') {
      this.pendingSignals.push(n);
      return true;
    }
    if (this.state !== 'running') return false;
    return this.handle.kill(n) === 0;
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

/** Launch a container from an OCI runtime spec. Throws SpecError before clone for bad specs. */
export function spawn(spec: Spec, options: SpawnOptions = {}): Container {
  return new Container(prepareLaunch(spec, options), options);
}

export interface RunResult extends ExitResult {
  /** Collected output of the streams given as 'pipe'. */
  stdout?: Buffer;
  stderr?: Buffer;
}

/**
 * Launch and wait for the exit. stdio defaults to 'inherit'; streams given as
 * 'pipe' are collected into the result. Rejects with ContainerError when the
 * launch fails, with the AbortSignal's reason when aborted (after the exit).
 */
export async function run(spec: Spec, options: SpawnOptions & { input?: string | Buffer } = {}): Promise<RunResult> {
  const c = spawn(spec, { ...options, stdio: options.stdio ?? (options.input !== undefined ? ['pipe', 'inherit', 'inherit'] : 'inherit') });
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
