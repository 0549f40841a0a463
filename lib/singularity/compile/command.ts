// Stage "command": what the action runs. exec: the command given. run: the
// sandbox's runscript, else the image config's Entrypoint + Cmd (arguments
// replace Cmd), else /bin/sh (an INFO, as Apptainer). shell: the asked shell
// when it is executable in the image, else bash without its rc files, else
// sh. test: the sandbox's test script, else nothing to launch.
import { SpecError } from '../../errors.js';
import type { ResolvedRunImage } from '../image.js';
import { imageExecutable, imageHas } from './paths.js';
import type { ActionMode } from './types.js';

export interface CommandPlan {
  args: string[];
  /** False for `test` on an image without a test script. */
  runnable: boolean;
  /** Variables to set on the base environment, in order (the shell's). */
  env: [string, string][];
  warnings: string[];
  infos: string[];
}

/** The payload's argv for the action. Throws a SpecError naming the image when `run` finds nothing to run. */
export function planCommand(mode: ActionMode, argv: string[], image: ResolvedRunImage): CommandPlan {
  const rootfs = image.rootfs;
  const out: CommandPlan = { args: [], runnable: true, env: [], warnings: [], infos: [] };
  switch (mode) {
    case 'exec':
      out.args = argv;
      break;
    case 'run':
      if (image.sandbox && imageHas(rootfs, '/.singularity.d/runscript', 'file'))
        out.args = ['/.singularity.d/runscript', ...argv];
      else if (image.config && (image.config.entrypoint.length || image.config.cmd.length))
        out.args = [...image.config.entrypoint, ...(argv.length ? argv : image.config.cmd)];
      else if (imageExecutable(rootfs, '/bin/sh')) {
        out.infos.push('No runscript found in container, executing /bin/sh');
        out.args = ['/bin/sh', ...argv];
      } else
        throw new SpecError(
          'image',
          `${image.ref} has no /.singularity.d/runscript, no Entrypoint or Cmd and no /bin/sh`,
        );
      break;
    case 'shell': {
      // As Apptainer's action script: the given shell ($APPTAINER_SHELL,
      // --shell) when executable, else bash without its rc files, else sh.
      const asked = argv[0];
      if (asked !== undefined && imageExecutable(rootfs, asked)) out.args = [asked];
      else {
        if (asked !== undefined)
          out.warnings.push(`shell ${asked} is not an executable file in the container: using the default shell`);
        out.args = imageExecutable(rootfs, '/bin/bash') ? ['/bin/bash', '--norc'] : ['/bin/sh'];
        out.env.push(['SHELL', out.args[0]!]);
      }
      if (asked !== undefined)
        for (const prefix of ['APPTAINER', 'SINGULARITY']) out.env.push([`${prefix}_SHELL`, asked]);
      break;
    }
    case 'test':
      out.runnable = image.sandbox && imageHas(rootfs, '/.singularity.d/test', 'file');
      out.args = out.runnable ? ['/.singularity.d/test', ...argv] : ['/bin/true'];
      break;
  }
  return out;
}
