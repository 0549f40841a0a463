// OCI bundles from the command line:
//   run-bundle BUNDLE                      run a bundle's config.json, as `crun run` does
//   oci [--root DIR] run|state|kill|delete the runtime verbs with crun's and
//                                          `apptainer oci`'s shape, for batch systems
// Slurm's oci.conf calls the `oci` verbs (RunTimeRun, RunTimeQuery, RunTimeKill,
// RunTimeDelete); Slurm 22.05 refuses a RunTimeRun without the other three.
//
// State: `oci run` keeps one file, ROOT/ID.json, while the container lives, so
// that `state`, `kill` and `delete` can find it from another process. Slurm
// 22.05 runs RunTimeRun as the job's user but the other three as root, so a
// root process may read a file the job's user wrote: it is opened without
// following symlinks, never echoed, and a pid it names is signalled only when
// that process belongs to the file's owner and started when the file says.
import type { Command } from 'commander';
import { constants as fsc, closeSync, fstatSync, mkdirSync, lstatSync, openSync, readFileSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { constants as osc, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadBundle, spawn, SpecError } from '../index.js';
import type { Spec } from '../oci/spec.js';
import { RUNTIME_FAILURE } from './payload-exit.js';
import { forwardAndExit as runAndExit } from './forwarding.js';

/** A failure of the state verbs (unknown id, wrong status); printed as one line, exit RUNTIME_FAILURE. */
class OciStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OciStateError';
  }
}

interface BundleRunOptions {
  asCaller?: boolean;
  ignoreHooks?: boolean;
}

/** The spec of BUNDLE/config.json, adjusted by the run options. Errors name the file. */
async function bundleSpec(dir: string, o: BundleRunOptions): Promise<{ spec: Spec; dir: string }> {
  let b;
  try {
    b = await loadBundle(dir);
  } catch (e) {
    if (e instanceof SpecError && e.pointer) throw new SpecError(e.pointer, `${e.message.slice(e.pointer.length + 2)} (in ${join(resolve(dir), 'config.json')})`, { code: e.code });
    throw e;
  }
  const spec = b.spec;
  // Hooks are programs the runtime should run around the container (GPU setup
  // and the like); running without them silently would fail later and obscurely.
  const hooks = (spec as { hooks?: unknown }).hooks;
  if (hooks && typeof hooks === 'object' && !o.ignoreHooks) {
    for (const [name, list] of Object.entries(hooks)) {
      if (Array.isArray(list) && list.length)
        throw new SpecError(`/hooks/${name}`, `${join(b.dir, 'config.json')} asks for OCI hooks, which nodularity does not run; remove them or pass --ignore-hooks`);
    }
  }
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
  return { spec, dir: b.dir };
}

// ---- container state ----------------------------------------------------

interface StateRecord {
  ociVersion: string;
  id: string;
  bundle: string;
  created: string;
  /** The init's pid (host pid namespace); 0 until the payload has been exec'd. */
  pid: number;
  /** Start time of `pid` (clock ticks since boot, /proc/PID/stat field 22), against pid reuse. */
  pidStart: string;
  /** The `oci run` process and its start time, to tell "creating" from a crashed run. */
  runtimePid: number;
  runtimeStart: string;
}

type Status = 'creating' | 'running' | 'stopped';

const ID_RE = /^[A-Za-z0-9_+@-][A-Za-z0-9_.+@:-]{0,250}$/;

function checkId(id: string): string {
  if (!ID_RE.test(id)) throw new OciStateError(`container id \`${id}\` must be letters, digits and _ . + @ : - (not starting with a dot), at most 251 characters`);
  return id;
}

/** The state directory: --root, else $XDG_RUNTIME_DIR/nodularity, /run/nodularity for root, $TMPDIR/nodularity-UID. */
function stateRoot(root: string | undefined, create: boolean): string {
  if (root) {
    const dir = resolve(root);
    if (create) mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }
  const uid = process.geteuid!();
  const dir = process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'nodularity')
    : uid === 0 ? '/run/nodularity' : join(tmpdir(), `nodularity-${uid}`);
  if (create) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // A shared /tmp lets anyone create the directory first: use it only if it is ours.
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return dir; // absent: nothing to find there
  }
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022))
    throw new OciStateError(`state directory ${dir} is not a directory owned by uid ${uid} and writable only by it; pass --root`);
  return dir;
}

/** /proc/PID/stat: [state letter, start time], or undefined when there is no such process. */
function procStat(pid: number): [string, string] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [rest[0], rest[19]];
  } catch {
    return undefined;
  }
}

function procUid(pid: number): number | undefined {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number, start: string): boolean {
  if (!(pid > 0)) return false;
  const s = procStat(pid);
  return s !== undefined && s[1] === start && s[0] !== 'Z' && s[0] !== 'X';
}

interface LoadedState {
  file: string;
  owner: number;
  rec: StateRecord;
}

/** Read ROOT/ID.json without following a symlink; its content is never echoed in errors. */
function readState(root: string, id: string): LoadedState | undefined {
  const file = join(root, `${id}.json`);
  let fd: number;
  try {
    fd = openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new OciStateError(`state file ${file} is a symbolic link`);
    throw new OciStateError(`cannot open state file ${file}: ${code}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > 65536) throw new OciStateError(`state file ${file} is not a regular file of at most 64 KiB`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    let rec: StateRecord;
    try {
      rec = JSON.parse(buf.toString('utf8', 0, off));
    } catch {
      throw new OciStateError(`state file ${file} is not valid JSON`);
    }
    if (!rec || typeof rec !== 'object' || rec.id !== id || !Number.isInteger(rec.pid) || !Number.isInteger(rec.runtimePid))
      throw new OciStateError(`state file ${file} is not a nodularity state record for \`${id}\``);
    return { file, owner: st.uid, rec };
  } finally {
    closeSync(fd);
  }
}

function statusOf(s: LoadedState): Status {
  if (s.rec.pid > 0) return isAlive(s.rec.pid, s.rec.pidStart) ? 'running' : 'stopped';
  return isAlive(s.rec.runtimePid, s.rec.runtimeStart) ? 'creating' : 'stopped';
}

function mustRead(root: string, id: string): LoadedState {
  const s = readState(root, id);
  if (!s) throw new OciStateError(`container \`${id}\` does not exist (no ${join(root, `${id}.json`)})`);
  return s;
}

/** Write the record atomically (temp file + rename); `exclusive` claims the id. */
function writeState(root: string, rec: StateRecord, exclusive: boolean): string {
  const file = join(root, `${rec.id}.json`);
  const text = JSON.stringify(rec, null, 2) + '\n';
  if (exclusive) {
    try {
      writeFileSync(file, text, { flag: 'wx', mode: 0o644 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST')
        throw new OciStateError(`container \`${rec.id}\` already exists (${file}); \`nodularity oci delete ${rec.id}\` removes a stopped one`);
      throw e;
    }
    return file;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, file);
  return file;
}

function removeState(file: string): void {
  try {
    unlinkSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

function parseSignal(sig: string): NodeJS.Signals {
  const s = sig.toUpperCase();
  if (/^\d+$/.test(s)) {
    const byNum = Object.entries(osc.signals).find(([, n]) => n === Number(s));
    if (byNum) return byNum[0] as NodeJS.Signals;
  } else {
    const name = s.startsWith('SIG') ? s : `SIG${s}`;
    if (name in osc.signals) return name as NodeJS.Signals;
  }
  throw new OciStateError(`unknown signal \`${sig}\` (a name such as TERM or SIGKILL, or a number)`);
}

/** Signal PID (started at START), checking that it is still that process and belongs to the state file's owner. */
function signalChecked(s: LoadedState, pid: number, start: string, sig: NodeJS.Signals): void {
  const { id } = s.rec;
  if (!isAlive(pid, start)) throw new OciStateError(`container \`${id}\` is not running`);
  if (s.owner !== process.geteuid!() && procUid(pid) !== s.owner)
    throw new OciStateError(`container \`${id}\`: pid ${pid} does not belong to uid ${s.owner}, who wrote ${s.file}; not signalling it`);
  try {
    process.kill(pid, sig);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw new OciStateError(`kill ${sig} ${pid} (container \`${id}\`): ${(e as NodeJS.ErrnoException).code}`);
  }
}

async function waitStopped(s: LoadedState, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 20) {
    if (statusOf(s) === 'stopped') return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** Run an action; its own failures end the process with one line on stderr and RUNTIME_FAILURE. */
function guarded<A extends unknown[]>(fn: (...a: A) => Promise<void> | void): (...a: A) => Promise<void> {
  return async (...a: A) => {
    try {
      await fn(...a);
    } catch (e) {
      if (!(e instanceof OciStateError)) throw e;
      process.stderr.write(`nodularity: ${e.message}\n`);
      process.exit(RUNTIME_FAILURE);
    }
  };
}

// ---- verbs ----------------------------------------------------------------

export function registerBundleCommand(program: Command): void {
  program.command('run-bundle')
    .description('run an OCI bundle (a directory with config.json), as `crun run` does')
    .argument('<bundle>', 'bundle directory')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .option('--as-caller', 'run the payload as the calling user (uid, gid) whatever config.json says; its id mappings are dropped')
    .option('--ignore-hooks', 'run even though config.json lists OCI hooks (they are not run)')
    .action(async (dir: string, o) => {
      const b = await bundleSpec(dir, o);
      await runAndExit(spawn(b.spec, { bundleDir: b.dir, stdio: 'inherit', init: o.init }));
    });

  const oci = program.command('oci')
    .description('OCI runtime verbs (run, state, kill, delete) as crun and `apptainer oci` take them; for Slurm\'s oci.conf')
    .option('--root <dir>', 'directory of the state files (default $XDG_RUNTIME_DIR/nodularity, /run/nodularity as root, else $TMPDIR/nodularity-UID)');
  const rootOf = (cmd: Command) => (cmd.optsWithGlobals() as { root?: string }).root;

  oci.command('run')
    .description('run the bundle as container ID in the foreground; exit with the payload\'s status')
    .argument('<id>', 'container id')
    .option('-b, --bundle <dir>', 'bundle directory (default: the working directory)')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .option('--as-caller', 'run the payload as the calling user (uid, gid) whatever config.json says; its id mappings are dropped')
    .option('--ignore-hooks', 'run even though config.json lists OCI hooks (they are not run)')
    .action(guarded(async (id: string, o, cmd: Command) => {
      checkId(id);
      const b = await bundleSpec(o.bundle ?? process.cwd(), o);
      const root = stateRoot(rootOf(cmd), true);
      const self = procStat(process.pid)!;
      const rec: StateRecord = {
        ociVersion: b.spec.ociVersion, id, bundle: b.dir, created: new Date().toISOString(),
        pid: 0, pidStart: '', runtimePid: process.pid, runtimeStart: self[1],
      };
      const file = writeState(root, rec, true);
      // Every way out through process.exit (payload status, runtime failure) drops the record.
      process.on('exit', () => {
        try {
          removeState(file);
        } catch { /* exiting: `delete` removes a record left behind */ }
      });
      const c = spawn(b.spec, { bundleDir: b.dir, stdio: 'inherit', init: o.init });
      // runAndExit forwards signals from now on, also while the record is rewritten.
      c.spawned.then(() => {
        try {
          const st = procStat(c.pid!);
          if (st) writeState(root, { ...rec, pid: c.pid!, pidStart: st[1] }, false);
        } catch (e) {
          // Nobody could find or stop a container without its record: do not let it run.
          process.stderr.write(`nodularity: cannot record container \`${id}\` in ${file}: ${(e as Error).message}\n`);
          process.exit(RUNTIME_FAILURE);
        }
      }, () => { /* the failure comes out of runAndExit */ });
      await runAndExit(c);
    }));

  oci.command('state')
    .description('print the OCI state of container ID as JSON')
    .argument('<id>', 'container id')
    .action(guarded((id: string, _o, cmd: Command) => {
      const s = mustRead(stateRoot(rootOf(cmd), false), checkId(id));
      const status = statusOf(s);
      const out: Record<string, unknown> = { ociVersion: s.rec.ociVersion, id, status };
      if (status === 'running') out.pid = s.rec.pid;
      Object.assign(out, { bundle: s.rec.bundle, created: s.rec.created, owner: s.owner });
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
    }));

  oci.command('kill')
    .description('send SIGNAL (default TERM) to container ID\'s init, which forwards it to the payload')
    .argument('<id>', 'container id')
    .argument('[signal]', 'signal name or number')
    .option('-s, --signal <signal>', 'signal name or number (as `apptainer oci kill`)')
    .option('-a, --all', 'accepted for crun compatibility: the init forwards the signal, and KILL ends the whole PID namespace')
    .action(guarded((id: string, sigArg: string | undefined, o, cmd: Command) => {
      const sig = parseSignal(sigArg ?? o.signal ?? 'TERM');
      const s = mustRead(stateRoot(rootOf(cmd), false), checkId(id));
      signalChecked(s, s.rec.pid, s.rec.pidStart, sig);
    }));

  oci.command('delete')
    .description('forget a stopped container ID; --force kills a running one first')
    .argument('<id>', 'container id')
    .option('-f, --force', 'kill the container if it runs; no error if it does not exist')
    .action(guarded(async (id: string, o, cmd: Command) => {
      const root = stateRoot(rootOf(cmd), false);
      const s = o.force ? readState(root, checkId(id)) : mustRead(root, checkId(id));
      if (!s) return;
      const status = statusOf(s);
      if (status !== 'stopped') {
        if (!o.force) throw new OciStateError(`container \`${id}\` is ${status}; stop it first or pass --force`);
        // Running: kill the init (the whole PID namespace goes); creating: kill the `oci run` process.
        if (status === 'running') signalChecked(s, s.rec.pid, s.rec.pidStart, 'SIGKILL');
        else signalChecked(s, s.rec.runtimePid, s.rec.runtimeStart, 'SIGKILL');
        if (!(await waitStopped(s, 5000))) throw new OciStateError(`container \`${id}\` is still ${statusOf(s)} 5 s after SIGKILL`);
      }
      removeState(s.file);
    }));
}
