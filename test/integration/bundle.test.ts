// OCI bundles on disk: config.json with a relative root.path.
import t from 'tap';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec, loadBundle, run } from '../../lib/index.js';
import { scratch, testRootfs } from '../helpers/env.js';

t.test('a bundle directory runs as is', async (t) => {
  const dir = scratch(t);
  cpSync(testRootfs(), join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const spec = createSpec({ rootfs: 'rootfs', args: ['/bin/sh', '-c', 'echo from bundle; exit 3'] });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  const b = await loadBundle(dir);
  const r = await run(b.spec, { bundleDir: b.dir, stdio: ['ignore', 'pipe', 'inherit'] });
  t.equal(r.exitCode, 3);
  t.equal(r.stdout!.toString(), 'from bundle\n');
});

t.test('a broken config.json is named', async (t) => {
  const dir = scratch(t);
  writeFileSync(join(dir, 'config.json'), '{ nope');
  await t.rejects(loadBundle(dir), { name: 'SpecError', message: /config.json is not valid JSON/ });
  await t.rejects(loadBundle(join(dir, 'missing')), {
    name: 'SpecError',
    message: /cannot read .*config.json: ENOENT/,
  });
});
