// Run under strace by `nodularity bench --phases`: N launches of the bench
// container, each preceded by an access() of a marker path so the trace
// shows where the JS call to spawn() began. Prints nothing.
//
//   node phase-probe.js --rootfs DIR --runs N --network host|none --args JSON
import { accessSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { nodularityArgs, type NodularityModule } from './drivers.js';
import type { Network } from './setup.js';

/** The marker path; it does not exist, access() fails with ENOENT, which is all the trace needs. */
export const PHASE_MARK = '/nodularity-bench-phase-mark';

const { values: v } = parseArgs({
  options: {
    rootfs: { type: 'string' },
    runs: { type: 'string' },
    network: { type: 'string' },
    args: { type: 'string' },
  },
});
const mod = (await import('../index.js')) as unknown as NodularityModule;
const ctx = {
  rootfs: v.rootfs!,
  args: v.args ? JSON.parse(v.args) : ['/bin/true'],
  network: (v.network ?? 'host') as Network,
  uid: process.getuid!(),
  runtimes: {},
};
const { spec, options } = nodularityArgs(ctx, 'nodularity');
for (let i = 0; i < Number(v.runs ?? 20); i++) {
  try {
    accessSync(PHASE_MARK);
  } catch {
    /* the marker is the syscall */
  }
  const r = await mod.run(spec, options);
  if (r.exitCode !== 0) {
    process.stderr.write(`launch ${i}: exit ${r.exitCode}\n`);
    process.exit(1);
  }
}
process.exit(0);
