// The measuring code lives in lib/bench (shared with `nodularity bench`);
// this runner uses its build in dist/bench and says so when it is missing.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'bench');
if (!existsSync(join(dist, 'latency.js'))) {
  console.error(`${dist}/latency.js is missing: build the library first (\`npm run build\`, or \`npm run build:ts\`)`);
  process.exit(1);
}
export * from '../../dist/bench/stats.js';
export * from '../../dist/bench/format.js';
export * from '../../dist/bench/setup.js';
export * from '../../dist/bench/drivers.js';
export * from '../../dist/bench/latency.js';
export * from '../../dist/bench/heap-trial.js';
