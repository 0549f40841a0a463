// Stage "mounts" (lib/singularity/compile/mounts.ts): default and user binds, in mount order.
import t from 'tap';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { planHostMounts, type HostMountsInput } from '../../lib/singularity/compile/mounts.js';
import { scratch } from '../helpers/env.js';

const dests = (ms: { destination: string }[]) => ms.map((m) => m.destination);
const base: HostMountsInput = {
  contain: false,
  scratchDirs: [],
  noMount: new Set(),
  home: { src: '/home/u', dst: '/home/u', noHome: false },
  userBinds: [],
};

t.test('host /tmp, /var/tmp and home, then the binds; covered are the same-path binds', async (t) => {
  const r = planHostMounts({
    ...base,
    userBinds: [
      { source: '/data', destination: '/data', readonly: true },
      { source: '/src', destination: '/elsewhere', readonly: false },
    ],
  });
  t.same(dests(r.mounts), ['/tmp', '/var/tmp', '/home/u', '/data', '/elsewhere']);
  t.same(r.mounts[3], { destination: '/data', source: '/data', type: 'bind', options: ['rbind', 'rslave', 'ro'] });
  t.same([...r.covered].sort(), ['/data', '/home/u', '/tmp', '/var/tmp']);
  t.same(dests(planHostMounts({ ...base, noMount: new Set(['tmp']) }).mounts), ['/home/u']);
});

t.test('contain: tmpfs, or directories made under --workdir (0700); scratch dirs before home', async (t) => {
  const c = planHostMounts({ ...base, contain: true, home: { dst: '/home/u', noHome: false }, scratchDirs: ['/s/x'] });
  t.same(
    c.mounts.map((m) => [m.destination, m.type, m.options?.at(-1)]),
    [
      ['/tmp', 'tmpfs', 'mode=1777'],
      ['/var/tmp', 'tmpfs', 'mode=1777'],
      ['/s/x', 'tmpfs', 'mode=1777'],
      ['/home/u', 'tmpfs', 'mode=0700'],
    ],
  );
  t.same([...c.covered], [], 'nothing of the host');
  const w = scratch(t);
  const d = planHostMounts({
    ...base,
    contain: true,
    workdir: w,
    home: { dst: '/home/u', noHome: false },
    scratchDirs: ['/tmp'],
  });
  t.same(
    d.mounts.map((m) => [m.destination, m.source]),
    [
      ['/var/tmp', join(w, 'var_tmp')],
      ['/tmp', join(w, 'scratch', '_tmp')],
      ['/home/u', join(w, 'home')],
    ],
    'a scratch /tmp takes the place of the default one',
  );
  t.equal(statSync(join(w, 'home')).mode & 0o777, 0o700);
  t.same(dests(planHostMounts({ ...base, contain: true, home: { dst: '/h', noHome: true } }).mounts), [
    '/tmp',
    '/var/tmp',
  ]);
});
