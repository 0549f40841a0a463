// nodularity/internal: the stages behind spawn() and exec(), for tools and
// tests that inspect a launch without running it. No stability promise: these
// change shape with the planner (docs/architecture.md says what each does).
//   prepareLaunch(spec)            Spec -> LaunchPlan (plain data for the addon)
//   compileLaunch(image, argv, o)  Apptainer options -> an ordinary Spec
export { prepareLaunch } from './plan/plan.js';
export type { LaunchPlan, PlanOptions, PreparedLaunch } from './plan/plan.js';
export { compileLaunch } from './singularity/index.js';
export type { ActionMode, CompiledLaunch, ResolvedRunImage } from './singularity/index.js';
