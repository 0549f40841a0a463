// Prepared launches (lib/prepared.ts): per-launch changes reach the
// container, what did not change is not planned again (the template's own
// counters, incremented where the planning is done), and a rootfs swapped
// between prepare() and a launch is refused by the child, checked on the host.
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { makeBusyboxRootfs } from '../../scripts/busybox-rootfs.mjs';
import { createSpec, prepare, run, ContainerError, SpecError } from '../../lib/index.js';
import { loadBinding } from '../../lib/native.js';
import { prepareLaunch } from '../../lib/plan/plan.js';
import { hostMounts, openFds, scratch, spec, testRootfs, zombieChildren } from '../helpers/env.js';

const SH = ['/bin/sh', '-c'];

t.test(
  'per-launch args, env, cwd, hostname and binds are what the payload sees; the next launch is the spec again',
  async (t) => {
    const d = scratch(t);
    writeFileSync(join(d, 'file'), 'from the host\n');
    const tpl = prepare(spec([...SH, 'echo default; pwd; hostname'], { hostname: 'spec-host' }));
    t.teardown(() => tpl.close());
    const script = 'echo "$FOO"; pwd; hostname; cat /mnt/x/file; touch /mnt/x/w 2>/dev/null && echo wrote || echo ro';
    const r = await tpl.run({
      args: [...SH, script],
      env: ['PATH=/bin:/usr/bin', 'FOO=bar-42'],
      cwd: '/etc',
      hostname: 'pilot-7',
      binds: [{ source: d, destination: '/mnt/x', readonly: true }],
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.equal(r.exitCode, 0, String(r.stderr));
    t.equal(r.stdout?.toString(), 'bar-42\n/etc\npilot-7\nfrom the host\nro\n');
    t.same(readdirSync(d), ['file'], 'the read-only bind was not written');
    const again = await tpl.run({ stdio: ['ignore', 'pipe', 'pipe'] });
    t.equal(again.exitCode, 0);
    t.equal(again.stdout?.toString(), 'default\n/\nspec-host\n', "the last launch's changes do not stick");
  },
);

t.test('what a launch does not change is not planned again', async (t) => {
  const d = scratch(t);
  const s = spec(['/payload', 'exit', '0']);
  const tpl = prepare(s);
  t.teardown(() => tpl.close());
  t.same(
    tpl.stats,
    { validations: 1, mountPlans: 1, execLookups: 1, launches: 0 },
    'prepare() plans the default launch',
  );
  // The caller's spec is copied: changing it afterwards changes nothing.
  s.process!.args = ['/no/such/binary'];
  for (let i = 0; i < 5; i++) {
    const r = await tpl.run({ args: ['/payload', 'exit', String(i)], env: [`PATH=/bin`, `N=${i}`], stdio: 'ignore' });
    t.equal(r.exitCode, i, `launch ${i}: its own args`);
  }
  t.same(
    tpl.stats,
    { validations: 1, mountPlans: 1, execLookups: 1, launches: 5 },
    'new args and env: nothing re-resolved',
  );
  await tpl.run({ args: ['/bin/true'], stdio: 'ignore' });
  t.equal(tpl.stats.execLookups, 2, 'a new executable is looked up');
  t.equal(tpl.stats.mountPlans, 1, 'the mounts are not');
  const binds = [{ source: d, destination: '/mnt/d' }];
  for (let i = 0; i < 3; i++) t.equal((await tpl.run({ binds, stdio: 'ignore' })).exitCode, 0);
  t.equal(tpl.stats.mountPlans, 2, 'one mount plan for the new binds, reused by the next launches with them');
  t.equal(tpl.stats.validations, 1);
  t.equal(tpl.stats.launches, 9);
});

t.test(
  'a rootfs swapped for a symlink after prepare() is refused by the child (ELOOP), nothing left on the host',
  async (t) => {
    const d = scratch(t);
    const root = join(d, 'rootfs');
    mkdirSync(root);
    makeBusyboxRootfs(root);
    const tpl = prepare(createSpec({ rootfs: root, args: ['/bin/true'] }));
    t.teardown(() => tpl.close());
    t.equal((await tpl.run({ stdio: 'ignore' })).exitCode, 0, 'runs before the swap');
    // The attacker's swap: the rootfs path now reaches the host's / through a symlink.
    renameSync(root, join(d, 'rootfs.orig'));
    symlinkSync('/', root);
    const fds = openFds();
    const mounts = hostMounts();
    const err = await tpl
      .run({ args: [...SH, 'echo escaped > /tmp/nodularity-prepared-canary'], stdio: 'ignore' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    t.type(err, ContainerError, 'the launch fails');
    t.equal((err as ContainerError).code, 'ELOOP', String(err));
    t.equal(hostMounts(), mounts, 'nothing mounted on the host');
    t.same(openFds(), fds, 'no fd left open');
    t.same(zombieChildren(), [], 'no zombie');
    t.notOk(existsSync('/tmp/nodularity-prepared-canary'), 'no canary on the host');
  },
);

t.test(
  'a rootfs directory replaced after prepare() is refused (ESTALE), where an unprepared launch would run it',
  async (t) => {
    const d = scratch(t);
    const root = join(d, 'rootfs');
    mkdirSync(root);
    makeBusyboxRootfs(root);
    const tpl = prepare(createSpec({ rootfs: root, args: ['/bin/true'] }));
    t.teardown(() => tpl.close());
    // Another directory at the same path (a new unpack renamed into place, or an attacker's tree).
    renameSync(root, join(d, 'rootfs.orig'));
    mkdirSync(root);
    makeBusyboxRootfs(root);
    writeFileSync(join(root, 'swapped'), 'the other tree\n');
    const check = [...SH, 'test -e /swapped && echo swapped-tree'];
    const unprepared = await run(createSpec({ rootfs: root, args: check }), { stdio: ['ignore', 'pipe', 'ignore'] });
    t.equal(unprepared.stdout?.toString(), 'swapped-tree\n', 'a plain launch runs whatever the path names now');
    const mounts = hostMounts();
    const err = await tpl.run({ args: check, stdio: ['ignore', 'pipe', 'ignore'] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, ContainerError, 'the prepared launch fails instead');
    t.equal((err as ContainerError).code, 'ESTALE', String(err));
    t.equal(hostMounts(), mounts, 'nothing mounted on the host');
    // The documented way on: a new prepare() of the new tree.
    const fresh = prepare(createSpec({ rootfs: root, args: check }));
    t.teardown(() => fresh.close());
    t.equal((await fresh.run({ stdio: ['ignore', 'pipe', 'ignore'] })).stdout?.toString(), 'swapped-tree\n');
  },
);

t.test('bad per-launch input: one SpecError naming the option, nothing launched, nothing left open', async (t) => {
  const fds = openFds();
  const tpl = prepare(spec(['/bin/true']));
  const bad: [Parameters<typeof tpl.spawn>[0], string][] = [
    [{ args: [] }, 'args'],
    [{ env: ['NOEQUALS'] }, 'env[0]'],
    [{ cwd: 'relative' }, 'cwd'],
    [{ hostname: 'x'.repeat(65) }, 'hostname'],
    [{ binds: [{ source: 'rel/dir' }] }, 'binds[0].source'],
    [{ binds: [{ source: '/no/such/dir/for/nodularity' }] }, 'binds[0]'],
    [{ args: ['/no/such/exe'] }, 'args[0]'],
    [{ init: false } as never, 'init'],
  ];
  for (const [changes, option] of bad) {
    const e = (() => {
      try {
        tpl.spawn({ ...changes, stdio: 'ignore' });
      } catch (e) {
        return e;
      }
    })();
    t.type(e, SpecError, `${JSON.stringify(changes)} is refused`);
    t.equal((e as SpecError).option, option, (e as Error).message);
    t.notMatch((e as Error).message, /\n/, 'one line');
  }
  t.equal(tpl.stats.launches, 0, 'nothing launched');
  tpl.close();
  t.throws(() => tpl.spawn(), /closed: prepare\(\) it again/);
  t.same(openFds(), fds, 'close() released the pinned rootfs');
});

t.test("one launch's hostname does not stay in the plan converted once for the next launches", async (t) => {
  const tpl = prepare(spec(['/bin/hostname']));
  t.teardown(() => tpl.close());
  const out = async (o: Parameters<typeof tpl.run>[0]) =>
    String((await tpl.run({ ...o, stdio: ['ignore', 'pipe', 'ignore'] })).stdout);
  t.equal(await out({ hostname: 'first-launch' }), 'first-launch\n');
  t.equal(await out({}), `${hostname()}\n`, "the spec sets none: the uts namespace keeps the host's name");
  t.equal(tpl.stats.mountPlans, 1);
});

t.test('the addon refuses a hostname override for a plan without a uts namespace of its own', async (t) => {
  const noUts = spec(['/bin/true']);
  noUts.linux!.namespaces = noUts.linux!.namespaces!.filter((n) => n.type !== 'uts');
  const { plan } = prepareLaunch(noUts);
  const binding = loadBinding();
  const compiled = binding.compilePlan(plan);
  const before = hostname();
  t.throws(
    () =>
      binding.spawn(
        compiled,
        ['ignore', 'ignore', 'ignore'],
        () => {},
        () => {},
        {
          override: { hostname: 'not-the-host' },
        },
      ),
    { name: 'TypeError', message: /override\.hostname must be given only to a plan with a new uts namespace/ },
  );
  t.equal(hostname(), before, "the host's hostname is unchanged");
});

t.test(
  'a prepared overlay root: a missing cwd made in the overlay, never in the image, for each new cwd',
  async (t) => {
    const root = testRootfs();
    const tpl = prepare(spec(['/bin/pwd']), { rootOverlay: 'auto' });
    t.teardown(() => tpl.close());
    for (const cwd of ['/nodularity-prepared-a', '/nodularity-prepared-b', '/nodularity-prepared-a']) {
      const r = await tpl.run({ cwd, stdio: ['ignore', 'pipe', 'pipe'] });
      t.equal(r.exitCode, 0, String(r.stderr));
      t.equal(String(r.stdout), `${cwd}\n`);
      t.notOk(existsSync(join(root, cwd)), `${cwd} not created in the image`);
    }
    t.equal(tpl.stats.mountPlans, 3, 'the default and one per new cwd; the repeated cwd reuses its plan');
  },
);
