// OCI hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md
// "Lifecycle"): programs the runtime runs at points of a container's life,
// each given the container's state JSON on stdin. The runtime namespace ones
// run here, as children of the verb's process: createRuntime (create, while
// the launch waits before pivot_root), prestart (start), poststart after
// start, poststop after delete. createContainer and startContainer run in
// the container's namespaces: an exec into the container (spawn's joinPid),
// see runHookIn.
//
// Failure (runtime.md): a failing createRuntime/prestart/createContainer/
// startContainer hook fails the operation, and the container is destroyed;
// a failing poststart or poststop hook is a warning, and the remaining hooks
// and the lifecycle continue as if it had succeeded. "Failing" is: the program
// could not be started, exited non-zero, died of a signal, or outlived its
// `timeout` (seconds; it is then killed).
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { spawn as spawnContainer } from '../container.js';
import { SpecError } from '../errors.js';
import { CAPS } from '../plan/flags.js';
import type { Process, Spec } from './spec.js';

export const HOOK_KINDS = [
  'prestart',
  'createRuntime',
  'createContainer',
  'startContainer',
  'poststart',
  'poststop',
] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

export type Hooks = Partial<Record<HookKind, Hook[]>>;

/** What runtime-spec's state JSON holds (runtime.md "State"). */
export interface OciState {
  ociVersion: string;
  id: string;
  /** runtime-spec's four, and runc's "paused" (a frozen cgroup), which clients such as containerd read. */
  status: 'creating' | 'created' | 'running' | 'paused' | 'stopped';
  pid?: number;
  bundle: string;
  annotations?: Record<string, string>;
}

/** A hook that failed: which one and how (the message says it). */
export class HookError extends Error {
  readonly kind: HookKind;
  readonly index: number;
  constructor(kind: HookKind, index: number, message: string) {
    super(message);
    this.name = 'HookError';
    this.kind = kind;
    this.index = index;
  }
}

/** Check `hooks` of a config.json; SpecError with a pointer at the first fault. */
export function checkHooks(hooks: unknown): Hooks {
  if (hooks === undefined) return {};
  if (!hooks || typeof hooks !== 'object' || Array.isArray(hooks))
    throw new SpecError('/hooks', 'must be an object of hook lists');
  const out: Hooks = {};
  for (const [kind, list] of Object.entries(hooks)) {
    if (!(HOOK_KINDS as readonly string[]).includes(kind)) continue; // unknown kinds: ignored, as other runtimes do
    if (!Array.isArray(list)) throw new SpecError(`/hooks/${kind}`, 'must be an array of hooks');
    list.forEach((h: unknown, i) => {
      const at = `/hooks/${kind}/${i}`;
      if (!h || typeof h !== 'object') throw new SpecError(at, 'must be an object with a path');
      const { path, args, env, timeout } = h as Record<string, unknown>;
      if (typeof path !== 'string' || !isAbsolute(path))
        throw new SpecError(`${at}/path`, 'must be an absolute path (runtime-spec: hooks are not searched in PATH)');
      if (args !== undefined && !(Array.isArray(args) && args.every((a) => typeof a === 'string')))
        throw new SpecError(`${at}/args`, 'must be an array of strings');
      if (env !== undefined && !(Array.isArray(env) && env.every((a) => typeof a === 'string' && a.includes('='))))
        throw new SpecError(`${at}/env`, 'must be an array of NAME=VALUE strings');
      if (timeout !== undefined && !(Number.isInteger(timeout) && (timeout as number) > 0))
        throw new SpecError(`${at}/timeout`, 'must be a whole number of seconds greater than zero');
    });
    out[kind as HookKind] = list as Hook[];
  }
  return out;
}

/** The tail of a hook's output for a message: one line, at most 512 characters. */
function tail(b: Buffer): string {
  const s = b.toString('utf8').replace(/\s+/g, ' ').trim();
  return s.length > 512 ? `...${s.slice(-512)}` : s;
}

/** Run one hook to its end; resolves with a failure text, or undefined when it succeeded. */
export function runHook(h: Hook, state: OciState): Promise<string | undefined> {
  return new Promise((resolve) => {
    const args = h.args && h.args.length ? h.args : [h.path];
    // runc's rule: no `env` means the runtime's own environment (Go's exec.Cmd with a nil Env).
    const env = h.env
      ? Object.fromEntries(h.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
      : process.env;
    let child;
    try {
      child = spawn(h.path, args.slice(1), { argv0: args[0], env, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      resolve(`cannot run ${h.path}: ${(e as Error).message}`);
      return;
    }
    const out: Buffer[] = [];
    let size = 0;
    const keep = (d: Buffer) => {
      if (size < 65536) out.push(d);
      size += d.length;
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let timedOut = false;
    const timer =
      h.timeout !== undefined
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, h.timeout * 1000)
        : undefined;
    // A hook that does not read its stdin makes the write fail with EPIPE: not a failure of the hook.
    child.stdin!.on('error', () => {});
    child.stdin!.end(JSON.stringify(state));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(`cannot run ${h.path}: ${e.code ?? e.message}`);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const said = tail(Buffer.concat(out));
      const output = said ? ` (output: ${said})` : '';
      if (timedOut) resolve(`${h.path} did not finish within its timeout of ${h.timeout} s; killed${output}`);
      else if (signal) resolve(`${h.path} was killed by ${signal}${output}`);
      else if (code !== 0) resolve(`${h.path} exited with status ${code}${output}`);
      else resolve(undefined);
    });
  });
}

/** Who a hook in the container's namespaces runs as: runc runs them from its init, before (createContainer) or after (startContainer) it takes the payload's identity. */
export type HookIdentity = Pick<Process, 'user' | 'capabilities' | 'noNewPrivileges'>;

/**
 * createContainer's identity: the container's root (uid and gid 0 when its
 * user namespace maps them, else the payload's ids), with every capability
 * this process may hand on (its own bounding set), no seccomp: what runc's
 * init holds before pivot_root, where it runs these hooks.
 */
export function setupIdentity(pid: number, payload: Process['user']): HookIdentity {
  const maps0 = (file: string) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8')
        .trim()
        .split('\n')
        .some((l) => {
          const [inside, , count] = l.trim().split(/\s+/).map(Number);
          return inside === 0 && count > 0;
        });
    } catch {
      return false;
    }
  };
  const bnd = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`);
  const caps = Object.keys(CAPS).filter((c) => (bnd >> BigInt(CAPS[c])) & 1n);
  return {
    user: { uid: maps0('uid_map') ? 0 : payload.uid, gid: maps0('gid_map') ? 0 : payload.gid },
    capabilities: { bounding: caps, effective: caps, permitted: caps },
    noNewPrivileges: false,
  };
}

/**
 * Run one hook in the container's namespaces (createContainer,
 * startContainer): an exec into the process `pid` with every one of its
 * namespaces, the mount namespace included. Before pivot_root (create) that
 * mount namespace's root is still the host's, so the hook's path resolves as
 * in the runtime namespace; after it (start), in the container, as
 * runtime-spec says for each. `spec` is the container's (root, linux) and
 * gives nothing of its process but what `who` says; the hook's env is its
 * own `env` only (runc runs these from its init, whose environment is not
 * the runtime's). The state JSON on stdin, the timeout as for the others.
 * Resolves with a failure text, or undefined when the hook succeeded.
 */
export async function runHookIn(
  kind: 'createContainer' | 'startContainer',
  pid: number,
  spec: Spec,
  who: HookIdentity,
  h: Hook,
  state: OciState,
): Promise<string | undefined> {
  const args = h.args && h.args.length ? h.args : [h.path];
  // A startContainer hook is the image's program run in the container just
  // before the payload: under the container's seccomp filter, as runc runs it
  // from its init once the filter is loaded. A createContainer hook runs
  // before any of the container's security exists (its path is the host's).
  const hookSpec: Spec = {
    ...spec,
    process: { ...who, args: [h.path, ...args.slice(1)], env: h.env ?? [], cwd: '/', terminal: false },
    linux: kind === 'startContainer' ? spec.linux : { ...spec.linux, seccomp: undefined },
  };
  let c;
  try {
    c = spawnContainer(hookSpec, { joinPid: pid, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    return `cannot run ${h.path}: ${(e as Error).message}`;
  }
  // The timeout kills the hook and whatever it started: the exec's init is
  // not PID 1 of the container's pid namespace, so its own death would
  // leave them running there (reparented to the container's init).
  let timedOut = false;
  const timer =
    h.timeout !== undefined
      ? setTimeout(() => {
          timedOut = true;
          if (c.pid) killTree(c.pid);
        }, h.timeout * 1000)
      : undefined;
  const out: Buffer[] = [];
  let size = 0;
  const keep = (d: Buffer) => {
    if (size < 65536) out.push(d);
    size += d.length;
  };
  const closed = [c.stdout!, c.stderr!].map(
    (s) =>
      new Promise((res) => {
        s.on('data', keep);
        if (s.closed) res(null);
        else s.once('close', res);
      }),
  );
  c.stdin!.on('error', () => {});
  c.stdin!.end(JSON.stringify(state));
  c.spawned.catch(() => undefined);
  let r;
  try {
    r = await c.exited;
  } catch (e) {
    for (const s of [c.stdout!, c.stderr!]) s.destroy();
    return `cannot run ${h.path}: ${(e as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
  // Its output to the end, unless something it left behind keeps the pipes open.
  await Promise.race([Promise.all(closed), new Promise((res) => setTimeout(res, 2000).unref())]);
  for (const s of [c.stdout!, c.stderr!]) s.destroy();
  const said = tail(Buffer.concat(out));
  const output = said ? ` (output: ${said})` : '';
  if (timedOut) return `${h.path} did not finish within its timeout of ${h.timeout} s; killed${output}`;
  if (r.signal) return `${h.path} was killed by ${r.signal}${output}`;
  if (r.exitCode !== 0) return `${h.path} exited with status ${r.exitCode}${output}`;
  return undefined;
}

/** SIGKILL to pid's descendants (found through /proc/PID/task/TID/children), then to pid. */
function killTree(pid: number): void {
  const all: number[] = [];
  const walk = (p: number) => {
    let kids: number[] = [];
    try {
      for (const tid of readdirSync(`/proc/${p}/task`))
        kids = kids.concat(
          readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number),
        );
    } catch {
      /* gone */
    }
    for (const k of kids) {
      walk(k);
      all.push(k);
    }
  };
  walk(pid);
  for (const p of [...all, pid]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** runHooks for the container-namespace kinds (createContainer, startContainer): the first failure throws HookError. */
export async function runHooksIn(
  kind: 'createContainer' | 'startContainer',
  hooks: Hook[] | undefined,
  pid: number,
  spec: Spec,
  who: HookIdentity,
  state: OciState,
): Promise<void> {
  for (const [i, h] of (hooks ?? []).entries()) {
    const failure = await runHookIn(kind, pid, spec, who, h, state);
    if (failure !== undefined) throw new HookError(kind, i, `${kind} hook #${i} failed: ${failure}`);
  }
}

/**
 * Run the hooks of one kind in order. For poststart and poststop a failure is
 * passed to `warn` and the next hook runs; for the others the first failure
 * throws HookError and no further hook of the list runs.
 */
export async function runHooks(
  kind: HookKind,
  hooks: Hook[] | undefined,
  state: OciState,
  warn: (message: string) => void,
): Promise<void> {
  for (const [i, h] of (hooks ?? []).entries()) {
    const failure = await runHook(h, state);
    if (failure === undefined) continue;
    const message = `${kind} hook #${i} failed: ${failure}`;
    if (kind === 'poststart' || kind === 'poststop') warn(message);
    else throw new HookError(kind, i, message);
  }
}
