// Who the payload is, inside and outside.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { spawn } from '../../lib/index.js';
import { gid, isRoot, spec, uid } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

t.test('by default the user inside is the user outside', async (t) => {
  const r = await capture(spec(['/payload', 'ids']));
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, `uid=${uid} euid=${uid} gid=${gid} egid=${gid}`);
});

t.test('uid 0 inside maps to the caller outside', async (t) => {
  const c = spawn(spec(['/bin/sh', '-c', 'id -u; id -g; cat /proc/self/uid_map; sleep 5'], { uid: 0, gid: 0 }), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  c.stdout!.on('data', (d) => (out += d));
  await c.spawned;
  // Outside: every process of the container runs as the caller.
  await new Promise((r) => setTimeout(r, 300));
  const children = execFileSync('ps', ['-o', 'uid=', '--ppid', String(c.pid)], { encoding: 'utf8' })
    .trim()
    .split(/\s+/);
  const initUid = readFileSync(`/proc/${c.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1];
  c.kill('SIGKILL');
  await c.exited;
  t.equal(Number(initUid), uid, 'init runs as the caller on the host');
  t.same(children.map(Number), [uid], 'payload runs as the caller on the host');
  t.match(out, /^0\n0\n\s+0\s+\d+\s+1\n/, 'root inside, single-ID map');
  t.match(out, new RegExp(`\\s+0\\s+${uid}\\s+1`));
});

t.test('ranges of ids', async (t) => {
  const s = spec(['/bin/sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; id -u; id -G'], {
    uid: 1000,
    gid: 1000,
  });
  if (isRoot) {
    // Root maps ranges written by the parent, and sets supplementary groups.
    s.linux!.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.linux!.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    s.process!.user.additionalGids = [10, 20];
    const r = await capture(s);
    t.equal(r.exitCode, 0, r.err);
    t.match(r.out, /^\s+0\s+100000\s+65536\n\s+0\s+100000\s+65536\n1000\n1000 10 20\n$/);
  } else {
    // Unprivileged: through newuidmap/newgidmap and /etc/subuid (scripts/test-user.sh gives 200000:65536).
    const user = execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    const line = readFileSync('/etc/subuid', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${user}:`));
    t.ok(line, `/etc/subuid has a range for ${user}`);
    const [, start] = line!.split(':');
    s.linux!.uidMappings = [
      { containerID: 0, hostID: uid, size: 1 },
      { containerID: 1, hostID: Number(start), size: 65536 },
    ];
    s.linux!.gidMappings = [
      { containerID: 0, hostID: gid, size: 1 },
      { containerID: 1, hostID: Number(start), size: 65536 },
    ];
    const r = await capture(s);
    t.equal(r.exitCode, 0, r.err);
    t.match(r.out, new RegExp(`^\\s+0\\s+${uid}\\s+1\\n\\s+1\\s+${start}\\s+65536\\n`));
    t.match(r.out, /\n1000\n1000\n$/);
    // A range outside /etc/subuid is refused by newuidmap, reported with its words.
    s.linux!.uidMappings = [
      { containerID: 0, hostID: uid, size: 1 },
      { containerID: 1, hostID: 5000000, size: 2000 },
    ];
    await t.rejects(capture(s), { name: 'ContainerError', step: 'id-map-helper', message: /newuidmap/ });
  }
});
