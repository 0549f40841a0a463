// nodularity: run OCI root file systems in Linux namespaces from Node.js.
// The public API: launching (spawn, run, Container), specs (createSpec,
// loadBundle, validateSpec), Apptainer-style verbs (exec, runscript, shell,
// testImage; runImage is runscript's deprecated old name), images (pullImage,
// inspectImage, ImageCache) and the three error classes. How a launch goes from here to native/child.cc: docs/architecture.md.
// The stages themselves (prepareLaunch, compileLaunch) are in 'nodularity/internal'.
export { spawn, run, Container, DEFAULT_FORCE_KILL_AFTER_DELAY, openConsoleSocket } from './container.js';
export type { SpawnOptions, ExitResult, RunResult, Rusage, StdioOption, LaunchTiming } from './container.js';
export { prepare, PreparedContainer } from './prepared.js';
export type { LaunchBind, LaunchChanges, PreparedSpawnOptions, PrepareOptions, PreparedStats } from './prepared.js';
export { createSpec, defaultMounts, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from './oci/defaults.js';
export type { SpecOptions } from './oci/defaults.js';
export { loadBundle } from './oci/bundle.js';
export type { Bundle } from './oci/bundle.js';
export { validateSpec } from './oci/validate.js';
export { ContainerError, SpecError } from './errors.js';
export { Cgroup, CgroupError } from './cgroups/cgroup.js';
export type { CgroupStats, LinuxResources } from './cgroups/types.js';
export { defaultSeccompProfile, resolveSeccomp, DEFAULT_BLOCKED, DOCKER_DEFAULT_PATH } from './seccomp/index.js';
export type { LinuxSeccomp, LinuxSyscall, LinuxSeccompArg, SeccompChoice, SecurityOptions } from './seccomp/index.js';
export type * from './oci/spec.js';
export {
  exec,
  runscript,
  runImage,
  shell,
  testImage,
  prepareExec,
  parseBindList,
  parseMountSpec,
} from './singularity/index.js';
export type { ExecOptions, ImageContainer, BindSpec, PreparedImage, PreparedImageLaunch } from './singularity/index.js';
export { startInstance, getInstance, listInstances, stopInstance, Instance } from './singularity/index.js';
export type {
  InstanceOptions,
  InstanceStoreOptions,
  InstanceStopOptions,
  InstanceStopResult,
} from './singularity/index.js';
export {
  pullImage,
  inspectImage,
  ImageCache,
  defaultCacheDir,
  parseSource,
  formatSource,
  hostPlatform,
  ImageError,
} from './image/index.js';
export type {
  PullOptions,
  PulledImage,
  ImageInspection,
  PullProgress,
  ImageConfig,
  CachedImage,
  ImageSource,
  ImageErrorCode,
  Platform,
  RegistryOptions,
  RegistryCredentials,
} from './image/index.js';
