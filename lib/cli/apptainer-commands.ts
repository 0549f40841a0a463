// The Apptainer-compatible verbs: exec, run, shell, test, version, with
// Apptainer's flags and short forms, their APPTAINER_/SINGULARITY_
// environment twins (apptainer-env.ts) and its FATAL/WARNING/INFO messages,
// so a batch system (HTCondor's SINGULARITY knob, a pilot) can call
// nodularity in Apptainer's place.
import { Command, Option } from 'commander';
import { SpecError } from '../errors.js';
import { applyEnvKnobs, type EnvApplied } from './apptainer-env.js';
import { exec, runscript, shell, testImage, type ExecOptions, type ImageContainer } from '../singularity/index.js';
import type { PullOptions } from '../image/index.js';
import { interactiveTerminal } from './payload-exit.js';
import { forwardAndExit } from './forwarding.js';
import { progressReporter } from './progress.js';
import { onSeccompWarning, parseSecurityFlags } from '../seccomp/index.js';
import { registerInstanceCommand } from './instance-command.js';
import { LIMIT_FLAGS, resourcesFromFlags, resourcesFromToml, type LimitFlags } from '../cgroups/flags.js';
import type { LinuxResources } from '../cgroups/types.js';

const list = (v: string, acc: string[]) => acc.concat(v.split(',').filter(Boolean));
const repeat = (v: string, acc: string[]) => acc.concat(v);

/** The flags every action takes (Apptainer's names and short forms). */
export function actionOptions(cmd: Command): Command {
  return cmd
    .option('-B, --bind <spec>', 'src[:dst[:ro|rw]] host path to bind (repeatable, comma-separated)', repeat, [])
    .option('--mount <spec>', 'type=bind,source=...,destination=...[,ro] (repeatable)', repeat, [])
    .option('-c, --contain', 'fresh /tmp, /var/tmp and home; not the host working directory')
    .option('-C, --containall', 'contain, and cleanenv (PID and IPC namespaces are always new)')
    .option('-e, --cleanenv', 'do not pass the host environment')
    .option('--env <NAME=VALUE>', 'set a variable inside (repeatable, comma-separated)', list, [])
    .option('--env-file <file>', 'set variables inside from a file of NAME=VALUE lines')
    .option('-H, --home <src[:dst]>', 'host directory to use as home (and where it appears)')
    .option('--no-home', 'do not bind the home directory')
    .option('--pwd <dir>', 'working directory inside')
    .option('--cwd <dir>', 'the same as --pwd')
    .option('-W, --workdir <dir>', 'host directory for /tmp, /var/tmp, home (with --contain) and scratch')
    .option(
      '-S, --scratch <dir>',
      'container directory to get a fresh scratch dir (repeatable, comma-separated)',
      list,
      [],
    )
    .option(
      '-n, --net',
      'a new network namespace (with --network none: only lo); without it the payload shares the host network, abstract unix sockets included',
    )
    .addOption(new Option('--network <type>', 'network type with --net').choices(['none', 'host']))
    .option(
      '-p, --pid',
      'a new PID namespace: always, nodularity gives every container its own (Apptainer only with --pid or --containall)',
    )
    .option('--no-pid', 'accepted and ignored, with a warning: the PID namespace is always new')
    .option('-i, --ipc', 'a new IPC namespace: always, as the PID namespace')
    .option('--uts', 'a new UTS namespace: always, as the PID namespace')
    .option('--hostname <name>', 'hostname inside')
    .option('-u, --userns', 'run in a user namespace (always)')
    .option(
      '-f, --fakeroot',
      'be root inside (mapped to you outside); ids 1..N from your /etc/subuid and /etc/subgid ranges when you have them',
    )
    .option('--writable-tmpfs', 'a writable root: the image under an overlay on a tmpfs')
    .option(
      '--writable-tmpfs-size <size>',
      "size of that tmpfs: MiB, or with a unit (512m, 2g); default 64 (Apptainer's sessiondir max size)",
    )
    .addOption(noMountOption())
    .option(
      '--overlay <dir[:ro]>',
      'a persistent overlay directory: writes stay in DIR/upper (:ro: shown read-only); no overlay images',
      repeat,
      [],
    )
    .option(
      '--no-eval',
      'do not shell-evaluate environment variables and arguments (nodularity never does: accepted, sets APPTAINER_NO_EVAL)',
    )
    .option('--add-caps <caps>', 'capabilities to add (root or --fakeroot), comma-separated, or all')
    .option('--drop-caps <caps>', 'capabilities to drop (root or --fakeroot), comma-separated, or all')
    .option('--keep-privs', 'as root: keep the full capability set of the namespace')
    .option(
      '--nv',
      "bind the host's NVIDIA libraries (etc/nvliblist.conf, found with ldconfig -p), programs and devices",
    )
    .option('--rocm', "bind the host's ROCm libraries (etc/rocmliblist.conf), programs and devices")
    .option('--authfile <file>', 'Docker-style credentials file for docker:// registries')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .option(
      '--security <kind:value>',
      "seccomp:FILE, seccomp:unconfined or seccomp:docker-default (repeatable, comma-separated; default: nodularity's profile, docs/seccomp.md)",
      list,
      [],
    )
    .option('--memory <size>', 'memory limit, e.g. 2g (a cgroup of its own; README "Resource limits")')
    .option('--memory-reservation <size>', 'memory soft limit, e.g. 1g')
    .option('--memory-swap <size>', 'memory plus swap limit, or -1 for unlimited swap')
    .option('--memory-swappiness <0-100>', 'swappiness of the container (cgroup v1)')
    .option('--oom-kill-disable', 'do not let the OOM killer end the container (cgroup v1)')
    .option('--cpus <n>', 'CPUs the container may use, e.g. 1.5 (a CFS quota)')
    .option('--cpu-shares <n>', 'relative CPU weight (2-262144, default 1024)')
    .option('--cpuset-cpus <list>', 'CPUs to run on, e.g. 0-3,7')
    .option('--cpuset-mems <list>', 'memory nodes to use, e.g. 0')
    .option('--pids-limit <n>', 'most processes at once (-1: unlimited)')
    .option('--blkio-weight <n>', 'relative block I/O weight (10-1000)')
    .option('--apply-cgroups <file>', 'resource limits from a TOML file (linux.resources keys, as Apptainer)')
    .option('--no-https', 'talk plain http to a docker:// registry (also APPTAINER_NOHTTPS=1)')
    .addOption(new Option('--nohttps', "the same as --no-https (Apptainer's older spelling)").hideHelp())
    .option('--insecure', 'the same as --no-https (as for pull)');
}

/** `--no-mount` is a list, not the negation of --mount (commander's --no- rule). */
function noMountOption(): Option {
  const o = new Option(
    '--no-mount <mounts>',
    'leave out default mounts: home, tmp, cwd, hostfs, bind-paths, sys, /etc/hosts, /etc/localtime, /etc/resolv.conf (comma-separated)',
  )
    .argParser(list)
    .default([]);
  o.negate = false;
  o.attributeName = () => 'noMount';
  return o;
}

export interface ActionFlags {
  bind: string[];
  mount: string[];
  contain?: boolean;
  containall?: boolean;
  cleanenv?: boolean;
  env: string[];
  envFile?: string;
  home: string | boolean;
  pwd?: string;
  cwd?: string;
  workdir?: string;
  scratch: string[];
  net?: boolean;
  network?: 'none' | 'host';
  pid?: boolean;
  ipc?: boolean;
  uts?: boolean;
  hostname?: string;
  userns?: boolean;
  fakeroot?: boolean;
  writableTmpfs?: boolean;
  writableTmpfsSize?: string;
  init: boolean;
  https: boolean;
  nohttps?: boolean;
  insecure?: boolean;
  noMount: string[];
  overlay: string[];
  eval: boolean;
  addCaps?: string;
  dropCaps?: string;
  keepPrivs?: boolean;
  nv?: boolean;
  rocm?: boolean;
  authfile?: string;
  shell?: string;
  security: string[];
  applyCgroups?: string;
}

/** --apply-cgroups FILE, or the limit flags (not both, as Apptainer says). */
async function limits(f: ActionFlags & LimitFlags): Promise<LinuxResources | undefined> {
  const given = (Object.keys(LIMIT_FLAGS) as (keyof LimitFlags)[]).filter((k) => f[k] !== undefined);
  if (f.applyCgroups) {
    if (given.length)
      throw SpecError.inOption(
        '--apply-cgroups',
        `cannot be used with ${LIMIT_FLAGS[given[0]]}: give the limits one way`,
      );
    return await resourcesFromToml(f.applyCgroups);
  }
  return resourcesFromFlags(f);
}

async function toOptions(f: ActionFlags & LimitFlags, onProgress?: PullOptions['onProgress']): Promise<ExecOptions> {
  if (f.network !== undefined && f.network !== 'none' && f.network !== 'host')
    throw new SpecError('--network', `must be host or none, not ${JSON.stringify(f.network)}`);
  return {
    binds: f.bind,
    mounts: f.mount,
    contain: f.contain,
    containall: f.containall,
    cleanenv: f.cleanenv,
    env: f.env,
    envFile: f.envFile,
    // commander folds --home/--no-home into one key: a string, or false for --no-home.
    home: typeof f.home === 'string' ? f.home : undefined,
    noHome: f.home === false,
    pwd: f.pwd ?? f.cwd,
    workdir: f.workdir,
    scratch: f.scratch,
    network: f.net || f.network ? (f.network ?? 'none') : 'host',
    pid: f.pid,
    ipc: f.ipc,
    hostname: f.hostname,
    userns: f.userns,
    fakeroot: f.fakeroot,
    writableTmpfs: f.writableTmpfs,
    writableTmpfsSize: f.writableTmpfsSize,
    init: f.init,
    stdio: 'inherit',
    security: parseSecurityFlags(f.security),
    resources: await limits(f),
    overlay: f.overlay,
    noMount: f.noMount,
    noEval: f.eval === false,
    addCaps: f.addCaps,
    dropCaps: f.dropCaps,
    keepPrivs: f.keepPrivs,
    nv: f.nv,
    rocm: f.rocm,
    terminal: interactiveTerminal(),
    pull: {
      ...(f.https === false || f.nohttps || f.insecure ? { insecure: true } : {}),
      ...(f.authfile ? { authFile: f.authfile } : {}),
      ...(onProgress ? { onProgress } : {}),
    },
  };
}

export interface GlobalFlags {
  silent?: boolean;
  quiet?: boolean;
  debug?: boolean;
  verbose?: boolean;
}

/** Apptainer's message forms on stderr (log scrapers look for them). */
export function say(program: Command, level: 'WARNING' | 'INFO', lines: string[]): void {
  const g = program.opts<GlobalFlags>();
  if (g.quiet || g.silent) return;
  const tag = `${level}:`.padEnd(9);
  for (const l of lines) process.stderr.write(`${tag}${l}\n`);
}

function report(program: Command, c: ImageContainer): ImageContainer {
  const g = program.opts<GlobalFlags>();
  if (g.debug || g.verbose) {
    process.stderr.write(
      `VERBOSE: image ${c.image.ref} (rootfs ${c.image.rootfs}${c.image.digest ? `, ${c.image.digest}` : ''})\n`,
    );
    process.stderr.write(`VERBOSE: argv ${JSON.stringify(c.argv)}\n`);
  }
  if (g.debug) process.stderr.write(`DEBUG:   env ${JSON.stringify(c.env)}\n`);
  return c;
}

/**
 * The flags as the command line and the environment give them (Apptainer's
 * precedence), with Apptainer's remarks about the environment and the
 * namespaces nodularity always creates.
 */
export function settle<F extends ActionFlags>(program: Command, cmd: Command, verb: string, f: F): F {
  const applied: EnvApplied = applyEnvKnobs(
    verb,
    f as unknown as Record<string, unknown>,
    (attr) => cmd.getOptionValueSource(attr) === 'cli',
  );
  say(program, 'WARNING', applied.warnings);
  say(program, 'INFO', applied.infos);
  if (f.pid === false)
    say(program, 'WARNING', ['--no-pid ignored: nodularity always runs the container in a new PID namespace']);
  return f;
}

/**
 * Resolve the image (pulling it on first use, with progress bars when stderr
 * is a terminal and neither -s nor -q is given; nothing otherwise, as stderr
 * is then the payload's) and launch it.
 */
export async function launch<T>(program: Command, f: ActionFlags, start: (o: ExecOptions) => Promise<T>): Promise<T> {
  const g = program.opts<GlobalFlags>();
  const progress = progressReporter(Boolean(g.quiet || g.silent), false);
  try {
    // Apptainer's remarks on stderr before the payload's own output.
    return await start({
      ...(await toOptions(f, progress.onProgress)),
      onNotice: (level, m) => say(program, level, [m]),
    });
  } finally {
    progress.stop();
  }
}

export function registerApptainerCommands(program: Command, versionLine: string, verb?: string): void {
  // The action flags for the verb that runs (all of them when main.ts does
  // not know the verb: --help, an unknown verb).
  const flags = (cmd: Command): Command => (verb === undefined || verb === cmd.name() ? actionOptions(cmd) : cmd);
  // A profile's unknown syscall names: one line, as Apptainer words its warnings.
  onSeccompWarning((w) => {
    if (!program.opts<GlobalFlags>().silent) process.stderr.write(`WARNING: ${w}\n`);
  });
  // The global options (-s, -q, -d, -v) are main.ts's.
  flags(program.command('exec'))
    .description('run a command in an image')
    .argument(
      '<image>',
      'directory (rootfs or Singularity sandbox), oci:DIR[:TAG], docker-archive:FILE or docker://REF',
    )
    .argument('<command...>', 'command and its arguments')
    .passThroughOptions()
    .action(async (image: string, command: string[], f: ActionFlags, cmd: Command) => {
      settle(program, cmd, 'exec', f);
      await forwardAndExit(report(program, await launch(program, f, (o) => exec(image, command, o))));
    });

  flags(program.command('run'))
    .description("run the image's runscript, or its Entrypoint and Cmd")
    .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
    .argument('[args...]', 'arguments for the runscript')
    .passThroughOptions()
    .action(async (image: string, args: string[], f: ActionFlags, cmd: Command) => {
      settle(program, cmd, 'run', f);
      await forwardAndExit(report(program, await launch(program, f, (o) => runscript(image, args, o))));
    });

  flags(program.command('shell'))
    .description('an interactive shell in the image')
    .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
    .option(
      '--shell <path>',
      'shell to run inside (also APPTAINER_SHELL); default /bin/bash --norc when the image has it, else /bin/sh',
    )
    .action(async (image: string, f: ActionFlags, cmd: Command) => {
      settle(program, cmd, 'shell', f);
      await forwardAndExit(report(program, await launch(program, f, (o) => shell(image, { ...o, shell: f.shell }))));
    });

  flags(program.command('test'))
    .description("run the image's test script (/.singularity.d/test)")
    .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
    .action(async (image: string, f: ActionFlags, cmd: Command) => {
      settle(program, cmd, 'test', f);
      const c = await launch(program, f, (o) => testImage(image, o));
      if (!c) {
        say(program, 'INFO', ['No test script found in container, exiting']);
        process.exit(0);
      }
      await forwardAndExit(report(program, c));
    });

  registerInstanceCommand(program, verb === undefined || verb === 'instance');

  program
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`${versionLine}\n`);
    });
}
