// Stage "gpu": --nv and --rocm as mounts. What to bind is gpu.ts's (the
// host's driver libraries, programs and device nodes); here they become
// read-only binds, and the device nodes read-write binds without rbind.
import type { Mount } from '../../oci/spec.js';
import { gpuBinds, type GpuKind } from '../gpu.js';
import { bind } from './paths.js';

export interface GpuPlan {
  mounts: Mount[];
  /** What was not found (a warning, never a failure: the same job runs on hosts without GPUs). */
  warnings: string[];
}

/** The mounts for the GPU kinds asked for, --nv before --rocm. */
export function planGpuMounts(asked: { nv?: boolean; rocm?: boolean }, hostEnv: NodeJS.ProcessEnv): GpuPlan {
  const out: GpuPlan = { mounts: [], warnings: [] };
  for (const kind of ['nv', 'rocm'] as const satisfies readonly GpuKind[]) {
    if (!asked[kind]) continue;
    const g = gpuBinds(kind, hostEnv);
    out.warnings.push(...g.warnings);
    for (const [src, dst] of g.files) out.mounts.push(bind(src, dst, true));
    for (const d of g.devices) out.mounts.push({ destination: d, source: d, type: 'bind', options: ['bind', 'rw'] });
  }
  return out;
}
