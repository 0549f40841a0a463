// The nodularity command line: Apptainer's verbs and flags (exec, run, shell,
// test, version), the image verbs (pull, inspect, cache), run-bundle for OCI
// bundles (Slurm), and bench.
//
// Exit status: the payload's own; RUNTIME_FAILURE (255, as Apptainer) when
// the runtime itself failed or the command line was wrong, with one message
// on stderr (and the usage, for a wrong command line): `FATAL:   ...` for
// Apptainer's verbs, as Apptainer says it, `nodularity: ...` for the others.
//
// Installed under the name `apptainer` or `singularity` (a symlink to
// bin/nodularity, which passes the name it was called by in
// NODULARITY_INVOKED_AS), it calls itself by that name, so a site can drop it
// in without changing pilot code.
//
// Started through bin/nodularity (`node -- main.js ...`), never as
// `node main.js ...`: see nodeReadEnvFile below.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RUNTIME_FAILURE } from './payload-exit.js';
import { describeFailure, failureLine } from './failure.js';
import { payloadForwarding } from './forwarding.js';

/**
 * The `--env-file` argument Node itself read from our arguments, if any.
 * Node 20 scans all of its argv for `--env-file[=]`/`--env-file-if-exists`
 * up to the first `--` (src/node_dotenv.cc, GetDataFromArgs) before any
 * JavaScript runs, and applies the file's NODE_OPTIONS: started as
 * `node main.js exec --env-file job.env ...`, a job's file has then already
 * had its say over the runtime process (`--require` code ran), and a missing
 * file ended Node with status 9. Nothing in a script can undo that; what we
 * can do is never run the job that way, and say how to start the CLI.
 * /proc/self/cmdline is Node's argv as the kernel got it.
 */
function nodeReadEnvFile(): string | undefined {
  let raw: string[];
  try {
    raw = readFileSync('/proc/self/cmdline', 'utf8').split('\0').slice(0, -1);
  } catch {
    return undefined;
  }
  const ours = process.argv.slice(2);
  const first = raw.length - ours.length;
  // Not the argv we were given (process.title changed it): nothing to say.
  if (first < 1 || ours.some((a, i) => raw[first + i] !== a)) return undefined;
  for (let i = 1; i < raw.length; i++) {
    if (raw[i] === '--') return undefined;
    if (i >= first && raw[i]!.startsWith('--env-file'))
      return raw[i]!.includes('=') ? raw[i] : `${raw[i]} ${raw[i + 1] ?? ''}`.trim();
  }
  return undefined;
}

const seen = nodeReadEnvFile();
if (seen !== undefined) {
  process.stderr.write(
    `nodularity: \`${seen}\` was read by Node.js itself before nodularity started (Node scans all of its arguments for --env-file, and may have run code from the file): ` +
      `start nodularity through its \`nodularity\` command (bin/nodularity) or as \`node -- ${process.argv[1]} ...\`\n`,
  );
  process.exit(RUNTIME_FAILURE);
}

// The name we were called by (bin/nodularity sets it): not the payload's business.
const invokedAs = process.env.NODULARITY_INVOKED_AS;
delete process.env.NODULARITY_INVOKED_AS;
const commandName = invokedAs === 'apptainer' || invokedAs === 'singularity' ? invokedAs : 'nodularity';

const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8'));
/** The Apptainer release whose command line and behaviour this one follows. */
const APPTAINER_COMPAT = '1.3.6';
// Apptainer's form, `apptainer version X.Y.Z`, naming nodularity in the
// version's build metadata: HTCondor picks the APPTAINERENV_ prefix from the
// word apptainer, Snakemake and cwltool parse X.Y.Z (the last word is a valid
// SemVer and PEP 440 version).
const versionLine = `apptainer version ${APPTAINER_COMPAT}+nodularity.${pkg.version}`;

// A signal before the payload runs (an image pull, the image's environment
// scripts): remove what the launch made on the host (session files in
// $TMPDIR) and the evaluation container, then die of the same signal, as
// with no handler at all. Once runAndExit forwards signals to the payload
// (forwarding.ts), this one steps aside. signal-exit (proper-lockfile
// releases its locks through it) re-raises the signal once it is the only
// listener left, so ours is removed before re-raising, and nothing else (the
// failed launch's error) may end the process meanwhile: see `dying`.
// Launches only exist once the image verbs' module is loaded: it sets
// abortLaunches.
let dying: NodeJS.Signals | undefined;
// Node ignores SIGXFSZ so that a write past `ulimit -f` fails with EFBIG;
// signal-exit listens to it and re-raises it when alone, which killed the
// CLI mid-unpack with no message. With a listener of ours the write fails,
// and the failure is reported as one line.
process.on('SIGXFSZ', () => undefined);
let abortLaunches: () => void = () => undefined;
// A signal between a payload's clone and the forwarding (runAndExit) goes to
// the starting container: dying of it would leave the payload to the
// parent-death signal (SIGKILL), not the SIGTERM a batch system sent.
let forwardStarting: (sig: NodeJS.Signals) => boolean = () => false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  const onSignal = (): void => {
    if (payloadForwarding() || forwardStarting(sig)) return;
    dying = sig;
    abortLaunches();
    process.removeListener(sig, onSignal);
    process.kill(process.pid, sig);
  };
  process.on(sig, onSignal);
}

// Each verb's module is loaded only when that verb runs: `exec` must not
// load lib/bench (whose `import { hrtime } from 'node:process'` creates
// process.stdin/stdout, and with them O_NONBLOCK on descriptions the payload
// shares), nor pay for the image or bundle code it does not use. --help, a
// bare `nodularity` and an unknown verb load them all, so the command list
// and commander's suggestions stay complete.
// The verb is passed on so that a module registers the full option set of
// that verb only (Apptainer's action flags are about a hundred options per
// verb, and commander builds each one): the other verbs are listed, with their
// descriptions, for --help and suggestions.
type Registrar = (program: Command, versionLine: string, verb: string | undefined) => void;
const MODULES: Record<string, () => Promise<Registrar>> = {
  apptainer: async () => (await import('./apptainer-commands.js')).registerApptainerCommands,
  image: async () => (await import('./image-commands.js')).registerImageCommands,
  bundle: async () => (await import('./bundle-command.js')).registerBundleCommand,
  oci: async () => (await import('./oci-command.js')).registerOciCommand,
  bench: async () => (await import('./bench-command.js')).registerBenchCommand,
};
const VERBS: Record<string, string> = {
  exec: 'apptainer',
  run: 'apptainer',
  shell: 'apptainer',
  test: 'apptainer',
  version: 'apptainer',
  instance: 'apptainer',
  pull: 'image',
  inspect: 'image',
  cache: 'image',
  'run-bundle': 'bundle',
  oci: 'oci',
  bench: 'bench',
};

/**
 * The modules to load for these arguments (the global options take no
 * values), and the verb when it is one of ours (undefined: --help, a bare
 * `nodularity` or an unknown verb, and every module registers everything).
 */
function modulesFor(args: string[]): { modules: string[]; verb?: string } {
  const i = args.findIndex((a) => !a.startsWith('-') || a === '--');
  const verb = i < 0 || args[i] === '--' ? undefined : args[i]!;
  if (verb !== undefined && Object.hasOwn(VERBS, verb)) return { modules: [VERBS[verb]!], verb };
  const before = i < 0 ? args : args.slice(0, i);
  if (verb === undefined && before.includes('--version') && !before.some((a) => a === '-h' || a === '--help'))
    return { modules: [] };
  return { modules: Object.keys(MODULES) };
}

const program = new Command(commandName)
  .description('Run containers in Linux namespaces, unprivileged, from Node.js; Apptainer-compatible verbs')
  .version(versionLine, '--version')
  .enablePositionalOptions()
  .option('-s, --silent', "only the payload's output")
  .option('-q, --quiet', 'no warnings, no progress')
  .option('-d, --debug', 'print what is launched, environment included, and a stack trace on failure')
  .option('-v, --verbose', 'print what is launched')
  .showHelpAfterError()
  .exitOverride();
// Every subcommand reports a wrong command line through the same path; the
// Apptainer verbs in Apptainer's form.
const APPTAINER_VERBS = new Set(['exec', 'run', 'shell', 'test', 'version', 'instance']);
const configure = (c: Command) => {
  c.exitOverride();
  c.showHelpAfterError();
  if (APPTAINER_VERBS.has(c.name()) || commandName !== 'nodularity')
    c.configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'FATAL:   ')) });
};

async function main(): Promise<void> {
  const { modules: wanted, verb } = modulesFor(process.argv.slice(2));
  for (const m of wanted) (await MODULES[m]!())(program, versionLine, verb);
  if (wanted.includes('apptainer')) {
    const launches = await import('../singularity/index.js');
    abortLaunches = launches.abortPendingLaunches;
    forwardStarting = launches.forwardToStartingLaunches;
  }
  program.commands.forEach(configure);
  await program.parseAsync();
}

main().catch(async (e: unknown) => {
  // Dying of a signal: the launch it cut short fails, and that is not news.
  if (dying) return;
  if (e instanceof CommanderError) {
    // --help and --version end here too, with status 0.
    process.exit(e.exitCode === 0 ? 0 : RUNTIME_FAILURE);
  }
  // -d/--debug before the verb, even when the command line did not parse.
  const args = process.argv.slice(2);
  const verbAt = args.findIndex((a) => !a.startsWith('-'));
  const debug =
    program.opts<{ debug?: boolean }>().debug ||
    (verbAt < 0 ? args : args.slice(0, verbAt)).some((a) => a === '--debug' || /^-[a-z]*d[a-z]*$/.test(a));
  const f = await describeFailure(e, process.argv.slice(2));
  process.stderr.write(`${failureLine(f.message, args, commandName !== 'nodularity')}\n`);
  if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  process.exit(f.status);
});
