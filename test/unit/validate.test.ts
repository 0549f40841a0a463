import t from 'tap';
import { SpecError, validateSpec, createSpec } from '../../lib/index.js';

const base = () => createSpec({ rootfs: '/nonexistent', args: ['/bin/true'] });

function pointerOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof SpecError) return e.pointer;
    throw e;
  }
  return undefined;
}

t.test('a default spec is valid', async (t) => {
  t.doesNotThrow(() => validateSpec(base()));
});

t.test('each structural fault names its JSON pointer', async (t) => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each case breaks the spec's shape on purpose
  const cases: [string, (s: any) => void, string][] = [
    ['missing ociVersion', (s) => delete s.ociVersion, '/ociVersion'],
    ['empty args', (s) => (s.process.args = []), '/process/args'],
    ['relative cwd', (s) => (s.process.cwd = 'tmp'), '/process/cwd'],
    ['env without =', (s) => (s.process.env = ['PATH=/bin', 'BROKEN']), '/process/env/1'],
    [
      'relative mount destination',
      (s) => s.mounts.push({ destination: 'data', source: '/tmp', options: ['rbind'] }),
      `/mounts/5/destination`,
    ],
    ['unknown namespace type', (s) => s.linux.namespaces.push({ type: 'bogus' }), '/linux/namespaces/5/type'],
    ['namespace listed twice', (s) => s.linux.namespaces.push({ type: 'pid' }), '/linux/namespaces/5'],
    ['a relative namespace path', (s) => (s.linux.namespaces[2].path = 'proc/1/ns/pid'), '/linux/namespaces/2/path'],
    [
      'a namespace path with a NUL byte',
      (s) => (s.linux.namespaces.find((n: { type: string }) => n.type === 'mount').path = '/proc/1/ns/mnt\0'),
      '/linux/namespaces/1/path',
    ],
    [
      'overlapping uid maps',
      (s) =>
        (s.linux.uidMappings = [
          { containerID: 0, hostID: 1000, size: 10 },
          { containerID: 5, hostID: 5000, size: 10 },
        ]),
      '/linux/uidMappings/1',
    ],
    [
      'overlapping host ids',
      (s) =>
        (s.linux.gidMappings = [
          { containerID: 0, hostID: 1000, size: 10 },
          { containerID: 100, hostID: 1005, size: 1 },
        ]),
      '/linux/gidMappings/1',
    ],
    [
      'zero-size map',
      (s) => (s.linux.uidMappings = [{ containerID: 0, hostID: 1000, size: 0 }]),
      '/linux/uidMappings/0/size',
    ],
    [
      'soft > hard rlimit',
      (s) => (s.process.rlimits = [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 5 }]),
      '/process/rlimits/0',
    ],
    ['bad propagation', (s) => (s.linux.rootfsPropagation = 'sideways'), '/linux/rootfsPropagation'],
    ['unknown capability set', (s) => (s.process.capabilities = { mighty: [] }), '/process/capabilities/mighty'],
    ['relative masked path', (s) => (s.linux.maskedPaths = ['proc/kcore']), '/linux/maskedPaths/0'],
  ];
  for (const [name, mutate, ptr] of cases) {
    const s = base();
    mutate(s);
    t.equal(
      pointerOf(() => validateSpec(s)),
      ptr,
      name,
    );
  }
});
