// Stage "identity" (lib/singularity/compile/identity.ts): fakeroot id maps and capabilities.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { allCaps, capList, planIdentity, type IdentityInput } from '../../lib/singularity/compile/identity.js';
import { scratch } from '../helpers/env.js';

const base: IdentityInput = {
  fakeroot: false,
  keepPrivs: false,
  euid: 1000,
  egid: 1000,
  hostEnv: {},
  addCaps: [],
  dropCaps: [],
};

t.test('capability names: CAP_X, x, all, comma lists; unknown names the option', async (t) => {
  t.same(capList('net_raw, CAP_CHOWN', '--add-caps'), ['CAP_NET_RAW', 'CAP_CHOWN']);
  t.same(capList(['sys_admin', 'Cap_Kill'], '--drop-caps'), ['CAP_SYS_ADMIN', 'CAP_KILL']);
  t.same(capList(undefined, '--add-caps'), []);
  t.same(capList('all', '--add-caps'), allCaps());
  t.ok(allCaps().includes('CAP_SYS_ADMIN'));
  t.throws(() => capList('nope', '--drop-caps'), { name: 'SpecError', option: '--drop-caps', message: /"nope"/ });
});

t.test('a user keeps no capabilities and the default maps; root only with --keep-privs or --add-caps', async (t) => {
  t.same(planIdentity(base), { infos: [] });
  t.same(planIdentity({ ...base, euid: 0, egid: 0 }), { infos: [] }, 'root without asking: none');
  t.same(
    planIdentity({ ...base, euid: 0, addCaps: ['CAP_NET_RAW', 'CAP_CHOWN'] }).capabilities,
    ['CAP_CHOWN', 'CAP_NET_RAW'],
    'in number order',
  );
  const keep = planIdentity({ ...base, euid: 0, keepPrivs: true, dropCaps: ['CAP_SYS_ADMIN'] });
  t.same(
    keep.capabilities,
    allCaps().filter((c) => c !== 'CAP_SYS_ADMIN'),
  );
  t.same(planIdentity({ ...base, keepPrivs: true }).capabilities, undefined, 'keep-privs is root only');
});

t.test('--fakeroot: 0 -> the caller, 1..N -> both subordinate ranges, else root-mapped with an INFO', async (t) => {
  const d = scratch(t);
  const name = userInfo().username;
  const sub = join(d, 'subuid'),
    subg = join(d, 'subgid');
  writeFileSync(sub, `other:1:2\n${name}:300000:65536\n`);
  writeFileSync(subg, `1000:400000:1000\n`);
  const f = planIdentity({
    ...base,
    fakeroot: true,
    hostEnv: { NODULARITY_SUBUID_FILE: sub, NODULARITY_SUBGID_FILE: subg },
  });
  t.same(f.uidMappings, [
    { containerID: 0, hostID: 1000, size: 1 },
    { containerID: 1, hostID: 300000, size: 65536 },
  ]);
  t.same(f.gidMappings, [
    { containerID: 0, hostID: 1000, size: 1 },
    { containerID: 1, hostID: 400000, size: 1000 },
  ]);
  t.same(f.capabilities, allCaps(), 'the full set of the namespace');
  t.same(f.infos, []);
  const only = planIdentity({
    ...base,
    fakeroot: true,
    hostEnv: { NODULARITY_SUBUID_FILE: sub, NODULARITY_SUBGID_FILE: join(d, 'gone') },
  });
  t.same(only.uidMappings, [{ containerID: 0, hostID: 1000, size: 1 }]);
  t.same(only.infos, [
    `User not listed in ${join(d, 'gone')}, using a root-mapped namespace (only uid 0 exists inside)`,
  ]);
});
