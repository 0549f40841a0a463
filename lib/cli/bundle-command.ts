// `run-bundle`: run an OCI bundle (a directory with config.json), as
// `crun run` does. This is the verb Slurm's oci.conf calls.
import type { Command } from 'commander';
import { loadBundle, spawn } from '../index.js';
import { runAndExit } from './payload-exit.js';

export function registerBundleCommand(program: Command): void {
  program.command('run-bundle')
    .description('run an OCI bundle (a directory with config.json), as `crun run` does')
    .argument('<bundle>', 'bundle directory')
    .option('--no-init', 'run the payload as PID 1, without the init')
    .action(async (dir: string, o) => {
      const b = await loadBundle(dir);
      await runAndExit(spawn(b.spec, { bundleDir: b.dir, stdio: 'inherit', init: o.init }));
    });
}
