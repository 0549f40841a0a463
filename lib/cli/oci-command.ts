// runc's command line: `nodularity-oci [GLOBAL...] VERB ...` (bin/nodularity-oci)
// and the same as `nodularity oci ...`. What containerd's shim, Podman's
// conmon, CRI-O and Slurm's oci.conf call. The operations are in
// lib/oci/runtime.ts; this file parses, logs and picks exit codes.
//
// Failures as runc reports them, since its clients read them: one line at
// level "error" in the log (--log FILE, in --log-format text or json; the
// shim reads the last {"level":"error","msg":...} line of a JSON log), and
// the bare message on stderr when the log is a file; without --log the log
// line itself goes to stderr. Exit status 1, as runc; `run` exits with the
// payload's status, and 255 when the runtime failed (Slurm's oci.conf reads
// that; 126/127 for a command that cannot be run or does not exist).
// Messages keep runc's phrases that clients match: "container does not
// exist" (containerd's delete and kill, Podman's state), "container not
// running" (containerd's kill).
import { Command, Option } from 'commander';
import { appendFileSync, closeSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeFailure } from './failure.js';
import { closedPromise } from './payload-exit.js';
import { forwardAndExit } from './forwarding.js';
import type { Logger } from '../oci/runtime.js';

interface GlobalOptions {
  root?: string;
  log?: string;
  logFormat: 'text' | 'json';
  debug?: boolean;
  systemdCgroup?: boolean;
  cgroupManager?: 'cgroupfs' | 'systemd' | 'disabled';
  rootless?: string | boolean;
  version?: boolean;
}

/** Go's strconv.Quote for what we log (logrus quotes msg values this way). */
function quote(s: string): string {
  return JSON.stringify(s);
}

/** runc's logger: logrus text (`time="..." level=error msg="..."`) or JSON lines. */
export class OciLog implements Logger {
  constructor(private readonly o: GlobalOptions) {}

  private line(level: string, msg: string): string {
    const time = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    return this.o.logFormat === 'json'
      ? JSON.stringify({ level, msg, time })
      : `time=${quote(time)} level=${level} msg=${quote(msg)}`;
  }

  private write(level: string, msg: string): void {
    const text = `${this.line(level, msg)}\n`;
    if (this.o.log) {
      try {
        appendFileSync(this.o.log, text, { mode: 0o644 });
        return;
      } catch {
        /* an unwritable log: the line goes to stderr instead */
      }
    }
    process.stderr.write(text);
  }

  error(msg: string): void {
    this.write('error', msg);
    // runc: with the log in a file, the message also goes to stderr, bare.
    if (this.o.log) process.stderr.write(`${msg}\n`);
  }

  warn = (msg: string): void => this.write('warning', msg);

  debug = (msg: string): void => {
    if (this.o.debug) this.write('debug', msg);
  };
}

const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8'));

/** A unix socket's fd, connected (--console-socket): the native side sends the terminal's master over it. */
async function connectSocket(path: string): Promise<number> {
  const { openConsoleSocket } = await import('../container.js');
  try {
    return openConsoleSocket(path);
  } catch (e) {
    throw Object.assign(new Error(`--console-socket: ${(e as Error).message}`), { name: 'OciStateError' });
  }
}

function positiveInt(option: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v))
      throw Object.assign(new Error(`${option} ${v}: must be a whole number`), { name: 'OciStateError' });
    return Number(v);
  };
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerOciCommand(program: Command): void {
  const oci = program
    .command('oci')
    .description("the OCI runtime, with runc's command line (also installed as nodularity-oci)")
    .enablePositionalOptions()
    .option(
      '--root <dir>',
      "directory of the containers' state (default $XDG_RUNTIME_DIR/nodularity, /run/nodularity as root, else $TMPDIR/nodularity-UID)",
    )
    .option('--log <file>', 'append log lines (errors, warnings, --debug) to FILE instead of stderr')
    .addOption(new Option('--log-format <format>', 'log line format').choices(['text', 'json']).default('text'))
    .option('--debug', 'log debug lines')
    .addOption(
      new Option(
        '--cgroup-manager <manager>',
        'cgroupfs: make cgroups in the hierarchies (default); disabled: none, resources not applied; systemd: refused',
      ).choices(['cgroupfs', 'systemd', 'disabled']),
    )
    .option('--systemd-cgroup', "runc's spelling of --cgroup-manager systemd (refused: no systemd D-Bus client)")
    .option('--rootless [value]', 'accepted for runc compatibility (true, false, auto): nodularity decides by itself')
    .option('--criu <path>', 'accepted for runc compatibility (no checkpoint/restore)')
    .option('-v, --version', 'print the version');
  oci.action(() => {
    const o = oci.opts<GlobalOptions>();
    if (!o.version) {
      oci.help({ error: true });
      return;
    }
    process.stdout.write(`nodularity-oci version ${pkg.version}\nspec: 1.2.0\n`);
  });

  const globals = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions & Record<string, unknown>;

  /** Run a verb: its failures become runc's error line and exit status (1, or 255/126/127 for run). */
  const act =
    <A extends unknown[]>(verb: string, fn: (log: OciLog, root: string | undefined, ...a: A) => Promise<void> | void) =>
    async (...a: A): Promise<void> => {
      const cmd = a[a.length - 1] as Command;
      const g = globals(cmd);
      const log = new OciLog(g);
      // The library's warnings (a spec field ignored on this host) go to the log as runc's do, not Node's stderr form.
      process.removeAllListeners('warning');
      process.on('warning', (w) => log.warn(w.message));
      try {
        await fn(log, g.root, ...a);
      } catch (e) {
        const f = await describeFailure(e, [verb]);
        log.error(f.message);
        if (g.debug && e instanceof Error && e.stack) log.debug(e.stack);
        process.exit(verb === 'run' ? f.status : 1);
      }
    };

  const rt = () => import('../oci/runtime.js');
  const rootFor = async (root: string | undefined, create: boolean) =>
    (await import('../oci/state.js')).stateRoot(root, create);

  const createOptions = (c: Command) =>
    c
      .option('-b, --bundle <dir>', 'bundle directory (default: the working directory)')
      .option('--pid-file <file>', "write the container's init pid to FILE")
      .option('--console-socket <path>', "unix socket to send the terminal's master to (process.terminal)")
      .option('--no-pivot', 'refused: nodularity always uses pivot_root')
      .option('--no-new-keyring', 'accepted: the container gets a new anonymous session keyring either way')
      .option('--preserve-fds <n>', "pass the caller's fds 3 .. 3+N-1 to the payload", positiveInt('--preserve-fds'), 0)
      .option('--as-caller', 'run the payload as the calling user whatever config.json says; its id mappings go')
      .option('--ignore-hooks', "do not run config.json's hooks");

  interface CreateFlags {
    bundle?: string;
    pidFile?: string;
    consoleSocket?: string;
    pivot: boolean;
    preserveFds: number;
    asCaller?: boolean;
    ignoreHooks?: boolean;
    detach?: boolean;
  }
  const createArgs = async (o: CreateFlags, g: GlobalOptions) => {
    if (!o.pivot)
      throw Object.assign(
        new Error('--no-pivot is not supported: nodularity always pivots into the root file system'),
        {
          name: 'OciStateError',
        },
      );
    return {
      cgroupManager: g.systemdCgroup ? ('systemd' as const) : g.cgroupManager,
      bundle: o.bundle ?? process.cwd(),
      pidFile: o.pidFile,
      consoleSocket: o.consoleSocket !== undefined ? await connectSocket(o.consoleSocket) : undefined,
      preserveFds: o.preserveFds,
      asCaller: o.asCaller,
      ignoreHooks: o.ignoreHooks,
    };
  };

  createOptions(oci.command('create'))
    .description('create container ID from the bundle; it waits for `start`')
    .argument('<id>', 'container id')
    .action(
      act('create', async (log, root, id: string, o: CreateFlags, cmd: Command) => {
        const r = await rt();
        const created = await r.create(await rootFor(root, true), id, await createArgs(o, globals(cmd)), log);
        // The init lives on (detached) with its own fd of the fifo; ours, the lock and the directory go.
        closeSync(created.fifo);
        created.dir.close();
        process.exit(0);
      }),
    );

  oci
    .command('start')
    .description('start the payload of created container ID')
    .argument('<id>', 'container id')
    .action(
      act('start', async (log, root, id: string) => {
        await (await rt()).start(await rootFor(root, false), id, log);
      }),
    );

  createOptions(oci.command('run'))
    .description("create and start container ID; in the foreground, exit with the payload's status")
    .option('-d, --detach', 'return once the payload runs')
    .argument('<id>', 'container id')
    .action(
      act('run', async (log, root, id: string, o: CreateFlags, cmd: Command) => {
        const r = await rt();
        const args = await createArgs(o, globals(cmd));
        const created = await r.create(
          await rootFor(root, true),
          id,
          { ...args, attached: !o.detach, onSpawn: (c) => void closedPromise(c) },
          log,
        );
        await r.startCreated(created, log);
        if (o.detach) process.exit(0);
        // runAndExit forwards signals, relays a terminal, and exits with the payload's status after this.
        await forwardAndExit(created.container, () => r.afterRun(created, log));
      }),
    );

  oci
    .command('state')
    .description('print the OCI state of container ID as JSON')
    .argument('<id>', 'container id')
    .action(
      act('state', async (_log, root, id: string) => {
        const s = (await rt()).state(await rootFor(root, false), id);
        process.stdout.write(JSON.stringify(s, null, 2) + '\n');
      }),
    );

  oci
    .command('kill')
    .description("send SIGNAL (default TERM) to container ID's init, which forwards it to the payload")
    .argument('<id>', 'container id')
    .argument('[signal]', 'signal name or number', 'SIGTERM')
    .option('-s, --signal <signal>', 'signal name or number (as `apptainer oci kill`)')
    .option('-a, --all', 'send it to every process of the container')
    .action(
      act('kill', async (_log, root, id: string, sig: string, o: { signal?: string; all?: boolean }) => {
        await (await rt()).kill(await rootFor(root, false), id, o.signal ?? sig, !!o.all);
      }),
    );

  oci
    .command('delete')
    .description('remove stopped container ID; --force kills a running one first')
    .argument('<id>', 'container id')
    .option('-f, --force', 'kill the container if it runs; no error if it does not exist')
    .action(
      act('delete', async (log, root, id: string, o: { force?: boolean }) => {
        await (await rt()).remove(await rootFor(root, false), id, !!o.force, log);
      }),
    );

  oci
    .command('exec')
    .description('run a new process in container ID')
    .argument('<id>', 'container id')
    .argument('[command...]', 'command and arguments (unless --process)')
    .passThroughOptions()
    .option('-p, --process <file>', 'a runtime-spec process JSON to run')
    .option('-t, --tty', 'give the process a terminal (with --console-socket)')
    .option('--console-socket <path>', "unix socket to send the terminal's master to")
    .option('-d, --detach', 'return once the process runs')
    .option('--pid-file <file>', "write the process's pid to FILE")
    .option('-e, --env <NAME=VALUE>', 'set an environment variable (repeatable)', collect)
    .option('--cwd <dir>', 'working directory in the container')
    .option('-u, --user <uid[:gid]>', 'user id (and group id) to run as')
    .option('-c, --cap <cap>', 'add a capability (repeatable)', collect)
    .option('--no-new-privs', 'set no_new_privs')
    .option('--preserve-fds <n>', "pass the caller's fds 3 .. 3+N-1", positiveInt('--preserve-fds'), 0)
    .action(
      act(
        'exec',
        async (
          _log,
          root,
          id: string,
          command: string[],
          o: {
            process?: string;
            tty?: boolean;
            consoleSocket?: string;
            detach?: boolean;
            pidFile?: string;
            env?: string[];
            cwd?: string;
            user?: string;
            cap?: string[];
            newPrivs?: boolean;
            preserveFds: number;
          },
        ) => {
          const r = await rt();
          const c = await r.exec(await rootFor(root, false), id, {
            processFile: o.process,
            args: command,
            tty: o.tty,
            consoleSocket: o.consoleSocket !== undefined ? await connectSocket(o.consoleSocket) : undefined,
            detach: o.detach,
            pidFile: o.pidFile,
            env: o.env,
            cwd: o.cwd,
            user: o.user,
            caps: o.cap,
            noNewPrivs: o.newPrivs === false,
            preserveFds: o.preserveFds,
          });
          if (o.detach) process.exit(0);
          await forwardAndExit(c);
        },
      ),
    );

  oci
    .command('ps')
    .description('list the processes of container ID (json: their host pids)')
    .argument('<id>', 'container id')
    .argument('[ps-options...]', 'ignored (runc passes them to ps(1))')
    .addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(
      act('ps', async (_log, root, id: string, _rest: string[], o: { format: string }) => {
        const pids = await (await rt()).ps(await rootFor(root, false), id);
        if (o.format === 'json') {
          process.stdout.write(JSON.stringify(pids) + '\n');
          return;
        }
        const rows = ['PID CMD'];
        for (const p of pids) {
          let cmd = '';
          try {
            cmd = readFileSync(`/proc/${p}/cmdline`, 'latin1').split('\0').join(' ').trim();
          } catch {
            /* gone */
          }
          rows.push(`${p} ${cmd}`);
        }
        process.stdout.write(rows.join('\n') + '\n');
      }),
    );

  oci
    .command('list')
    .description('list the containers under --root')
    .addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'))
    .option('-q, --quiet', 'only the ids')
    .action(
      act('list', async (log, root, o: { format: string; quiet?: boolean }) => {
        const all = (await rt()).list(await rootFor(root, false), log);
        if (o.quiet) {
          process.stdout.write(all.map((s) => `${s.id}\n`).join(''));
          return;
        }
        if (o.format === 'json') {
          process.stdout.write(JSON.stringify(all) + '\n');
          return;
        }
        const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER']];
        for (const s of all) rows.push([s.id, s.pid, s.status, s.bundle, s.created, s.owner].map((v) => String(v)));
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
        process.stdout.write(
          rows
            .map((r) =>
              r
                .map((v, i) => v.padEnd(widths[i]!))
                .join('   ')
                .trimEnd(),
            )
            .join('\n') + '\n',
        );
      }),
    );

  for (const verb of ['pause', 'resume'] as const)
    oci
      .command(verb)
      .description(
        verb === 'pause'
          ? 'freeze every process of container ID (its cgroup; status "paused")'
          : 'thaw a paused container ID',
      )
      .argument('<id>', 'container id')
      .action(
        act(verb, async (_log, root, id: string) => {
          await (await rt()).freeze(await rootFor(root, false), id, verb === 'pause');
        }),
      );

  const update = oci
    .command('update')
    .description("change the resource limits of container ID's live cgroup (runc's flags, or --resources JSON)")
    .argument('<id>', 'container id')
    .option('-r, --resources <file>', "runtime-spec LinuxResources JSON ('-': stdin); the flags below go on top");
  for (const [flag, what] of [
    ['blkio-weight', 'block IO weight (10 to 1000)'],
    ['cpu-period', 'CPU CFS period (µs)'],
    ['cpu-quota', 'CPU CFS quota (µs per period; -1: none)'],
    ['cpu-share', 'CPU shares (relative weight)'],
    ['cpu-rt-period', 'real-time period (µs)'],
    ['cpu-rt-runtime', 'real-time runtime (µs)'],
    ['cpu-idle', 'cgroup v2 cpu.idle (0 or 1)'],
    ['cpuset-cpus', 'CPUs allowed (0-3,7)'],
    ['cpuset-mems', 'memory nodes allowed'],
    ['memory', 'memory limit (512m, 2g, bytes; -1: none)'],
    ['memory-reservation', 'memory soft limit'],
    ['memory-swap', 'memory plus swap limit (-1: none)'],
    ['pids-limit', 'maximum number of processes (0 or -1: none)'],
    ['l3-cache-schema', 'refused: no Intel RDT'],
    ['mem-bw-schema', 'refused: no Intel RDT'],
  ])
    update.option(`--${flag} <value>`, what);
  update.action(
    act('update', async (log, root, id: string, o: Record<string, string>) => {
      const v = await import('../oci/cgroup-verbs.js');
      const r = await v.updateResources(o, () => readFileSync(0, 'utf8'));
      await v.update(await rootFor(root, false), id, r, log);
    }),
  );

  oci
    .command('events')
    .description("container ID's cgroup: runc's stats events every --interval and oom events, until it stops")
    .argument('<id>', 'container id')
    .option('--interval <duration>', 'time between stats events (5s, 500ms, 1m)', '5s')
    .option('--stats', 'print one stats event and exit')
    .action(
      act('events', async (_log, root, id: string, o: { interval: string; stats?: boolean }) => {
        const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(o.interval);
        const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms'] : NaN;
        if (!(ms > 0))
          throw Object.assign(new Error(`--interval ${o.interval}: must be a duration such as 5s or 500ms`), {
            name: 'OciStateError',
          });
        const v = await import('../oci/cgroup-verbs.js');
        const { statsJson } = await import('../cgroups/stats.js');
        await v.events(await rootFor(root, false), id, { stats: !!o.stats, intervalMs: ms }, (e) =>
          process.stdout.write(statsJson(e) + '\n'),
        );
      }),
    );

  oci
    .command('features')
    .description("print runtime-spec's features document for this runtime")
    .action(
      act('features', async () => {
        process.stdout.write(JSON.stringify(await (await rt()).features(), null, 2) + '\n');
      }),
    );

  oci
    .command('spec')
    .description('write a default config.json into the bundle directory, as `runc spec`')
    .option('-b, --bundle <dir>', 'bundle directory (default: the working directory)')
    .option('--rootless', 'a spec for an unprivileged user (a user namespace mapping the caller to root)')
    .action(
      act('spec', async (_log, _root, o: { bundle?: string; rootless?: boolean }) => {
        const file = join(resolve(o.bundle ?? process.cwd()), 'config.json');
        if (existsSync(file))
          throw Object.assign(new Error(`File ${file} exists. Remove it first`), { name: 'OciStateError' });
        const spec = await (await rt()).defaultSpec(!!o.rootless);
        writeFileSync(file, JSON.stringify(spec, null, 2) + '\n', { flag: 'wx', mode: 0o644 });
      }),
    );
}
