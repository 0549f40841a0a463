// nodularity: run OCI root file systems in Linux namespaces from Node.js.
export { spawn, run, Container } from './container.js';
export type { SpawnOptions, ExitResult, RunResult, Rusage, StdioOption } from './container.js';
export { createSpec, defaultMounts, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './oci/defaults.js';
export type { SpecOptions } from './oci/defaults.js';
export { loadBundle } from './oci/bundle.js';
export type { Bundle } from './oci/bundle.js';
export { validateSpec } from './oci/validate.js';
export { prepareLaunch } from './plan/plan.js';
export type { LaunchPlan, PlanOptions } from './plan/plan.js';
export { ContainerError, SpecError } from './errors.js';
export type * from './oci/spec.js';
export { exec, runImage, shell, testImage, compileLaunch, parseBindList, parseMountSpec } from './singularity/index.js';
export type { ExecOptions, ImageContainer, BindSpec, ResolvedRunImage } from './singularity/index.js';
