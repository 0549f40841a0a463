#!/usr/bin/env node
// The nodularity command line. The Apptainer-compatible verbs (exec, run,
// shell with all their flags) come with the Singularity front end; this is
// the launcher's own surface plus the image verbs.
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSpec, spawn, ContainerError, SpecError } from '../index.js';
import type { Mount } from '../oci/spec.js';
import { registerImageCommands } from './image-commands.js';
import { registerBundleCommand } from './bundle-command.js';
import { registerBenchCommand } from './bench-command.js';
import { RUNTIME_FAILURE, runAndExit } from './payload-exit.js';

const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json'), 'utf8'));

function parseBind(spec: string): Mount[] {
  return spec.split(',').filter(Boolean).map((one) => {
    const [src, dst = src, mode = 'rw'] = one.split(':');
    if (!src.startsWith('/')) throw new SpecError('--bind', `bind source must be absolute: ${one}`);
    if (mode !== 'ro' && mode !== 'rw') throw new SpecError('--bind', `bind mode must be ro or rw: ${one}`);
    return { destination: dst, source: src, options: ['rbind', mode] };
  });
}

const program = new Command('nodularity')
  .description('Run OCI root file systems in Linux namespaces, unprivileged, from Node.js')
  .version(`nodularity ${pkg.version}`, '--version')
  .showHelpAfterError();

program.command('exec')
  .description('run COMMAND in the root file system directory ROOTFS')
  .argument('<rootfs>', 'unpacked root file system directory')
  .argument('<command...>', 'command and arguments')
  .option('-B, --bind <src[:dst[:ro|rw]]>', 'bind a host path (repeatable, comma-separated)', (v: string, acc: string[]) => acc.concat(v), [])
  .addOption(new Option('--network <mode>', 'host network or a new one with only lo').choices(['host', 'none']).default('host'))
  .option('--hostname <name>', 'hostname inside')
  .option('--pwd <dir>', 'working directory inside', '/')
  .option('--fakeroot', 'be uid 0 inside (mapped to you outside)')
  .option('--no-init', 'run the payload as PID 1, without the init')
  .option('--readonly', 'mount the root file system read-only')
  .action(async (rootfs: string, command: string[], o) => {
    const spec = createSpec({
      rootfs, args: command, cwd: o.pwd, network: o.network, hostname: o.hostname, readonly: o.readonly,
      uid: o.fakeroot ? 0 : undefined, gid: o.fakeroot ? 0 : undefined,
      env: Object.entries(process.env).filter(([k]) => k !== 'PATH' && k !== 'LD_LIBRARY_PATH').map(([k, v]) => `${k}=${v}`)
        .concat('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'),
      mounts: (o.bind as string[]).flatMap(parseBind),
    });
    if (o.hostname === undefined) delete spec.hostname;
    await runAndExit(spawn(spec, { stdio: 'inherit', init: o.init }));
  });

registerBundleCommand(program);
registerBenchCommand(program);
registerImageCommands(program);

program.parseAsync().catch((e: unknown) => {
  if (e instanceof ContainerError || e instanceof SpecError || (e instanceof Error && e.name === 'ImageError')) {
    process.stderr.write(`nodularity: ${e.message}\n`);
  } else {
    process.stderr.write(`nodularity: ${e instanceof Error ? e.stack : String(e)}\n`);
  }
  process.exit(RUNTIME_FAILURE);
});
