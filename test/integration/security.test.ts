// The payload gets no privilege: no capabilities, no_new_privs, setuid inert.
import t from 'tap';
import { existsSync } from 'node:fs';
import { isRoot, spec, uid } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

t.test('NoNewPrivs 1 and no capabilities at all', async (t) => {
  for (const user of [{}, { uid: 0, gid: 0 }]) {
    const r = await capture(spec(['/bin/sh', '-c', 'grep -E "^(NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb))" /proc/self/status'], user));
    t.equal(r.exitCode, 0, r.err);
    t.match(r.out, /NoNewPrivs:\s+1/);
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'])
      t.match(r.out, new RegExp(`${set}:\\s+0000000000000000`), `${set} empty as ${JSON.stringify(user)}`);
  }
});

t.test('capabilities the spec keeps are kept (and only those)', async (t) => {
  const s = spec(['/bin/sh', '-c', 'grep -E "^Cap(Prm|Eff|Bnd)" /proc/self/status'], { uid: 0, gid: 0 });
  s.process!.capabilities = { bounding: ['CAP_CHOWN', 'CAP_KILL'], permitted: ['CAP_CHOWN'], effective: ['CAP_CHOWN'] };
  const r = await capture(s);
  t.match(r.out, /CapPrm:\s+0000000000000001/);
  t.match(r.out, /CapEff:\s+0000000000000001/);
  t.match(r.out, /CapBnd:\s+0000000000000021/);
});

t.test('a setuid-root binary gives no privilege', async (t) => {
  const suid = process.env.NODULARITY_TEST_SUID_PAYLOAD;
  t.ok(suid && existsSync(suid), 'test/run.mjs provides a setuid-root payload (NODULARITY_TEST_SUID_PAYLOAD)');
  if (!suid) return;
  // Bound with `suid` on purpose: nosuid is not what stops it.
  const mounts = [{ destination: '/suid-payload', source: suid, options: ['bind', 'suid'] }];
  const s = spec(['/suid-payload', 'ids'], { mounts, uid: isRoot ? 1000 : uid, gid: isRoot ? 1000 : undefined });
  if (isRoot) {
    s.linux!.uidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
    s.linux!.gidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
  }
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  const expect = isRoot ? 1000 : uid;
  t.match(r.out, `uid=${expect} euid=${expect}`, 'euid did not become 0');
});

t.test('a process inside cannot regain privileges by exec of a file with caps or setuid in the image', async (t) => {
  // With no_new_privs the kernel refuses the gain: busybox su (setuid-aware) cannot switch user.
  const r = await capture(spec(['/bin/sh', '-c', 'su -c id nobody 2>&1; echo rc=$?']));
  t.match(r.out, /rc=[1-9]/);
});
