// Stage "cwd" (lib/singularity/compile/cwd.ts): the working directory, as Apptainer picks it.
import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planCwd, type CwdInput } from '../../lib/singularity/compile/cwd.js';
import { bind } from '../../lib/singularity/compile/paths.js';
import { scratch, type Tap } from '../helpers/env.js';

function image(t: Tap): string {
  const r = scratch(t);
  mkdirSync(join(r, 'srv/app'), { recursive: true });
  mkdirSync(join(r, 'etc'));
  writeFileSync(join(r, 'file'), '');
  symlinkSync('/etc', join(r, 'link'));
  return r;
}
const home = { src: '/home/u', dst: '/home/u', noHome: false };

t.test('--pwd: a directory in the container (image or mount), else home with a warning, never made', async (t) => {
  const r = image(t);
  const hostDir = scratch(t);
  mkdirSync(join(hostDir, 'sub'));
  const base: CwdInput = {
    rootfs: r,
    mounts: [bind(hostDir, '/m')],
    covered: new Set(),
    contain: false,
    hostCwd: '/x',
    noMount: new Set(),
    home,
  };
  t.same(planCwd({ ...base, pwd: '/srv/app' }), { cwd: '/srv/app', mounts: [], warnings: [] });
  t.same(planCwd({ ...base, pwd: '/m/sub' }).cwd, '/m/sub', 'inside a bind: the host directory decides');
  t.same(planCwd({ ...base, pwd: '/link' }).cwd, '/link', 'a symlink resolved in the image');
  t.same(planCwd({ ...base, pwd: '/file' }), {
    cwd: '/home/u',
    mounts: [],
    warnings: ['--pwd /file is not a directory in the container: starting in /home/u'],
  });
  t.equal(planCwd({ ...base, pwd: '/m/none', home: { dst: '/h', noHome: true } }).cwd, '/', 'no home: /');
});

t.test(
  'no --pwd: contain -> home; covered host cwd; system dirs from the image; else the host cwd bound',
  async (t) => {
    const r = image(t);
    const base: CwdInput = {
      rootfs: r,
      mounts: [],
      covered: new Set(['/tmp']),
      contain: false,
      hostCwd: '/tmp/job',
      noMount: new Set(),
      home,
    };
    t.same(planCwd({ ...base, contain: true }).cwd, '/home/u');
    t.same(planCwd(base), { cwd: '/tmp/job', mounts: [], warnings: [] }, 'under a same-path bind');
    t.same(planCwd({ ...base, hostCwd: '/etc' }), { cwd: '/etc', mounts: [], warnings: [] }, 'the image has /etc');
    t.equal(planCwd({ ...base, hostCwd: '/usr/share' }).cwd, '/', 'the image has no /usr/share: /, no bind');
    t.same(planCwd({ ...base, hostCwd: '/work/j' }), {
      cwd: '/work/j',
      mounts: [bind('/work/j', '/work/j')],
      warnings: [],
    });
    const noCwd = { ...base, hostCwd: '/srv/app', noMount: new Set(['cwd']) };
    t.same(planCwd(noCwd), { cwd: '/srv/app', mounts: [], warnings: [] }, '--no-mount cwd: the image has it');
    t.equal(planCwd({ ...noCwd, hostCwd: '/work/j', mounts: [bind(scratch(t), '/home/u')] }).cwd, '/home/u');
    t.equal(planCwd({ ...noCwd, hostCwd: '/work/j' }).cwd, '/', 'nor home there');
  },
);
