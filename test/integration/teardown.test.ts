// Node exiting while a container it no longer waits for (unref'd, or
// detached) is being killed: the container's exit may be reaped in the loop
// runs of Node's own teardown, when no JS can run and our wrapper may already
// be finalized. The process must still exit with its own status, not abort
// (node-addon-api's fatal error) or crash (a freed wrapper). It did both,
// about once in 20 exits, before the exit path checked for teardown.
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { repoRoot, scratch, testRootfs } from '../helpers/env.js';
import { requireFreshDist } from '../helpers/cli.js';

t.test("exiting while an unref'd container is being killed: exit 0, every time", async (t) => {
  requireFreshDist();
  const script = join(scratch(t), 'exit-while-killing.mjs');
  writeFileSync(
    script,
    `import { spawn, createSpec } from ${JSON.stringify(join(repoRoot, 'dist/index.js'))};
const c = spawn(createSpec({ rootfs: ${JSON.stringify(testRootfs())}, args: ['/bin/sleep', '100'] }), { stdio: 'ignore' });
await c.spawned;
c.unref();
c.kill('SIGKILL');
await new Promise((r) => setTimeout(r, Number(process.argv[2])));
`,
  );
  const codes: string[] = [];
  const runs = 60;
  for (let i = 0; i < runs; i += 3) {
    const batch = [0, 1, 2].map(async (j) => {
      const p = spawn(process.execPath, [script, String((i + j) % 4)], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const [code, signal] = (await once(p, 'close')) as [number | null, string | null];
      codes.push(code === 0 ? 'exit 0' : `${code ?? signal}: ${err.split('\n')[0]}`);
    });
    await Promise.all(batch);
  }
  t.same(
    codes.filter((c) => c !== 'exit 0'),
    [],
    `${runs} exits, none aborted or crashed`,
  );
});
