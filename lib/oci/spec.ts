// OCI runtime-spec config.json types (runtime-spec v1.2), with the spec's own
// field names so that a config.json parses straight into them. Only the parts
// a Linux runtime acts on are typed; unknown fields are kept and ignored.

import type { LinuxSeccomp } from '../seccomp/types.js';
import type { LinuxResources } from '../cgroups/types.js';

export interface Spec {
  ociVersion: string;
  process?: Process;
  root?: Root;
  hostname?: string;
  domainname?: string;
  mounts?: Mount[];
  linux?: Linux;
  annotations?: Record<string, string>;
}

export interface Process {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: User;
  args: string[];
  env?: string[];
  cwd: string;
  capabilities?: Capabilities;
  rlimits?: Rlimit[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
  apparmorProfile?: string;
  selinuxLabel?: string;
}

export interface User {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
}

export interface Capabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

export interface Rlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface Root {
  path: string;
  readonly?: boolean;
}

export interface Mount {
  destination: string;
  source?: string;
  type?: string;
  options?: string[];
}

export type NamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup' | 'time';

export interface LinuxNamespace {
  type: NamespaceType;
  path?: string;
}

export interface LinuxIDMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface Linux {
  namespaces?: LinuxNamespace[];
  uidMappings?: LinuxIDMapping[];
  gidMappings?: LinuxIDMapping[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  rootfsPropagation?: 'private' | 'rprivate' | 'slave' | 'rslave' | 'shared' | 'rshared' | 'unbindable' | 'runbindable';
  sysctl?: Record<string, string>;
  resources?: LinuxResources;
  cgroupsPath?: string;
  seccomp?: LinuxSeccomp;
  /** Offsets of a new time namespace's clocks (runtime-spec 1.1). */
  timeOffsets?: Record<string, { secs?: number; nanosecs?: number }>;
  personality?: { domain: string; flags?: string[] };
  devices?: LinuxDevice[];
  mountLabel?: string;
}

export interface LinuxDevice {
  type: string;
  path: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}
