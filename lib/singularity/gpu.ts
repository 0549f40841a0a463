// --nv and --rocm as Apptainer's legacy GPU setup does it: the host's driver
// libraries named in a list (etc/nvliblist.conf, etc/rocmliblist.conf, copies
// of Apptainer's) found through the dynamic linker's cache (`ldconfig -p`) and
// bound into /.singularity.d/libs (on LD_LIBRARY_PATH); the listed programs
// found on PATH bound into /usr/bin; listed absolute files bound as they are;
// and the GPU device nodes, when present. What is not found is a warning, as
// in Apptainer, never a failure: the same job runs on hosts without GPUs.
//
// For tests only: NODULARITY_NVLIBLIST / NODULARITY_ROCMLIBLIST name another
// list, NODULARITY_LDCONFIG another program to run as `ldconfig -p`.
import { execFileSync } from 'node:child_process';
import { accessSync, constants as fsc, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpecError } from '../errors.js';

export type GpuKind = 'nv' | 'rocm';

export interface GpuBinds {
  /** host path -> container path */
  files: [string, string][];
  devices: string[];
  warnings: string[];
}

export const CONTAINER_LIBS = '/.singularity.d/libs';

const listFile = (kind: GpuKind, env: NodeJS.ProcessEnv): string =>
  (kind === 'nv' ? env.NODULARITY_NVLIBLIST : env.NODULARITY_ROCMLIBLIST) ||
  // lib/singularity (tests) and dist/singularity (the CLI) are both two levels below etc/.
  join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'etc', `${kind}liblist.conf`);

/** The dynamic linker cache: soname -> path, for this machine's word size and architecture. */
function ldCache(env: NodeJS.ProcessEnv): Map<string, string> {
  let prog = env.NODULARITY_LDCONFIG;
  if (!prog)
    prog = ['/sbin/ldconfig', '/usr/sbin/ldconfig', '/usr/bin/ldconfig'].find((p) => existsSync(p)) ?? 'ldconfig';
  let out: string;
  try {
    out = execFileSync(prog, ['-p'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 10_000,
      maxBuffer: 16 << 20,
    });
  } catch (e) {
    throw new SpecError(
      '--nv/--rocm',
      `cannot read the library cache with \`${prog} -p\`: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  const arch = process.arch === 'x64' ? 'x86-64' : process.arch === 'arm64' ? 'AArch64' : undefined;
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const r = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S.*)$/.exec(line);
    if (!r) continue;
    const [, name, flags, path] = r;
    // 32-bit libraries have the same names: only those of our own architecture.
    if (arch && !flags.split(',').includes(arch)) continue;
    if (!m.has(name)) m.set(name, path.trim());
  }
  return m;
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':').filter(Boolean)) {
    const p = join(dir, name);
    try {
      accessSync(p, fsc.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

function devices(kind: GpuKind): string[] {
  const out: string[] = [];
  const add = (p: string) => {
    try {
      if (statSync(p).isCharacterDevice()) out.push(p);
    } catch {
      /* absent */
    }
  };
  if (kind === 'nv') {
    try {
      for (const e of readdirSync('/dev')) if (/^nvidia/.test(e)) add(`/dev/${e}`);
    } catch {
      /* no /dev */
    }
    try {
      for (const e of readdirSync('/dev/nvidia-caps')) add(`/dev/nvidia-caps/${e}`);
    } catch {
      /* none */
    }
  } else {
    add('/dev/kfd');
    try {
      for (const e of readdirSync('/dev/dri')) add(`/dev/dri/${e}`);
    } catch {
      /* none */
    }
  }
  return out;
}

/** What --nv or --rocm binds on this host. */
export function gpuBinds(kind: GpuKind, env: NodeJS.ProcessEnv = process.env): GpuBinds {
  const file = listFile(kind, env);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SpecError(`--${kind}`, `cannot read the library list ${file} (${(e as NodeJS.ErrnoException).code})`);
  }
  const entries = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const libs = entries.filter((e) => e.includes('.so'));
  const cache = libs.length ? ldCache(env) : new Map<string, string>();
  const files: [string, string][] = [];
  let nLibs = 0,
    nFiles = 0;
  for (const lib of libs) {
    for (const [name, path] of cache) {
      if (name === lib || name.startsWith(`${lib}.`)) {
        files.push([path, posix.join(CONTAINER_LIBS, name)]);
        nLibs++;
      }
    }
  }
  for (const e of entries.filter((x) => !x.includes('.so'))) {
    if (isAbsolute(e)) {
      if (existsSync(e)) {
        files.push([e, e]);
        nFiles++;
      }
    } else {
      const p = onPath(e, env);
      if (p) {
        files.push([p, posix.join('/usr/bin', posix.basename(p))]);
        nFiles++;
      }
    }
  }
  const warnings: string[] = [];
  if (nFiles === 0) warnings.push(`Could not find any ${kind} files on this host!`);
  if (nLibs === 0) warnings.push(`Could not find any ${kind} libraries on this host!`);
  return { files, devices: devices(kind), warnings };
}
