// `npm run demo`: build the default image offline (busybox, from the host's
// busybox-static) and run a container on it, unprivileged if you are.
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRootfs } from './busybox-rootfs.mjs';
import { createSpec, run } from '../dist/index.js';

const cache =
  process.env.NODULARITY_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'nodularity');
const rootfs = join(cache, 'demo-busybox-rootfs');
if (!existsSync(join(rootfs, 'bin/busybox'))) {
  mkdirSync(rootfs, { recursive: true });
  makeBusyboxRootfs(rootfs);
  console.log(`built the default image in ${rootfs}`);
}
const script =
  'echo "hello from $(cat /etc/os-release | head -1) as $(id -un) (uid $(id -u)), pid $$"; ps; ls /dev; grep -E "NoNewPrivs|CapEff" /proc/self/status';
const t0 = performance.now();
const r = await run(createSpec({ rootfs, args: ['/bin/sh', '-c', script], hostname: 'nodularity-demo' }), {
  stdio: 'inherit',
});
console.log(
  `exit ${r.exitCode} after ${(performance.now() - t0).toFixed(1)} ms (user ${r.rusage.userCPUTime} µs, sys ${r.rusage.systemCPUTime} µs)`,
);
process.exit(r.exitCode);
