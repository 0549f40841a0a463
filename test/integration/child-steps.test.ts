// The child's steps as the plan drives them: the rootfs is the directory the
// launcher opened, each failure names its own call, the overlay's upper
// layer keeps the image's modes.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Container } from '../../lib/container.js';
import { ContainerError } from '../../lib/errors.js';
import { loadBinding } from '../../lib/native.js';
import { OP, prepareLaunch } from '../../lib/plan/plan.js';
import { hostMounts, scratch, spec, testRootfs } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

/** Launch a prepared plan (possibly edited after planning) and return the launch error, if any. */
async function launchError(prepared: ReturnType<typeof prepareLaunch>): Promise<ContainerError | undefined> {
  const c = new Container(prepared, { stdio: 'ignore' });
  try {
    await c.exited;
    return undefined;
  } catch (e) {
    return e as ContainerError;
  }
}

t.test('an overlay root keeps the mode of the image directories it recreates in the upper layer', async (t) => {
  // /tmp/x is missing in the image: the overlay's upper layer gets /tmp/ and
  // /tmp/x/. Made 0755, the upper /tmp would hide the image's 1777 one.
  const mounts = [{ destination: '/tmp/x', type: 'tmpfs', source: 'tmpfs', options: ['mode=0755'] }];
  const r = await capture(spec(['/bin/stat', '-c', '%a %n', '/tmp', '/tmp/x', '/root'], { mounts }), {
    rootOverlay: 'always',
  });
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, /^1777 \/tmp$/m, "the image's /tmp mode, sticky bit included");
  t.match(r.out, /^755 \/tmp\/x$/m);
});

t.test('a rootfs path that became a symlink is not followed by the child', async (t) => {
  const d = scratch(t);
  const link = join(d, 'root-link');
  symlinkSync(testRootfs(), link);
  const prepared = prepareLaunch(spec(['/bin/true']));
  // The planner resolved the rootfs; a path that reaches it through a symlink
  // now (a swapped component) must not be walked by the child.
  prepared.plan.rootfs = link;
  const mounts = hostMounts();
  const err = await launchError(prepared);
  t.ok(err, 'the launch fails');
  t.equal(err?.step, 'bind-rootfs');
  t.equal(err?.code, 'ELOOP');
  t.equal(hostMounts(), mounts, 'nothing mounted on the host');
});

t.test('a mount point that cannot be split into parent and name names its own call', async (t) => {
  const prepared = prepareLaunch(spec(['/bin/true']));
  prepared.plan.ops.push({ kind: OP.MKDIR, target: '/', mode: 0o755 });
  const err = await launchError(prepared);
  t.equal(err?.step, 'mount');
  t.equal(err?.code, 'EINVAL');
  t.equal(err?.syscall, 'split-path', 'not reported as mount(2)');
});

t.test('a missing masked path is skipped because the plan says so, not by native policy', async (t) => {
  const d = scratch(t);
  mkdirSync(join(d, 'x'));
  const prepared = prepareLaunch(spec(['/bin/true']));
  prepared.plan.ops.push({
    kind: OP.MASK,
    source: '/dev/null',
    target: '/no/such/path',
    resolve: 1,
    skipMissing: true,
  });
  t.equal(await launchError(prepared), undefined, 'skipped');
  const strict = prepareLaunch(spec(['/bin/true']));
  strict.plan.ops.push({ kind: OP.MASK, source: '/dev/null', target: '/no/such/path', resolve: 1 });
  const err = await launchError(strict);
  t.equal(err?.code, 'ENOENT', 'without skipMissing a missing target fails');
  t.equal(err?.syscall, 'openat2');
});

t.test('a failure of the addon before clone is a ContainerError, not a plain Error', async (t) => {
  const d = scratch(t);
  const gone = join(d, 'gone');
  mkdirSync(gone);
  const prepared = prepareLaunch(spec(['/bin/true']));
  prepared.plan.rootfs = gone + '-removed';
  const mounts = hostMounts();
  t.throws(() => new Container(prepared, { stdio: 'ignore' }), {
    name: 'ContainerError',
    step: 'prepare',
    code: 'ENOENT',
    syscall: 'open',
    path: gone + '-removed',
  });
  t.equal(hostMounts(), mounts);
});

t.test('openInRoot refusals are ContainerErrors with the errno name as code', async (t) => {
  const binding = loadBinding();
  t.throws(() => binding.openInRoot(testRootfs(), '/no/such/file'), {
    name: 'ContainerError',
    step: 'open-in-root',
    code: 'ENOENT',
    syscall: 'openat2',
    path: '/no/such/file',
  });
  t.throws(() => binding.openInRoot(testRootfs(), '/etc'), { name: 'ContainerError', code: 'EISDIR' });
  const d = scratch(t);
  execFileSync('mkfifo', [join(d, 'fifo')]);
  t.throws(() => binding.openInRoot(d, '/fifo'), {
    name: 'ContainerError',
    code: 'EINVAL',
    message: /^not a regular file: \/fifo in /,
  });
});

t.test('plan_from_js: defaults for missing keys, types checked, 64-bit values lossless', async (t) => {
  // A plan without noNewPrivileges gets plan.h's default (on), not 0.
  const prepared = prepareLaunch(spec(['/bin/grep', 'NoNewPrivs', '/proc/self/status']));
  delete (prepared.plan as Partial<typeof prepared.plan>).noNewPrivileges;
  const c = new Container(prepared, { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  c.stdout!.on('data', (d) => {
    out += d;
  });
  await new Promise((r) => c.once('close', r));
  t.match(out, /NoNewPrivs:\s+1/, 'no_new_privs set by default');
  const bad = (edit: (p: Record<string, unknown>) => void) => {
    const p = prepareLaunch(spec(['/bin/true']));
    edit(p.plan as unknown as Record<string, unknown>);
    return () => new Container(p, { stdio: 'ignore' });
  };
  t.throws(
    bad((p) => {
      p.loopback = 'yes';
    }),
    { name: 'TypeError', message: 'plan.loopback must be a boolean' },
  );
  t.throws(
    bad((p) => {
      p.capBounding = 1n << 70n;
    }),
    { name: 'TypeError', message: /plan.capBounding must be a bigint between 0 and 2\^64-1/ },
  );
  t.throws(
    bad((p) => {
      p.capBounding = -1n;
    }),
    { name: 'TypeError', message: /plan.capBounding/ },
  );
  t.throws(
    bad((p) => {
      p.rootPropagation = 1.5;
    }),
    { name: 'TypeError', message: 'plan.rootPropagation must be a non-negative integer' },
  );
});
