// `run-bundle BUNDLE`: run a bundle's config.json in the foreground, as
// `crun run` does, without a state directory. The OCI runtime verbs with
// runc's command line (create, start, run, state, kill, delete, exec, ...),
// which Slurm's oci.conf, containerd and Podman call, are `nodularity oci`
// (lib/cli/oci-command.ts), also installed as `nodularity-oci`.
import type { Command } from 'commander';
import { join } from 'node:path';
import { spawn, SpecError } from '../index.js';
import { bundleSpec } from '../oci/runtime.js';
import { forwardAndExit as runAndExit } from './forwarding.js';

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
      // Hooks need the container's state and lifecycle: `nodularity oci run` has them.
      for (const [name, list] of Object.entries(b.hooks))
        if (list?.length)
          throw new SpecError(
            `/hooks/${name}`,
            `${join(b.dir, 'config.json')} asks for OCI hooks, which run-bundle does not run; use \`nodularity oci run\` (or nodularity-oci), or pass --ignore-hooks`,
          );
      await runAndExit(spawn(b.spec, { bundleDir: b.dir, stdio: 'inherit', init: o.init }));
    });
}
