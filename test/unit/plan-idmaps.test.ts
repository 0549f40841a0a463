// Stage "id maps" (lib/plan/idmaps.ts): who writes which maps, as whom the setup runs.
import t from 'tap';
import { createSpec } from '../../lib/index.js';
import { planIdMaps } from '../../lib/plan/idmaps.js';
import { IDMAP } from '../../lib/plan/types.js';

const noHelper = () => null;
const helper = (n: string) => `/usr/bin/${n}`;

t.test('a single ID of our own: the child writes it, setgroups denied, groups left', async (t) => {
  const s = createSpec({ rootfs: '/r', args: ['/bin/true'], uid: 1000, gid: 1000 });
  delete s.linux!.uidMappings;
  delete s.linux!.gidMappings;
  const p = planIdMaps(s, true, 1000, 1000, noHelper);
  t.equal(p.idMode, IDMAP.SELF);
  t.equal(p.uidMap, '1000 1000 1\n');
  t.equal(p.setgroupsDeny, true);
  t.equal(p.groups, undefined);
  t.equal(p.setupUid, -1);
  t.equal(p.mapsGid5, false);
});

t.test('ranges: the parent as root, the helpers otherwise; the setup runs as the namespace root', async (t) => {
  const s = createSpec({ rootfs: '/r', args: ['/bin/true'], uid: 0, gid: 0 });
  s.linux!.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
  s.linux!.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
  const root = planIdMaps(s, true, 0, 0, noHelper);
  t.equal(root.idMode, IDMAP.PARENT);
  t.equal(root.setupUid, 0);
  t.equal(root.mapsGid5, true);
  t.same(root.groups, []);
  const user = planIdMaps(s, true, 1000, 1000, helper);
  t.equal(user.idMode, IDMAP.HELPER);
  t.same(user.uidHelperArgs, ['/usr/bin/newuidmap', '0', '200000', '65536']);
  t.throws(() => planIdMaps(s, true, 1000, 1000, noHelper), {
    name: 'SpecError',
    pointer: '/linux/uidMappings',
    message: /newuidmap/,
  });
});

t.test('refusals name the field', async (t) => {
  const s = createSpec({ rootfs: '/r', args: ['/bin/true'], uid: 5 });
  s.linux!.uidMappings = [{ containerID: 0, hostID: 1000, size: 1 }];
  t.throws(() => planIdMaps(s, true, 1000, 1000, noHelper), { name: 'SpecError', pointer: '/process/user/uid' });
  t.throws(() => planIdMaps(s, false, 1000, 1000, noHelper), {
    name: 'SpecError',
    pointer: '/linux/namespaces',
    message: /user namespace is required/,
  });
  const r = planIdMaps(createSpec({ rootfs: '/r', args: ['/bin/true'] }), false, 0, 0, noHelper);
  t.equal(r.idMode, IDMAP.NONE, 'root without a user namespace');
});
