// What the optional bench sections (extras.ts) get and give: apart from
// run.ts and extras.ts so that neither imports the other's types.
import type { NodularityModule } from './drivers.js';
import type { Network } from './setup.js';

/** What an optional section runs with: the rootfs, the output directory and the build under test. */
export interface ExtraContext {
  rootfs: string;
  out: string;
  args: string[];
  network: Network;
  nod: NodularityModule;
}

/** An optional trial's contribution: its data for the JSON and its text for the reports. */
export interface ExtraSection {
  title: string;
  data: unknown;
  text: string;
  markdown: string;
}
