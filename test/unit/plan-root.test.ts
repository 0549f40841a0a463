// Stage "root" (lib/plan/root.ts): rootfs, namespaces, overlay root.
import t from 'tap';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { CLONE, MS } from '../../lib/plan/flags.js';
import { planOverlay, planRoot } from '../../lib/plan/root.js';
import { scratch } from '../helpers/env.js';

t.test('the rootfs is resolved to a symlink-free directory, relative to the bundle', async (t) => {
  const d = scratch(t);
  mkdirSync(join(d, 'rootfs'));
  symlinkSync('rootfs', join(d, 'link'));
  const s = createSpec({ rootfs: 'link', args: ['/bin/true'] });
  const r = planRoot(s, d);
  t.equal(r.rootfs, join(d, 'rootfs'));
  t.equal(r.cloneFlags & CLONE.NEWNS, CLONE.NEWNS);
  t.equal(r.rootPropagation, MS.SLAVE, 'rslave by default');
  t.throws(() => planRoot(createSpec({ rootfs: '/', args: ['/bin/true'] }), d), {
    name: 'SpecError',
    pointer: '/root/path',
  });
  t.throws(() => planRoot(createSpec({ rootfs: 'nope', args: ['/bin/true'] }), d), {
    name: 'SpecError',
    pointer: '/root/path',
    message: /is not a directory \(ENOENT\)/,
  });
});

t.test('namespaces: mount required, uts for a hostname, unknown refused', async (t) => {
  const d = scratch(t);
  const s = createSpec({ rootfs: d, args: ['/bin/true'], hostname: 'h' });
  s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'uts');
  t.throws(() => planRoot(s, d), { name: 'SpecError', pointer: '/hostname' });
  s.linux!.namespaces = [{ type: 'pid' }];
  t.throws(() => planRoot(s, d), {
    name: 'SpecError',
    pointer: '/linux/namespaces',
    message: /mount namespace is required/,
  });
  s.linux!.namespaces = [{ type: 'mount' }, { type: 'bogus' as never }];
  t.throws(() => planRoot(s, d), { name: 'SpecError', pointer: '/linux/namespaces/1/type' });
});

t.test('namespaces by path: joined (user first), checked to be of their type, the rest created', async (t) => {
  const d = scratch(t);
  const s = createSpec({ rootfs: d, args: ['/bin/true'], network: 'none' });
  s.linux!.namespaces = [
    { type: 'mount' },
    { type: 'network', path: '/run/netns/a' },
    { type: 'pid' },
    { type: 'user', path: '/proc/9/ns/user' },
  ];
  const types: Record<string, number> = { '/run/netns/a': CLONE.NEWNET, '/proc/9/ns/user': CLONE.NEWUSER };
  const r = planRoot(s, d, (p) => types[p] ?? -2);
  t.same(
    r.joins.map((j) => [j.ns, j.path, j.index]),
    [
      ['user', '/proc/9/ns/user', 3],
      ['network', '/run/netns/a', 1],
    ],
  );
  t.equal(r.cloneFlags, CLONE.NEWNS | CLONE.NEWPID, 'only the others are created');
  t.same([...r.created].sort(), ['mount', 'pid']);
  t.throws(() => planRoot(s, d, (p) => (p === '/run/netns/a' ? CLONE.NEWIPC : types[p])), {
    name: 'SpecError',
    pointer: '/linux/namespaces/1/path',
    message: /\/run\/netns\/a is an ipc namespace, not a network namespace/,
  });
  t.throws(() => planRoot(s, d, (p) => (p === '/run/netns/a' ? -25 : types[p])), {
    pointer: '/linux/namespaces/1/path',
    message: /is not a namespace file/,
  });
  t.throws(() => planRoot(s, d, () => -2), { pointer: '/linux/namespaces/1/path', message: /does not exist/ });
  s.linux!.namespaces.push({ type: 'time' });
  t.ok(planRoot(s, d, (p) => types[p]).created.has('time'), 'time is a namespace like the others');
});

t.test('a mount namespace by path: refused before the path is looked at, whatever it names', async (t) => {
  const d = scratch(t);
  const s = createSpec({ rootfs: d, args: ['/bin/true'] });
  s.linux!.namespaces = [{ type: 'pid' }, { type: 'mount', path: '/run/some-daemon/mnt' }];
  let looked = 0;
  // Even a path the kernel would call a mount namespace (and with no addon to ask at all).
  for (const nsTypeOf of [() => (looked++, CLONE.NEWNS), undefined])
    t.throws(() => planRoot(s, d, nsTypeOf), {
      name: 'SpecError',
      pointer: '/linux/namespaces/1/path',
      message:
        /a mount namespace cannot be joined by path \(\/run\/some-daemon\/mnt\): .*pivot_root would move the root of every process in that namespace/,
    });
  t.equal(looked, 0, 'the path was never opened');
});

t.test('overlay: only when asked or needed; options checked; escaped paths', async (t) => {
  t.same(planOverlay('/r', {}, ['/x/']), {}, 'never by default');
  t.same(planOverlay('/r', { rootOverlay: 'auto' }, []), {}, 'auto without anything to create');
  const o = planOverlay('/a,b:c', { rootOverlay: 'auto', overlaySize: '8m' }, ['/tmp/', '/tmp/x/', '/tmp/']);
  t.equal(o.overlayData, 'lowerdir=/a\\,b\\:c/lower,upperdir=/a\\,b\\:c/upper,workdir=/a\\,b\\:c/work');
  t.equal(o.overlayTmpfsData, 'mode=0755,size=8m');
  t.same(o.overlayPrep, ['/a,b:c/upper/tmp/', '/a,b:c/upper/tmp/x/'], 'each once, in order');
  t.throws(() => planOverlay('/r', { rootOverlay: 'sometimes' as never }, []), {
    name: 'SpecError',
    pointer: '',
    option: 'rootOverlay',
  });
  t.throws(() => planOverlay('/r', { rootOverlay: 'always', overlaySize: 'big' }, []), {
    name: 'SpecError',
    option: 'overlaySize',
  });
});
