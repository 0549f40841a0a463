// The payload gets no privilege: no capabilities, no_new_privs, setuid inert.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { gid, isRoot, payloadBinary, scratch, spec, testRootfs, uid } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

t.test('NoNewPrivs 1 and no capabilities at all', async (t) => {
  for (const user of [{}, { uid: 0, gid: 0 }]) {
    const r = await capture(
      spec(['/bin/sh', '-c', 'grep -E "^(NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb))" /proc/self/status'], user),
    );
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

t.test('a setuid-root file in the image gives no privilege (no_new_privs), and would without it', async (t) => {
  // The image is ours, so its files belong to the container's uid 0 (host
  // root in the root pass, this user in the unprivileged one, both mapped to
  // 0): a setuid copy of the payload in it is a real setuid-root program for
  // a process running as uid 1000 inside, as an image's su or ping would be.
  const image = join(scratch(t, 'nodularity-suid-image-'), 'rootfs');
  execFileSync('cp', ['-a', testRootfs(), image]);
  copyFileSync(payloadBinary, join(image, 'suid-payload'));
  chmodSync(join(image, 'suid-payload'), 0o4755);
  const s = createSpec({ rootfs: image, args: ['/suid-payload', 'ids'], uid: 1000, gid: 1000 });
  if (isRoot) {
    s.linux!.uidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
    s.linux!.gidMappings = [{ containerID: 0, hostID: 0, size: 65536 }];
  } else {
    // Two ids are needed (0 owns the file, 1000 runs it): newuidmap and /etc/subuid.
    const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    const start = Number(
      readFileSync('/etc/subuid', 'utf8')
        .split('\n')
        .find((l) => l.startsWith(`${user}:`))!
        .split(':')[1],
    );
    s.linux!.uidMappings = [
      { containerID: 0, hostID: uid, size: 1 },
      { containerID: 1, hostID: start, size: 65536 },
    ];
    s.linux!.gidMappings = [
      { containerID: 0, hostID: gid, size: 1 },
      { containerID: 1, hostID: start, size: 65536 },
    ];
  }
  t.equal(s.process!.noNewPrivileges, true, 'the default spec asks for no_new_privs');
  const r = await capture(s);
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, /^uid=1000 euid=1000 /, 'euid stayed 1000');
  // The control: the same exec with no_new_privs turned off in the spec does
  // become euid 0, so the file is setuid-root as seen inside and what stops it
  // above is no_new_privs (not a nosuid mount or an unmapped owner).
  s.process!.noNewPrivileges = false;
  const control = await capture(s);
  t.equal(control.exitCode, 0, control.err);
  t.match(control.out, /^uid=1000 euid=0 /, 'without no_new_privs the setuid bit works: the check above can fail');
});
