// Stage "home" (lib/singularity/compile/home.ts): home inside and what backs it.
import t from 'tap';
import { join } from 'node:path';
import { planHome, type HomeInput } from '../../lib/singularity/compile/home.js';
import { scratch } from '../helpers/env.js';

t.test('the caller home, bound when it exists; /root with fakeroot; none when contained or left out', async (t) => {
  const h = scratch(t);
  const base: HomeInput = { contain: false, noMount: new Set(), hostEnv: { HOME: h } };
  t.same(planHome(base), { src: h, dst: h, noHome: false });
  t.same(planHome({ ...base, fakeroot: true }), { src: h, dst: '/root', noHome: false }, 'the host home at /root');
  t.same(planHome({ ...base, contain: true }), { dst: h, noHome: false }, 'contain: fresh home, nothing bound');
  t.same(planHome({ ...base, noHome: true }), { dst: h, noHome: true });
  t.same(planHome({ ...base, noMount: new Set(['home']) }), { dst: h, noHome: true });
  t.same(planHome({ ...base, hostEnv: { HOME: join(h, 'gone') } }), { dst: join(h, 'gone'), noHome: false });
});

t.test('--home SRC[:DST]: checked, absolute, existing', async (t) => {
  const h = scratch(t);
  const base: HomeInput = { contain: true, noMount: new Set(), hostEnv: { HOME: '/nowhere' } };
  t.same(planHome({ ...base, home: `${h}:/home/u` }), { src: h, dst: '/home/u', noHome: false }, 'even with contain');
  t.same(planHome({ ...base, home: h }), { src: h, dst: h, noHome: false });
  t.same(planHome({ ...base, home: h, noHome: true }), { dst: h, noHome: true }, 'checked, then not bound');
  t.throws(() => planHome({ ...base, home: 'rel' }), { name: 'SpecError', option: '--home', message: /absolute/ });
  t.throws(() => planHome({ ...base, home: `${h}:rel` }), {
    name: 'SpecError',
    option: '--home',
    message: /"rel" must be an absolute/,
  });
  t.throws(() => planHome({ ...base, home: join(h, 'gone') }), {
    name: 'SpecError',
    option: '--home',
    message: /does not exist/,
  });
});
