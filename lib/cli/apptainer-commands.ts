// The Apptainer-compatible verbs: exec, run, shell, test, version, with
// Apptainer's flags and short forms, so a batch system (HTCondor's
// SINGULARITY knob, a pilot) can call nodularity in Apptainer's place.
import { Command, Option } from 'commander';
import { exec, runImage, shell, testImage, type ExecOptions, type ImageContainer } from '../singularity/index.js';
import type { PullOptions } from '../image/index.js';
import { interactiveTerminal } from './payload-exit.js';
import { forwardAndExit as runAndExit } from './forwarding.js';
import { progressReporter } from './progress.js';
import { onSeccompWarning, parseSecurityFlags } from '../seccomp/index.js';

const list = (v: string, acc: string[]) => acc.concat(v.split(',').filter(Boolean));
const repeat = (v: string, acc: string[]) => acc.concat(v);

/** The flags every action takes (Apptainer's names and short forms). */
function actionOptions(cmd: Command): Command {
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
    .option('-W, --workdir <dir>', 'host directory for /tmp, /var/tmp, home (with --contain) and scratch')
    .option('-S, --scratch <dir>', 'container directory to get a fresh scratch dir (repeatable, comma-separated)', list, [])
    .option('-n, --net', 'a new network namespace (with --network none: only lo); without it the payload shares the host network, abstract unix sockets included')
    .addOption(new Option('--network <type>', 'network type with --net').choices(['none', 'host']))
    .option('-p, --pid', 'a new PID namespace (always)')
    .option('-i, --ipc', 'a new IPC namespace (always)')
    .option('--hostname <name>', 'hostname inside')
    .option('-u, --userns', 'run in a user namespace (always)')
    .option('-f, --fakeroot', 'be root inside (mapped to you outside)')
    .option('--writable-tmpfs', 'a writable root: the image under an overlay on a tmpfs')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .option('--security <kind:value>', 'seccomp:FILE, seccomp:unconfined or seccomp:docker-default (repeatable, comma-separated; default: nodularity\'s profile, docs/seccomp.md)', list, [])
    .option('--no-https', 'talk plain http to a docker:// registry (also APPTAINER_NOHTTPS=1)')
    .addOption(new Option('--nohttps', 'the same as --no-https (Apptainer\'s older spelling)').hideHelp())
    .option('--insecure', 'the same as --no-https (as for pull)');
}

/** Apptainer's boolean environment values. */
function envTrue(v: string | undefined): boolean {
  return v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());
}

interface ActionFlags {
  bind: string[]; mount: string[]; contain?: boolean; containall?: boolean; cleanenv?: boolean; env: string[];
  envFile?: string; home: string | boolean; pwd?: string; workdir?: string; scratch: string[]; net?: boolean;
  network?: 'none' | 'host'; pid?: boolean; ipc?: boolean; hostname?: string; userns?: boolean; fakeroot?: boolean;
  writableTmpfs?: boolean; init: boolean; https: boolean; nohttps?: boolean; insecure?: boolean; security: string[];
}

function toOptions(f: ActionFlags, onProgress?: PullOptions['onProgress']): ExecOptions {
  return {
    binds: f.bind, mounts: f.mount, contain: f.contain, containall: f.containall, cleanenv: f.cleanenv,
    env: f.env, envFile: f.envFile,
    // commander folds --home/--no-home into one key: a string, or false for --no-home.
    home: typeof f.home === 'string' ? f.home : undefined, noHome: f.home === false,
    pwd: f.pwd, workdir: f.workdir, scratch: f.scratch,
    network: f.net || f.network ? (f.network ?? 'none') : 'host',
    pid: f.pid, ipc: f.ipc, hostname: f.hostname, userns: f.userns, fakeroot: f.fakeroot,
    writableTmpfs: f.writableTmpfs, init: f.init, stdio: 'inherit', security: parseSecurityFlags(f.security),
    terminal: interactiveTerminal(),
    pull: {
      ...(f.https === false || f.nohttps || f.insecure || envTrue(process.env.APPTAINER_NOHTTPS) || envTrue(process.env.SINGULARITY_NOHTTPS)
        ? { insecure: true } : {}),
      ...(onProgress ? { onProgress } : {}),
    },
  };
}

export interface GlobalFlags { silent?: boolean; quiet?: boolean; debug?: boolean; verbose?: boolean }

function report(program: Command, c: ImageContainer): ImageContainer {
  const g = program.opts<GlobalFlags>();
  if (!g.quiet && !g.silent) for (const w of c.warnings ?? []) process.stderr.write(`WARNING: ${w}\n`);
  if (g.debug || g.verbose) {
    process.stderr.write(`nodularity: image ${c.image.ref} (rootfs ${c.image.rootfs}${c.image.digest ? `, ${c.image.digest}` : ''})\n`);
    process.stderr.write(`nodularity: argv ${JSON.stringify(c.argv)}\n`);
  }
  if (g.debug) process.stderr.write(`nodularity: env ${JSON.stringify(c.env)}\n`);
  return c;
}

/**
 * Resolve the image (pulling it on first use, with progress bars when stderr
 * is a terminal and neither -s nor -q is given; nothing otherwise, as stderr
 * is then the payload's) and launch it.
 */
async function launch<T>(program: Command, f: ActionFlags, start: (o: ExecOptions) => Promise<T>): Promise<T> {
  const g = program.opts<GlobalFlags>();
  const progress = progressReporter(Boolean(g.quiet || g.silent), false);
  try {
    return await start(toOptions(f, progress.onProgress));
  } finally {
    progress.stop();
  }
}

export function registerApptainerCommands(program: Command, versionLine: string): void {
  // A profile's unknown syscall names: one line, as Apptainer words its warnings.
  onSeccompWarning((w) => { if (!program.opts<GlobalFlags>().silent) process.stderr.write(`WARNING: ${w}\n`); });
  // The global options (-s, -q, -d, -v) are main.ts's.
  actionOptions(program.command('exec'))
    .description('run a command in an image')
    .argument('<image>', 'directory (rootfs or Singularity sandbox), oci:DIR[:TAG], docker-archive:FILE or docker://REF')
    .argument('<command...>', 'command and its arguments')
    .passThroughOptions()
    .action(async (image: string, command: string[], f: ActionFlags) => {
      await runAndExit(report(program, await launch(program, f, (o) => exec(image, command, o))));
    });

  actionOptions(program.command('run'))
    .description('run the image\'s runscript, or its Entrypoint and Cmd')
    .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
    .argument('[args...]', 'arguments for the runscript')
    .passThroughOptions()
    .action(async (image: string, args: string[], f: ActionFlags) => {
      await runAndExit(report(program, await launch(program, f, (o) => runImage(image, args, o))));
    });

  actionOptions(program.command('shell'))
    .description('an interactive shell in the image')
    .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
    .option('--shell <path>', 'shell to run inside', '/bin/sh')
    .action(async (image: string, f: ActionFlags & { shell: string }) => {
      await runAndExit(report(program, await launch(program, f, (o) => shell(image, { ...o, shell: f.shell }))));
    });

  actionOptions(program.command('test'))
    .description('run the image\'s test script (/.singularity.d/test)')
    .argument('<image>', 'directory, oci:, docker-archive: or docker:// image')
    .action(async (image: string, f: ActionFlags) => {
      const c = await launch(program, f, (o) => testImage(image, o));
      if (!c) {
        if (!program.opts<GlobalFlags>().silent) process.stderr.write('No test script found in container, exiting\n');
        process.exit(0);
      }
      await runAndExit(report(program, c));
    });

  program.command('version')
    .description('print the version')
    .action(() => { process.stdout.write(`${versionLine}\n`); });
}
