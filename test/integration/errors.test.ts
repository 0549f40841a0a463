// test-runner: serial — compares the whole host mount table before and after
// Bad input: a clear error naming the field or step, and nothing left behind.
import t from 'tap';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerError, SpecError, run } from '../../lib/index.js';
import { hostMounts, openFds, scratch, spec, zombieChildren, type Tap } from '../helpers/env.js';

async function expectNothingLeft(t: Tap, fn: () => Promise<unknown>, want: { name: string; [k: string]: unknown }) {
  const fds = openFds().length;
  const mounts = hostMounts();
  await t.rejects(fn(), want);
  t.equal(openFds().length, fds, 'no fd left');
  t.same(zombieChildren(), [], 'no zombie left');
  t.equal(hostMounts(), mounts, 'no mount left on the host');
}

// The first launch loads the addon and its init memfd (one fd for the process's life).
t.before(async () => {
  await run(spec(['/bin/true']), { stdio: 'ignore' });
});

t.test('rejected before clone, naming the JSON path', async (t) => {
  const cases: [string, () => ReturnType<typeof spec>, RegExp, string][] = [
    [
      'relative mount destination',
      () => spec(['/bin/true'], { mounts: [{ destination: 'data', source: '/tmp', options: ['rbind'] }] }),
      /absolute path/,
      '/mounts/5/destination',
    ],
    [
      'missing rootfs',
      () => ({ ...spec(['/bin/true']), root: { path: '/nonexistent/rootfs' } }),
      /rootfs \/nonexistent\/rootfs is not a directory/,
      '/root/path',
    ],
    [
      'missing bind source',
      () =>
        spec(['/bin/true'], { mounts: [{ destination: '/cvmfs', source: '/cvmfs-nonexistent', options: ['rbind'] }] }),
      /bind source \/cvmfs-nonexistent does not exist/,
      '/mounts/5/source',
    ],
    [
      'overlapping id maps',
      () => {
        const s = spec(['/bin/true'], { uid: 0 });
        s.linux!.uidMappings = [
          { containerID: 0, hostID: 100000, size: 100 },
          { containerID: 50, hostID: 300000, size: 10 },
        ];
        return s;
      },
      /overlaps entry 0/,
      '/linux/uidMappings/1',
    ],
    [
      'unknown namespace type',
      () => {
        const s = spec(['/bin/true']);
        s.linux!.namespaces!.push({ type: 'bogus' as never });
        return s;
      },
      /unknown namespace type "bogus"/,
      '/linux/namespaces/5/type',
    ],
    [
      'executable not in the image',
      () => spec(['no-such-tool']),
      /executable "no-such-tool" not found in the image .* \(searched PATH=/,
      '/process/args/0',
    ],
    [
      'uid not mapped',
      () => {
        const s = spec(['/bin/true'], { uid: 5 });
        s.linux!.uidMappings = [{ containerID: 0, hostID: process.geteuid!(), size: 1 }];
        return s;
      },
      /uid 5 is not in linux.uidMappings/,
      '/process/user/uid',
    ],
    [
      'hostname without uts',
      () => {
        const s = spec(['/bin/true'], { hostname: 'x' });
        s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== 'uts');
        return s;
      },
      /needs a uts namespace/,
      '/hostname',
    ],
    [
      'unknown capability',
      () => {
        const s = spec(['/bin/true']);
        s.process!.capabilities = { bounding: ['CAP_FLY'] };
        return s;
      },
      /unknown capability "CAP_FLY"/,
      '/process/capabilities/bounding/0',
    ],
  ];
  for (const [name, make, message, pointer] of cases) {
    await t.test(name, async (t) => {
      await expectNothingLeft(t, async () => run(make(), { stdio: 'ignore' }), { name: 'SpecError', message, pointer });
    });
  }
});

t.test('a failing step after clone names the step, errno and paths', async (t) => {
  await t.test('mount of an unknown file system type', async (t) => {
    await expectNothingLeft(
      t,
      () =>
        run(spec(['/bin/true'], { mounts: [{ destination: '/x', type: 'nosuchfs', source: 'none' }] }), {
          stdio: 'ignore',
        }),
      {
        name: 'ContainerError',
        step: 'mount',
        code: 'ENODEV',
        message: /^mount nosuchfs on \/x: mount\(2\) ENODEV: no such device/,
      },
    );
  });
  await t.test('exec of a file the kernel cannot run', async (t) => {
    const d = scratch(t);
    const bogus = join(d, 'bogus');
    writeFileSync(bogus, 'not an executable\n');
    chmodSync(bogus, 0o755);
    chmodSync(d, 0o755);
    for (const init of [true, false]) {
      await expectNothingLeft(
        t,
        () =>
          run(spec(['/job/bogus'], { mounts: [{ destination: '/job', source: d, options: ['rbind'] }] }), {
            stdio: 'ignore',
            init,
          }),
        { name: 'ContainerError', step: 'exec', code: 'ENOEXEC', message: /^exec \/job\/bogus: execve\(2\) ENOEXEC/ },
      );
    }
  });
  await t.test('chdir into a directory the payload may not enter', async (t) => {
    const d = scratch(t);
    mkdirSync(join(d, 'closed'), { mode: 0o000 });
    chmodSync(d, 0o755);
    const s = spec(['/bin/true'], { cwd: '/job/closed', uid: 1, gid: 1 });
    s.linux!.uidMappings = [{ containerID: 1, hostID: process.geteuid!(), size: 1 }];
    s.linux!.gidMappings = [{ containerID: 1, hostID: process.getegid!(), size: 1 }];
    s.mounts!.push({ destination: '/job', source: d, options: ['rbind'] });
    s.process!.capabilities = {};
    await expectNothingLeft(t, () => run(s, { stdio: 'ignore' }), {
      name: 'ContainerError',
      step: 'chdir',
      code: 'EACCES',
      message: /chdir \/job\/closed/,
    });
  });
});

t.test('error classes', async (t) => {
  t.ok(new ContainerError('x', { step: 'clone', errno: 1 }).message.includes('hint:'), 'clone EPERM carries a hint');
  t.equal(new SpecError('/a/b', 'bad').message, '/a/b: bad');
});
