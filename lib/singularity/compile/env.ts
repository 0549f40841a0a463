// Stage "env": the environment's layers 1-3 (environment.ts says which is
// which): the host's (all of it, or TERM and the proxies with --cleanenv),
// the container's PATH, HOME and library path, what Apptainer tells the
// payload about its container (APPTAINER_* and SINGULARITY_*), the image
// config's Env; and the list of the image's /.singularity.d/env scripts,
// which run in the container before the user's layers apply (index.ts).
import { readdirSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import type { BindSpec } from '../binds.js';
import { CONTAINER_PATH, hostLayer, type EnvMap } from '../environment.js';
import { CONTAINER_LIBS } from '../gpu.js';
import type { ResolvedRunImage } from '../image.js';
import { imageHas, imagePath } from './paths.js';
import type { ActionMode } from './types.js';

export interface EnvInput {
  image: ResolvedRunImage;
  mode: ActionMode;
  hostEnv: NodeJS.ProcessEnv;
  hostCwd: string;
  cleanenv: boolean;
  /** The home directory inside. */
  home: string;
  /** --nv or --rocm: the driver libraries are on LD_LIBRARY_PATH. */
  gpu: boolean;
  userBinds: readonly BindSpec[];
  noEval: boolean;
}

export interface EnvPlan {
  baseEnv: EnvMap;
  /** Image env scripts to evaluate, container paths in order. */
  envScripts: string[];
}

/** The base environment and the image's environment scripts. */
export function planBaseEnv(i: EnvInput): EnvPlan {
  const { image } = i;
  const rootfs = image.rootfs;
  const baseEnv = hostLayer(i.hostEnv, i.cleanenv);
  baseEnv.set('PATH', CONTAINER_PATH);
  baseEnv.set('HOME', i.home);
  if (image.sandbox || i.gpu) baseEnv.set('LD_LIBRARY_PATH', CONTAINER_LIBS);
  // What Apptainer tells the payload about its container: the image (an
  // absolute path for a local one), the action, the bind destinations.
  const imagePathRef = /^[a-z][a-z0-9+.-]*:/i.test(image.ref) ? image.ref : resolve(i.hostCwd, image.ref);
  const bindDests = i.userBinds.map((b) => b.destination ?? b.source);
  for (const prefix of ['APPTAINER', 'SINGULARITY']) {
    baseEnv.set(`${prefix}_CONTAINER`, imagePathRef);
    baseEnv.set(`${prefix}_NAME`, posix.basename(imagePathRef.replace(/\/+$/, '')));
    baseEnv.set(`${prefix}_COMMAND`, i.mode);
    baseEnv.set(`${prefix}_BIND`, bindDests.join(','));
    baseEnv.set(`${prefix}_ENVIRONMENT`, '/.singularity.d/env/91-environment.sh');
    if (i.noEval) baseEnv.set(`${prefix}_NO_EVAL`, '1');
  }
  for (const kv of image.config?.env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) baseEnv.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  if (i.mode === 'shell') baseEnv.set('PS1', 'Apptainer> ');
  let envScripts: string[] = [];
  const envDir = image.sandbox ? imagePath(rootfs, '/.singularity.d/env', 'dir') : undefined;
  if (envDir) {
    envScripts = readdirSync(envDir)
      .filter((f) => f.endsWith('.sh'))
      .sort()
      .map((f) => `/.singularity.d/env/${f}`)
      .filter((f) => imageHas(rootfs, f, 'file'));
  }
  return { baseEnv, envScripts };
}
