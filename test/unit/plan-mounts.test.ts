// Stage "mounts" (lib/plan/mounts.ts): ops in order, targets resolved through
// the layers, what an overlay would have to create, refusals of hostile images.
import t from 'tap';
import { mkdirSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { planMounts } from '../../lib/plan/mounts.js';
import { findExecutable } from '../../lib/plan/process.js';
import { OP, RESOLVE } from '../../lib/plan/types.js';
import { scratch, type Tap } from '../helpers/env.js';

const ctx = (bundleDir: string) => ({ mapsGid5: false, bundleDir, allowHostProc: false });

function image(t: Tap): string {
  const r = scratch(t);
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) mkdirSync(join(r, d));
  return r;
}

t.test(
  'default mounts: /dev expanded, devpts without gid=5 when unmapped, sysfs with a read-only fallback',
  async (t) => {
    const r = image(t);
    const { b, cwd } = planMounts(createSpec({ rootfs: r, args: ['/bin/true'], cwd: '/work' }), r, ctx(r));
    t.equal(cwd, '/work');
    const devpts = b.entries.find((e) => e.op.fstype === 'devpts')!;
    t.notMatch(devpts.op.data ?? '', /gid=/);
    t.match(devpts.op.data ?? '', /newinstance/);
    const sys = b.entries.find((e) => e.op.fstype === 'sysfs')!;
    t.equal(sys.op.fallback, '/sys');
    t.equal(sys.op.fallbackErrnos, (1 << 1) | (1 << 13) | (1 << 16), 'EPERM, EACCES, EBUSY fall back, nothing else');
    t.same(b.imageCreates, ['/work/'], 'the missing cwd would be created in the image');
    const masks = b.entries.filter((e) => e.op.kind === OP.MASK);
    t.ok(
      masks.length > 0 && masks.every((e) => e.op.skipMissing && e.op.resolve === RESOLVE.FOLLOW),
      'masks may skip a missing path, by plan',
    );
    t.ok(
      b.entries.filter((e) => e.op.kind === OP.MOUNT).every((e) => !e.op.skipMissing),
      'mounts may not',
    );
  },
);

t.test('a bind through an image symlink lands where the kernel would put it', async (t) => {
  const r = image(t);
  const host = scratch(t);
  writeFileSync(join(host, 'f'), '');
  symlinkSync('/etc', join(r, 'cfg'));
  const s = createSpec({
    rootfs: r,
    args: ['/bin/true'],
    mounts: [{ destination: '/cfg/f', source: join(host, 'f'), options: ['bind'] }],
  });
  const { b } = planMounts(s, r, ctx(r));
  const e = b.entries.find((x) => x.op.kind === OP.BIND && x.source === join(host, 'f'))!;
  t.equal(e.target, '/etc/f', 'canonical target');
  t.ok(
    b.entries.some((x) => x.op.kind === OP.MKFILE && x.target === '/etc/f'),
    'the file mount point is made',
  );
  t.equal(e.what, `bind-mount ${join(host, 'f')} -> /etc/f`);
});

t.test('hostile images and bad mounts are refused, naming the field', async (t) => {
  const r = image(t);
  const s = createSpec({
    rootfs: r,
    args: ['/bin/true'],
    mounts: [{ destination: '/x', source: '/nonexistent-src', options: ['bind'] }],
  });
  t.throws(() => planMounts(s, r, ctx(r)), { name: 'SpecError', pointer: `/mounts/${s.mounts!.length - 1}/source` });
  const r2 = image(t);
  mkdirSync(join(r2, 'p'));
  const rmProc = join(r2, 'proc');
  rmdirSync(rmProc);
  symlinkSync('/p', rmProc);
  t.throws(() => planMounts(createSpec({ rootfs: r2, args: ['/bin/true'] }), r2, ctx(r2)), {
    name: 'SpecError',
    pointer: '/mounts/0/destination',
    message: /\/proc is a symlink in the image/,
  });
});

t.test(
  'the parents of a bind under a fresh tmpfs exist for what comes after (an executable in that bind)',
  async (t) => {
    // `exec -C -B /tmp/pt/slot IMG /tmp/pt/slot/j`: /tmp is a tmpfs of ours, /tmp/pt
    // is made in it for the bind; the executable under the bind must be found.
    const r = image(t);
    const host = scratch(t);
    writeFileSync(join(host, 'j'), '#!/bin/sh\n', { mode: 0o755 });
    const s = createSpec({
      rootfs: r,
      args: ['/tmp/pt/slot/j'],
      mounts: [
        { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] },
        { destination: '/tmp/pt/slot', source: host, options: ['bind'] },
        { destination: '/tmp/pt/other', source: host, options: ['bind'] },
      ],
    });
    const { b } = planMounts(s, r, ctx(r));
    t.same(
      b.entries.filter((e) => e.op.kind === OP.MKDIR && e.target.startsWith('/tmp/')).map((e) => e.target),
      ['/tmp/pt', '/tmp/pt/slot', '/tmp/pt/other'],
      '/tmp/pt is made once',
    );
    t.equal(findExecutable(b, '/tmp/pt/slot/j', [], '/'), '/tmp/pt/slot/j');
  },
);
