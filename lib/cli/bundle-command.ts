// OCI bundles from the command line:
//   run-bundle BUNDLE                      run a bundle's config.json, as `crun run` does
//   oci [--root DIR] run|state|kill|delete the runtime verbs with crun's and
//                                          `apptainer oci`'s shape, for batch systems
// Slurm's oci.conf calls the `oci` verbs (RunTimeRun, RunTimeQuery, RunTimeKill,
// RunTimeDelete); Slurm 22.05 refuses a RunTimeRun without the other three.
//
// State: `oci run` keeps one file, ROOT/ID.json, while the container lives
// (lib/oci/state.ts, which says how a file another user wrote is trusted).
import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { loadBundle, spawn, SpecError } from '../index.js';
import type { Spec } from '../oci/spec.js';
import { RUNTIME_FAILURE } from './payload-exit.js';
import { forwardAndExit as runAndExit } from './forwarding.js';
import { parseSignal } from '../signals.js';
import {
  checkId,
  mustRead,
  OciStateError,
  procStat,
  readState,
  removeState,
  signalChecked,
  stateRoot,
  statusOf,
  waitStopped,
  writeState,
  type StateRecord,
} from '../oci/state.js';

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
    if (e instanceof SpecError && e.pointer)
      throw new SpecError(
        e.pointer,
        `${e.message.slice(e.pointer.length + 2)} (in ${join(resolve(dir), 'config.json')})`,
        { code: e.code },
      );
    throw e;
  }
  const spec = b.spec;
  // Hooks are programs the runtime should run around the container (GPU setup
  // and the like); running without them silently would fail later and obscurely.
  const hooks = (spec as { hooks?: unknown }).hooks;
  if (hooks && typeof hooks === 'object' && !o.ignoreHooks) {
    for (const [name, list] of Object.entries(hooks)) {
      if (Array.isArray(list) && list.length)
        throw new SpecError(
          `/hooks/${name}`,
          `${join(b.dir, 'config.json')} asks for OCI hooks, which nodularity does not run; remove them or pass --ignore-hooks`,
        );
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
  program
    .command('run-bundle')
    .description('run an OCI bundle (a directory with config.json), as `crun run` does')
    .argument('<bundle>', 'bundle directory')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .option(
      '--as-caller',
      'run the payload as the calling user (uid, gid) whatever config.json says; its id mappings are dropped',
    )
    .option('--ignore-hooks', 'run even though config.json lists OCI hooks (they are not run)')
    .action(async (dir: string, o) => {
      const b = await bundleSpec(dir, o);
      await runAndExit(spawn(b.spec, { bundleDir: b.dir, stdio: 'inherit', init: o.init }));
    });

  const oci = program
    .command('oci')
    .description(
      "OCI runtime verbs (run, state, kill, delete) as crun and `apptainer oci` take them; for Slurm's oci.conf",
    )
    .option(
      '--root <dir>',
      'directory of the state files (default $XDG_RUNTIME_DIR/nodularity, /run/nodularity as root, else $TMPDIR/nodularity-UID)',
    );
  const rootOf = (cmd: Command) => (cmd.optsWithGlobals() as { root?: string }).root;

  oci
    .command('run')
    .description("run the bundle as container ID in the foreground; exit with the payload's status")
    .argument('<id>', 'container id')
    .option('-b, --bundle <dir>', 'bundle directory (default: the working directory)')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .option(
      '--as-caller',
      'run the payload as the calling user (uid, gid) whatever config.json says; its id mappings are dropped',
    )
    .option('--ignore-hooks', 'run even though config.json lists OCI hooks (they are not run)')
    .action(
      guarded(async (id: string, o, cmd: Command) => {
        checkId(id);
        const b = await bundleSpec(o.bundle ?? process.cwd(), o);
        const root = stateRoot(rootOf(cmd), true);
        const self = procStat(process.pid)!;
        const rec: StateRecord = {
          ociVersion: b.spec.ociVersion,
          id,
          bundle: b.dir,
          created: new Date().toISOString(),
          pid: 0,
          pidStart: '',
          runtimePid: process.pid,
          runtimeStart: self[1],
        };
        const file = writeState(root, rec, true);
        // Every way out through process.exit (payload status, runtime failure) drops the record.
        process.on('exit', () => {
          try {
            removeState(file);
          } catch {
            /* exiting: `delete` removes a record left behind */
          }
        });
        const c = spawn(b.spec, { bundleDir: b.dir, stdio: 'inherit', init: o.init });
        // runAndExit forwards signals from now on, also while the record is rewritten.
        c.spawned.then(
          () => {
            try {
              const st = procStat(c.pid!);
              if (st) writeState(root, { ...rec, pid: c.pid!, pidStart: st[1] }, false);
            } catch (e) {
              // Nobody could find or stop a container without its record: do not let it run.
              process.stderr.write(
                `nodularity: cannot record container \`${id}\` in ${file}: ${(e as Error).message}\n`,
              );
              process.exit(RUNTIME_FAILURE);
            }
          },
          () => {
            /* the failure comes out of runAndExit */
          },
        );
        await runAndExit(c);
      }),
    );

  oci
    .command('state')
    .description('print the OCI state of container ID as JSON')
    .argument('<id>', 'container id')
    .action(
      guarded((id: string, _o, cmd: Command) => {
        const s = mustRead(stateRoot(rootOf(cmd), false), checkId(id));
        const status = statusOf(s);
        const out: Record<string, unknown> = { ociVersion: s.rec.ociVersion, id, status };
        if (status === 'running') out.pid = s.rec.pid;
        Object.assign(out, { bundle: s.rec.bundle, created: s.rec.created, owner: s.owner });
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      }),
    );

  oci
    .command('kill')
    .description("send SIGNAL (default TERM) to container ID's init, which forwards it to the payload")
    .argument('<id>', 'container id')
    .argument('[signal]', 'signal name or number')
    .option('-s, --signal <signal>', 'signal name or number (as `apptainer oci kill`)')
    .option(
      '-a, --all',
      'accepted for crun compatibility: the init forwards the signal, and KILL ends the whole PID namespace',
    )
    .action(
      guarded((id: string, sigArg: string | undefined, o, cmd: Command) => {
        const text: string = sigArg ?? o.signal ?? 'TERM';
        const sig = parseSignal(text);
        if (!sig) throw new OciStateError(`unknown signal \`${text}\` (a name such as TERM or SIGKILL, or a number)`);
        const s = mustRead(stateRoot(rootOf(cmd), false), checkId(id));
        signalChecked(s, s.rec.pid, s.rec.pidStart, sig);
      }),
    );

  oci
    .command('delete')
    .description('forget a stopped container ID; --force kills a running one first')
    .argument('<id>', 'container id')
    .option('-f, --force', 'kill the container if it runs; no error if it does not exist')
    .action(
      guarded(async (id: string, o, cmd: Command) => {
        const root = stateRoot(rootOf(cmd), false);
        const s = o.force ? readState(root, checkId(id)) : mustRead(root, checkId(id));
        if (!s) return;
        const status = statusOf(s);
        if (status !== 'stopped') {
          if (!o.force) throw new OciStateError(`container \`${id}\` is ${status}; stop it first or pass --force`);
          // Running: kill the init (the whole PID namespace goes); creating: kill the `oci run` process.
          if (status === 'running') signalChecked(s, s.rec.pid, s.rec.pidStart, 'SIGKILL');
          else signalChecked(s, s.rec.runtimePid, s.rec.runtimeStart, 'SIGKILL');
          if (!(await waitStopped(s, 5000)))
            throw new OciStateError(`container \`${id}\` is still ${statusOf(s)} 5 s after SIGKILL`);
        }
        removeState(s.file);
      }),
    );
}
