#!/usr/bin/env node
// The nodularity command line: Apptainer's verbs and flags (exec, run, shell,
// test, version), the image verbs (pull, inspect, cache), run-bundle for OCI
// bundles (Slurm), and bench.
//
// Exit status: the payload's own; RUNTIME_FAILURE (255, as Apptainer) when
// the runtime itself failed or the command line was wrong, with one message
// on stderr (and the usage, for a wrong command line).
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ContainerError, SpecError } from '../index.js';
import { registerApptainerCommands } from './apptainer-commands.js';
import { registerImageCommands } from './image-commands.js';
import { registerBundleCommand } from './bundle-command.js';
import { registerBenchCommand } from './bench-command.js';
import { RUNTIME_FAILURE } from './payload-exit.js';

const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8'));
// HTCondor reads `--version` to choose the APPTAINERENV_ prefix: it must say apptainer.
const versionLine = `nodularity version ${pkg.version} (apptainer-compatible)`;

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
