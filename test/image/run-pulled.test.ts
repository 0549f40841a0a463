// An image pulled by nodularity runs with the core launcher.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pullImage } from '../../lib/image/index.js';
import { createSpec, run } from '../../lib/index.js';
import { buildFixtureImage } from './fixtures/images.js';
import { removeAll } from './fixtures/tools.js';

t.test('pull an OCI layout into the cache and run it', async (t) => {
  const img = await buildFixtureImage();
  t.teardown(() => removeAll(img.dir));
  const cacheDir = mkdtempSync(join(tmpdir(), 'nodularity-cache-'));
  // Unpacked images hold read-only directories: removeAll copes with them.
  t.teardown(() => removeAll(cacheDir));
  const pulled = await pullImage(`oci:${img.layout}:v2`, { cacheDir });
  const r = await run(
    createSpec({
      rootfs: pulled.rootfs,
      args: ['/bin/sh', '-c', 'cat /data/hello.txt; test -e /deleteme.txt && echo present || echo deleted; id -u'],
    }),
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.equal(r.exitCode, 0, String(r.stderr));
  t.equal(
    String(r.stdout),
    `hello from layer 1\ndeleted\n${process.geteuid!()}\n`,
    'layer contents and the whiteout, seen from inside',
  );
});
