// Mount options of config.json as runc's clients write them: a bind mount
// with fs-data options (runtime-tools' `mounts` test binds with `mode=755`)
// runs with those options dropped and one warning each, as runc and crun
// ignore them; the library API keeps refusing them (someone writing a spec by
// hand would otherwise lose an option without knowing).
import t from 'tap';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type Mount } from '../../lib/index.js';
import { scratch, spec } from '../helpers/env.js';
import { makeBundle, OCI_BIN, oci, ociDetached, runCmd } from './helpers.js';

function hostDir(t: Parameters<typeof scratch>[0]): string {
  const d = mkdtempSync(join(tmpdir(), 'nodularity-oci-mnt-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  writeFileSync(join(d, 'hello'), 'from the host\n');
  chmodSync(d, 0o755);
  return d;
}

t.test(
  'run: a bind with mode=755 and sync is made read-only as asked; the ignored options are warned about',
  async (t) => {
    const root = scratch(t);
    const d = hostDir(t);
    const bundle = makeBundle(scratch(t), ['/bin/sh', '-c', 'cat /data/hello; grep " /data " /proc/self/mountinfo'], {
      mounts: [
        ...(JSON.parse(JSON.stringify(spec(['true']).mounts)) as Mount[]),
        { destination: '/data', type: 'bind', source: d, options: ['rbind', 'mode=755', 'ro', 'sync'] },
      ],
    });
    const r = await runCmd([OCI_BIN, '--root', root, 'run', '--bundle', bundle, 'm1']);
    t.equal(r.code, 0, r.err);
    t.match(r.out, /^from the host\n/, 'the bind is there');
    t.match(r.out, / \/data ro,/, 'ro applied');
    const n = spec(['true']).mounts!.length;
    t.match(
      r.err,
      new RegExp(
        `level=warning msg="/mounts/${n} \\(/data\\): option \\\\"mode=755\\\\" ignored: a bind mount cannot apply it`,
      ),
    );
    t.match(r.err, /option \\"sync\\" ignored/);
    t.equal(r.err.match(/level=warning/g)?.length, 2, 'one warning per ignored option, nothing else');
    t.same(readdirSync(root), [], 'nothing left');
  },
);

t.test('the library (spawn) still refuses a data option on a bind, naming it', async (t) => {
  const d = hostDir(t);
  const s = spec(['true'], {
    mounts: [{ destination: '/data', type: 'bind', source: d, options: ['rbind', 'mode=755'] }],
  });
  t.throws(() => spawn(s), { name: 'SpecError', message: /mount option "mode=755" cannot be applied to a bind mount/ });
});

t.test('exec into such a container: the bundle is read again, the warnings are not repeated', async (t) => {
  const root = scratch(t);
  const d = hostDir(t);
  const bundle = makeBundle(scratch(t), ['/bin/sleep', '300'], {
    mounts: [
      ...(JSON.parse(JSON.stringify(spec(['true']).mounts)) as Mount[]),
      { destination: '/data', type: 'bind', source: d, options: ['rbind', 'mode=755'] },
    ],
  });
  const c = await ociDetached(root, 'create', '--bundle', bundle, 'm2');
  t.equal(c.code, 0, c.err);
  t.match(c.err, /option \\"mode=755\\" ignored/, 'create warns');
  const e = await oci(root, 'exec', 'm2', 'cat', '/data/hello');
  t.equal(e.code, 0, e.err);
  t.equal(e.out, 'from the host\n');
  t.equal(e.err, '', 'exec says nothing');
  t.equal((await oci(root, 'delete', '--force', 'm2')).code, 0);
  t.same(readdirSync(root), []);
});
