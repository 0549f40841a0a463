// Stage "options" (lib/singularity/compile/options.ts): what needs no image, checked in order and normalized.
import t from 'tap';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkOptions, parseNoMount, parseOverlay, tmpfsSize } from '../../lib/singularity/compile/options.js';
import type { ExecOptions } from '../../lib/singularity/compile/types.js';
import { scratch } from '../helpers/env.js';

const user = { euid: 1000, egid: 1000 };
const root = { euid: 0, egid: 0 };
const check = (o: ExecOptions, ids = user, argv = ['true'], mode: 'exec' | 'run' = 'exec') =>
  checkOptions({ hostEnv: {}, hostCwd: '/', ...o }, argv, mode, ids);

t.test('normalized: contain/cleanenv from containall, ids, fakeroot uid 0, relative bind sources', async (t) => {
  const d = scratch(t);
  mkdirSync(join(d, 'data'));
  const c = check({
    containall: true,
    hostCwd: d,
    binds: ['data:/data:ro'],
    mounts: [`type=bind,source=${d},destination=/m`],
  });
  t.equal(c.contain, true);
  t.equal(c.cleanenv, true);
  t.same([c.euid, c.egid, c.uid, c.gid], [1000, 1000, 1000, 1000]);
  t.same(c.userBinds, [
    { source: join(d, 'data'), destination: '/data', readonly: true },
    { source: d, destination: '/m', readonly: false },
  ]);
  t.same(
    [c.scratchDirs, [...c.noMount], c.overlaySize, c.overlayDir, c.workdir],
    [[], [], undefined, undefined, undefined],
  );
  const f = check({ fakeroot: true, contain: true });
  t.same([f.uid, f.gid, f.contain, f.cleanenv], [0, 0, true, false]);
});

t.test('the first bad option is the one named, one line each', async (t) => {
  const d = scratch(t);
  t.throws(() => check({ pwd: 'rel' }), { name: 'SpecError', option: '--pwd', message: /must be an absolute path/ });
  t.throws(() => check({ workdir: 'rel', network: 'bridge' as never }), { name: 'SpecError', option: '--workdir' });
  t.throws(() => check({ network: 'bridge' as never }), {
    name: 'SpecError',
    option: '--network',
    message: /host or none/,
  });
  t.throws(() => check({}, user, []), { name: 'SpecError', option: 'command', message: /exec needs a command/ });
  t.doesNotThrow(() => check({}, user, [], 'run'), 'run needs no command');
  t.throws(() => check({ scratch: ['/ok', 'x'] }), { name: 'SpecError', option: '--scratch[1]' });
  t.throws(() => check({ noMount: ['proc'] }), { name: 'SpecError', option: '--no-mount', message: /its own \/proc/ });
  t.throws(() => check({ writableTmpfsSize: '-1' }), { name: 'SpecError', option: '--writable-tmpfs-size' });
  t.throws(() => check({ addCaps: 'CAP_NOPE' }), {
    name: 'SpecError',
    option: '--add-caps',
    message: /unknown capability "CAP_NOPE"/,
  });
  t.throws(() => check({ addCaps: 'net_raw' }), {
    name: 'SpecError',
    option: '--add-caps',
    message: /only root or --fakeroot/,
  });
  t.throws(() => check({ keepPrivs: true }), { name: 'SpecError', option: '--keep-privs' });
  t.same(check({ addCaps: 'net_raw,CAP_CHOWN', dropCaps: ['sys_admin'] }, root).addCaps, ['CAP_NET_RAW', 'CAP_CHOWN']);
  t.same(check({ addCaps: 'net_raw', fakeroot: true }).addCaps, ['CAP_NET_RAW'], 'fakeroot may add');
  t.throws(() => check({ workdir: join(d, 'none') }), {
    name: 'SpecError',
    option: '--workdir',
    message: /does not exist \(ENOENT\)/,
  });
  writeFileSync(join(d, 'file'), '');
  t.throws(() => check({ workdir: join(d, 'file') }), {
    name: 'SpecError',
    option: '--workdir',
    message: /is not a directory/,
  });
  t.equal(check({ workdir: d }).workdir, d);
  t.throws(() => check({ binds: [join(d, 'gone')] }), {
    option: '--bind',
    message: new RegExp(`bind source ${join(d, 'gone')} does not exist \\(ENOENT\\)$`),
  });
  t.throws(() => check({ binds: ['/cvmfs/nope.example.org'] }), {
    option: '--bind',
    message: /is the repository nope\.example\.org spelled right/,
  });
  t.throws(() => check({ envFile: join(d, 'gone'), binds: [join(d, 'gone')] }), {
    name: 'SpecError',
    option: '--env-file',
  });
});

t.test('host env: APPTAINERENV_ warnings start the list', async (t) => {
  const c = check({ hostEnv: { APPTAINERENV_HOME: '/x' } });
  t.match(c.warnings, [/Overriding HOME environment variable with APPTAINERENV_HOME is not permitted/]);
  t.same(c.envOption, new Map());
  t.same(check({ env: ['A=1'] }).envOption, new Map([['A', '1']]));
});

t.test('--no-mount, the tmpfs size and --overlay parse on their own', async (t) => {
  t.same([...parseNoMount(['tmp,home', ' /etc/hosts '])], ['tmp', 'home', '/etc/hosts']);
  t.throws(() => parseNoMount(['nope']), {
    name: 'SpecError',
    option: '--no-mount',
    message: /expected one of home, tmp/,
  });
  t.same([tmpfsSize(undefined), tmpfsSize(64), tmpfsSize(' 2G ')], [undefined, '64m', '2g']);
  t.throws(() => tmpfsSize('0'), { name: 'SpecError', option: '--writable-tmpfs-size' });
  const d = scratch(t);
  t.equal(parseOverlay(undefined, d), undefined);
  mkdirSync(join(d, 'ov'));
  t.same(parseOverlay('ov:rw', d), { dir: join(d, 'ov'), readonly: false }, 'relative to the cwd; upper and work made');
  t.ok(statSync(join(d, 'ov/work')).isDirectory());
  t.throws(() => parseOverlay(join(d, 'none'), d), {
    name: 'SpecError',
    option: '--overlay',
    message: /not usable \(ENOENT\)/,
  });
  t.throws(() => parseOverlay(['a', 'b'], d), {
    name: 'SpecError',
    option: '--overlay',
    message: /one overlay directory/,
  });
  t.throws(() => parseOverlay(':ro', d), { name: 'SpecError', option: '--overlay', message: /needs a directory/ });
});
