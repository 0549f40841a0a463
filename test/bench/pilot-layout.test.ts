// The pilot mix's image: an OCI layout the bench writes offline from a
// rootfs, which the library pulls like any `oci:DIR:TAG` source and runs.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeLayout } from '../../lib/bench/pilot.js';
import { pullImage, run, createSpec } from '../../lib/index.js';
import { scratch, testRootfs } from '../helpers/env.js';

t.test('the bench layout pulls into a cache and runs; a second write reuses it', async (t) => {
  const d = scratch(t);
  const source = writeLayout(testRootfs(), join(d, 'layout'));
  t.equal(source, `oci:${join(d, 'layout')}:bench`);
  const index = readFileSync(join(d, 'layout', 'index.json'), 'utf8');
  t.equal(writeLayout(testRootfs(), join(d, 'layout')), source, 'the same source');
  t.equal(readFileSync(join(d, 'layout', 'index.json'), 'utf8'), index, 'not rewritten');
  const pulled = await pullImage(source, { cacheDir: join(d, 'cache') });
  t.equal(pulled.cached, false);
  t.ok(existsSync(join(pulled.rootfs, 'payload')), 'the rootfs came through the layer');
  const r = await run(createSpec({ rootfs: pulled.rootfs, args: ['/payload', 'exit', '7'] }), { stdio: 'ignore' });
  t.equal(r.exitCode, 7, 'runs from the pulled image');
  t.equal((await pullImage(source, { cacheDir: join(d, 'cache') })).cached, true, 'cached the second time');
});
