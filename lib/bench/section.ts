// What the optional bench sections get and give: apart from run.ts and the
// sections (extras.ts, throughput.ts, floor.ts, targets.ts) so that none of
// them imports another's types.
import type { DriverContext, NodularityModule } from './drivers.js';
import type { DriverRow } from './report.js';
import type { Network } from './setup.js';

/** What an optional section runs with: the rootfs, the output directory, the build under test and the runtimes probed. */
export interface ExtraContext {
  rootfs: string;
  out: string;
  args: string[];
  network: Network;
  nod: NodularityModule;
  /** File URL of the build measured when it is not this one (sections that launch from fresh processes load it). */
  nodUrl?: string;
  /** What the latency drivers were built from (runtimes probed, the floor binary): sections that launch reuse it. */
  drivers: DriverContext;
  /** The latency rows, and the sections run before this one (targets reads them). */
  rows: DriverRow[];
  before: Record<string, ExtraSection>;
}

/** An optional trial's contribution: its data for the JSON and its text for the reports. */
export interface ExtraSection {
  title: string;
  data: unknown;
  text: string;
  markdown: string;
}

/** A section to run after the latency trial. */
export type SectionRunner = (x: ExtraContext) => Promise<ExtraSection>;
