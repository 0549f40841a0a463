// Plan building and path resolution, without launching anything.
import t from 'tap';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { STEP_NAMES, MOUNT_CALLS } from '../../lib/errors.js';
import { resolveInRoot } from '../../lib/plan/resolve.js';
import { prepareLaunch, OP } from '../../lib/plan/plan.js';
import { createSpec } from '../../lib/index.js';
import { repoRoot, scratch } from '../helpers/env.js';

/** `enum NAME { A = 0, B, ... }` in native/protocol.h: the members in wire-value order. */
function enumMembers(h: string, name: string, prefix: string): string[] {
  const body = h.slice(h.indexOf(`enum ${name} {`), h.indexOf('};', h.indexOf(`enum ${name} {`)));
  const out: string[] = [];
  for (const m of body.matchAll(new RegExp(`^\\s*(${prefix}[A-Z0-9_]+)(?:\\s*=\\s*(\\d+))?\\s*,?`, 'gm'))) {
    const value = m[2] === undefined ? out.length : Number(m[2]);
    if (value !== out.length) throw new Error(`${m[1]} = ${value}: the test expects dense values`);
    out.push(m[1]);
  }
  return out;
}

/** Whether every word of the C name (STEP_CAP_BOUNDING: cap, bounding) is in the TS name (drop-bounding-caps). */
const sameThing = (cName: string, prefix: string, tsName: string) =>
  cName
    .slice(prefix.length)
    .toLowerCase()
    .split('_')
    .every((w) => tsName.toLowerCase().includes(w));

t.test('step names agree with native/protocol.h, value by value', async (t) => {
  const h = readFileSync(join(repoRoot, 'native/protocol.h'), 'utf8');
  const steps = enumMembers(h, 'child_step', 'STEP_').filter((s) => s !== 'STEP_COUNT');
  t.equal(STEP_NAMES.length, steps.length, 'one name per step');
  steps.forEach((s, i) => t.ok(sameThing(s, 'STEP_', STEP_NAMES[i] ?? ''), `${s} = ${i} is named ${STEP_NAMES[i]}`));
  const calls = enumMembers(h, 'mount_call', 'CALL_');
  t.equal(MOUNT_CALLS.length, calls.length, 'one name per mount call');
  // Three calls are named for what the user sees, not for the enum's word.
  const alias: Record<string, string> = { CALL_MKFILE: 'create', CALL_RESOLVE: 'openat2', CALL_IDENTITY: 'fstat' };
  calls.forEach((c, i) =>
    t.ok(
      alias[c] ? MOUNT_CALLS[i] === alias[c] : sameThing(c, 'CALL_', MOUNT_CALLS[i] ?? ''),
      `${c} = ${i} is named ${MOUNT_CALLS[i]}`,
    ),
  );
});

/** The least root file system prepareLaunch accepts: an executable /bin/true (never run here). */
function tinyRootfs(t: Parameters<typeof scratch>[0]): string {
  const root = scratch(t, 'nodularity-unit-rootfs-');
  mkdirSync(join(root, 'bin'));
  writeFileSync(join(root, 'bin', 'true'), '#!/bin/true\n', { mode: 0o755 });
  return root;
}

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
  const { plan } = prepareLaunch(createSpec({ rootfs: tinyRootfs(t), args: ['/bin/true'] }));
  const binds = plan.ops.filter((o) => o.kind === OP.BIND).map((o) => o.source);
  t.same(binds, ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
  t.ok(
    plan.ops.some((o) => o.kind === OP.MKDIR && o.target.endsWith('/dev/pts')),
    '/dev/pts made inside the tmpfs',
  );
  t.equal(plan.idMode, 1, 'single-ID map written by the child');
  t.equal(plan.init, true);
  t.equal(plan.noNewPrivileges, true);
  t.equal(plan.capBounding, 0n);
});

t.test('binds are nosuid,nodev unless asked, read-only as asked', async (t) => {
  const d = scratch(t);
  const { plan } = prepareLaunch(
    createSpec({
      rootfs: tinyRootfs(t),
      args: ['/bin/true'],
      mounts: [
        { destination: '/a', source: d, options: ['rbind', 'ro'] },
        { destination: '/b', source: d, options: ['bind', 'suid', 'dev'] },
      ],
    }),
  );
  const [a, b] = plan.ops.filter((o) => o.kind === OP.BIND && o.source === d);
  t.equal(a.attrSet, 0x1 | 0x2 | 0x4);
  t.equal(a.recursive, true);
  t.equal(b.attrSet, 0);
  t.equal(b.recursive, false);
});
