// Resource limits with cgroups: see cgroup.ts (one container's cgroup),
// hierarchy.ts (the host's hierarchies), files.ts (linux.resources -> files).
export { Cgroup, CgroupError } from './cgroup.js';
export type { CgroupOptions } from './cgroup.js';
export { hierarchies, parseHierarchies, processDirs } from './hierarchy.js';
export type { Hierarchies, V1Hierarchy, V2Hierarchy } from './hierarchy.js';
export { resourceWrites, sharesToWeight, blkioToIoWeight, DEFAULT_ALLOWED_DEVICES } from './files.js';
export type { CgroupWrite } from './files.js';
export type * from './types.js';
export { runcStats, statsJson } from './stats.js';
export type { RuncStats } from './stats.js';
