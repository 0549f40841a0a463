// Stage "mount options" (lib/plan/mount-options.ts).
import t from 'tap';
import { MOUNT_ATTR, MS } from '../../lib/plan/flags.js';
import { parseOptions } from '../../lib/plan/mount-options.js';

t.test('flags for fresh mounts, attributes for binds, data for the rest', async (t) => {
  const o = parseOptions(['rbind', 'ro', 'nosuid', 'rnodev', 'rslave', 'size=1m', 'x-foo'], '/mounts/0/options');
  t.equal(o.bind, true);
  t.equal(o.recursive, true);
  t.equal(o.flags, MS.RDONLY | MS.NOSUID);
  t.equal(o.attrSet, MOUNT_ATTR.RDONLY | MOUNT_ATTR.NOSUID);
  t.equal(o.rattrSet, MOUNT_ATTR.NODEV);
  t.equal(o.propagation, MS.SLAVE);
  t.same(o.data, ['size=1m']);
  t.same(o.notForBind, ['/mounts/0/options/5', 'size=1m']);
});

t.test('the last option wins; atime modes replace each other', async (t) => {
  t.equal(parseOptions(['ro', 'rw'], '').flags & MS.RDONLY, 0);
  const a = parseOptions(['noatime', 'strictatime'], '');
  t.equal(a.attrSet, MOUNT_ATTR.STRICTATIME);
  t.equal(a.attrClr & 0x70, 0x70);
});

t.test('unsupported and malformed options name their pointer', async (t) => {
  t.throws(() => parseOptions(['idmap'], '/mounts/1/options'), {
    name: 'SpecError',
    pointer: '/mounts/1/options/0',
    message: /not supported/,
  });
  t.throws(() => parseOptions([7 as never], '/mounts/1/options'), {
    name: 'SpecError',
    pointer: '/mounts/1/options/0',
  });
});
