// The nodularity command line: Apptainer's verbs and flags (exec, run, shell,
// test, version), the image verbs (pull, inspect, cache), run-bundle for OCI
// bundles (Slurm), and bench.
//
// Exit status: the payload's own; RUNTIME_FAILURE (255, as Apptainer) when
// the runtime itself failed or the command line was wrong, with one message
// on stderr (and the usage, for a wrong command line).
//
// Started through bin/nodularity (`node -- main.js ...`), never as
// `node main.js ...`: see nodeReadEnvFile below.
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerError, SpecError } from '../index.js';
import { abortPendingLaunches } from '../singularity/index.js';
import { registerApptainerCommands } from './apptainer-commands.js';
import { registerImageCommands } from './image-commands.js';
import { registerBundleCommand } from './bundle-command.js';
import { registerBenchCommand } from './bench-command.js';
import { RUNTIME_FAILURE } from './payload-exit.js';

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
    if (i >= first && raw[i]!.startsWith('--env-file')) return raw[i]!.includes('=') ? raw[i] : `${raw[i]} ${raw[i + 1] ?? ''}`.trim();
  }
  return undefined;
}

const seen = nodeReadEnvFile();
if (seen !== undefined) {
  process.stderr.write(`nodularity: \`${seen}\` was read by Node.js itself before nodularity started (Node scans all of its arguments for --env-file, and may have run code from the file): ` +
    `start nodularity through its \`nodularity\` command (bin/nodularity) or as \`node -- ${process.argv[1]} ...\`\n`);
  process.exit(RUNTIME_FAILURE);
}

const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8'));
// HTCondor reads `--version` to choose the APPTAINERENV_ prefix: it must say apptainer.
const versionLine = `nodularity version ${pkg.version} (apptainer-compatible)`;

// A signal before the payload runs (an image pull, the image's environment
// scripts): remove what the launch made on the host (session files in
// $TMPDIR) and the evaluation container, then die of the same signal, as
// with no handler at all. Once runAndExit forwards signals to the payload
// (a listener that was not there at start), this one steps aside. The
// listeners there at start are signal-exit's (proper-lockfile releases its
// locks through it): it re-raises the signal once it is the only listener
// left, so ours is removed before re-raising, and nothing else (the failed
// launch's error) may end the process meanwhile: see `dying`.
let dying: NodeJS.Signals | undefined;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  const atStart = process.listeners(sig);
  const onSignal = (): void => {
    if (process.listeners(sig).some((l) => l !== onSignal && !atStart.includes(l))) return;
    dying = sig;
    abortPendingLaunches();
    process.removeListener(sig, onSignal);
    process.kill(process.pid, sig);
  };
  process.on(sig, onSignal);
}

const program = new Command('nodularity')
  .description('Run containers in Linux namespaces, unprivileged, from Node.js; Apptainer-compatible verbs')
  .version(versionLine, '--version')
  .showHelpAfterError()
  .exitOverride();
// Every subcommand reports a wrong command line through the same path.
const configure = (c: Command) => { c.exitOverride(); c.showHelpAfterError(); };

registerApptainerCommands(program, versionLine);
registerImageCommands(program);
registerBundleCommand(program);
registerBenchCommand(program);
program.commands.forEach(configure);

program.parseAsync().catch((e: unknown) => {
  // Dying of a signal: the launch it cut short fails, and that is not news.
  if (dying) return;
  if (e instanceof CommanderError) {
    // --help and --version end here too, with status 0.
    process.exit(e.exitCode === 0 ? 0 : RUNTIME_FAILURE);
  }
  if (e instanceof ContainerError || e instanceof SpecError || (e instanceof Error && e.name === 'ImageError')) {
    process.stderr.write(`nodularity: ${e.message}\n`);
  } else {
    process.stderr.write(`nodularity: ${e instanceof Error ? e.stack : String(e)}\n`);
  }
  process.exit(RUNTIME_FAILURE);
});
