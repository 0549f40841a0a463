// Plan building and path resolution, without launching anything.
import t from 'tap';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { STEP_NAMES, MOUNT_CALLS } from '../../lib/errors.js';
import { resolveInRoot } from '../../lib/plan/resolve.js';
import { prepareLaunch, OP } from '../../lib/plan/plan.js';
import { createSpec } from '../../lib/index.js';
import { repoRoot, scratch, testRootfs } from '../helpers/env.js';

t.test('step names agree with native/protocol.h', async (t) => {
  const h = readFileSync(join(repoRoot, 'native/protocol.h'), 'utf8');
  const steps = h.slice(h.indexOf('enum child_step'), h.indexOf('STEP_COUNT')).match(/STEP_[A-Z_]+/g)!;
  t.equal(steps.length, STEP_NAMES.length, 'same number of steps');
  const calls = h.slice(h.indexOf('enum mount_call'), h.indexOf('};', h.indexOf('enum mount_call'))).match(/CALL_[A-Z_]+/g)!;
  t.equal(calls.length, MOUNT_CALLS.length, 'same number of mount calls');
});

t.test('symlinks never lead outside the root', async (t) => {
  const root = scratch(t);
  mkdirSync(join(root, 'etc'));
  symlinkSync('/../../../../etc', join(root, 'abs-escape'));
  symlinkSync('../../../..', join(root, 'etc', 'rel-escape'));
  symlinkSync('loop', join(root, 'loop'));
  t.equal(resolveInRoot(root, '/abs-escape/passwd').hostPath, join(root, 'etc/passwd'));
  t.equal(resolveInRoot(root, '/etc/rel-escape/etc').hostPath, join(root, 'etc'));
  t.equal(resolveInRoot(root, '/../../x').hostPath, join(root, 'x'));
  t.same(resolveInRoot(root, '/new/a/b').missing, ['/new', '/new/a', '/new/a/b']);
  t.throws(() => resolveInRoot(root, '/loop/x'), { code: 'ELOOP' });
});

t.test('a /dev tmpfs expands into the minimal device set, created inside the tmpfs', async (t) => {
  const { plan } = prepareLaunch(createSpec({ rootfs: testRootfs(), args: ['/bin/true'] }));
  const binds = plan.ops.filter((o) => o.kind === OP.BIND).map((o) => o.source);
  t.same(binds, ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
  t.ok(plan.ops.some((o) => o.kind === OP.MKDIR && o.target.endsWith('/dev/pts')), '/dev/pts made inside the tmpfs');
  t.equal(plan.idMode, 1, 'single-ID map written by the child');
  t.equal(plan.init, true);
  t.equal(plan.noNewPrivileges, true);
  t.equal(plan.capBounding, 0n);
});

t.test('binds are nosuid,nodev unless asked, read-only as asked', async (t) => {
  const d = scratch(t);
  const { plan } = prepareLaunch(createSpec({ rootfs: testRootfs(), args: ['/bin/true'], mounts: [
    { destination: '/a', source: d, options: ['rbind', 'ro'] },
    { destination: '/b', source: d, options: ['bind', 'suid', 'dev'] },
  ] }));
  const [a, b] = plan.ops.filter((o) => o.kind === OP.BIND && o.source === d);
  t.equal(a.attrSet, 0x1 | 0x2 | 0x4);
  t.equal(a.recursive, true);
  t.equal(b.attrSet, 0);
  t.equal(b.recursive, false);
});
