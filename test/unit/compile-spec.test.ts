// Stages "spec" and "session" (lib/singularity/compile/spec.ts, session.ts): one Spec, its spawn options, the session files.
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { assembleSpec, spawnOptionsFor, type SpecInput } from '../../lib/singularity/compile/spec.js';
import { attachSession } from '../../lib/singularity/compile/session.js';
import { bind } from '../../lib/singularity/compile/paths.js';
import { openFds, scratch } from '../helpers/env.js';

const input = (rootfs: string): SpecInput => ({
  rootfs,
  args: ['/bin/true'],
  cwd: '/w',
  uid: 1000,
  gid: 1000,
  mounts: [bind('/w', '/w')],
  identity: { infos: [] },
  noMount: new Set(),
});

t.test('a read-only root with the mounts after the defaults; hostname, terminal, caps, maps as asked', async (t) => {
  const r = scratch(t);
  const s = assembleSpec({}, input(r));
  t.equal(s.root!.readonly, true);
  t.equal(s.root!.path, r);
  t.same([s.process!.args, s.process!.cwd, s.process!.user.uid, s.process!.env], [['/bin/true'], '/w', 1000, []]);
  t.same(s.mounts!.at(-1), bind('/w', '/w'));
  t.ok(s.mounts!.some((m) => m.destination === '/sys'));
  t.equal(s.hostname, undefined);
  t.equal(s.process!.terminal, undefined);
  t.equal(s.process!.capabilities?.effective?.length ?? 0, 0);
  t.equal(assembleSpec({ writableTmpfs: true }, input(r)).root!.readonly, false);
  t.equal(assembleSpec({}, { ...input(r), overlayDir: { dir: '/o', readonly: true } }).root!.readonly, true);
  t.equal(assembleSpec({}, { ...input(r), overlayDir: { dir: '/o', readonly: false } }).root!.readonly, false);
  t.notOk(assembleSpec({}, { ...input(r), noMount: new Set(['sys']) }).mounts!.some((m) => m.destination === '/sys'));
  const full = assembleSpec(
    { hostname: 'h', terminal: { rows: 24, columns: 80 } },
    {
      ...input(r),
      identity: {
        infos: [],
        uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
        gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
        capabilities: ['CAP_CHOWN'],
      },
    },
  );
  t.equal(full.hostname, 'h');
  t.same([full.process!.terminal, full.process!.consoleSize], [true, { height: 24, width: 80 }]);
  t.same(full.process!.capabilities, { bounding: ['CAP_CHOWN'], effective: ['CAP_CHOWN'], permitted: ['CAP_CHOWN'] });
  t.same(full.linux!.uidMappings, [{ containerID: 0, hostID: 1000, size: 1 }]);
});

t.test('spawn options: overlay only when needed, the init by default, the caller options passed', async (t) => {
  const o = spawnOptionsFor({ timeout: 5, detached: true }, {});
  t.same(
    [o.rootOverlay, o.init, o.timeout, o.detached, 'overlaySize' in o, 'overlayDir' in o],
    ['auto', true, 5, true, false, false],
  );
  const w = spawnOptionsFor(
    { writableTmpfs: true, init: false },
    { overlaySize: '8m', overlayDir: { dir: '/o', readonly: true } },
  );
  t.same([w.rootOverlay, w.init, w.overlaySize, w.overlayDir], ['always', false, '8m', { dir: '/o', readonly: true }]);
});

t.test('session files bound read-only last, bind sources held open until dispose', async (t) => {
  const r = scratch(t);
  const src = scratch(t);
  const spec = assembleSpec({}, input(r));
  const before = openFds();
  const dispose = attachSession(spec, new Map([['/etc/passwd', 'u:x:1:1::/:/bin/sh\n']]), [
    { source: src, readonly: false },
    { source: '/nonexistent-x', readonly: false },
  ]);
  const last = spec.mounts!.at(-1)!;
  t.equal(last.destination, '/etc/passwd');
  t.same(last.options, ['rbind', 'rslave', 'ro']);
  t.equal(readFileSync(last.source!, 'utf8'), 'u:x:1:1::/:/bin/sh\n');
  t.equal(openFds().length, before.length + 1, 'the one readable source is held');
  dispose();
  t.notOk(existsSync(last.source!), 'the session dir is gone');
  t.same(openFds(), before, 'and the fd closed');
  dispose();
  t.ok(readdirSync(src).length === 0);
});
