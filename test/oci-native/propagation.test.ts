// linux.rootfsPropagation: the asked propagation is that of the container's
// "/" (and, for the r-forms, of every mount under it), checked from inside in
// /proc/self/mountinfo and by what a mount inside reaches, as runtime-tools'
// runtimetest does; and nothing the container mounts shows on the host, whose
// "/" is shared (systemd and CI make it so), while the root is built and after.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Spec } from '../../lib/index.js';
import { spec, testRootfs } from '../helpers/env.js';
import { capture } from '../helpers/run.js';

type Propagation = NonNullable<NonNullable<Spec['linux']>['rootfsPropagation']>;

/** The optional fields (shared:N master:N unbindable) of the mount at `point`, from a mountinfo text. */
function optional(mountinfo: string, point: string): string[] | undefined {
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f[4] !== point) continue;
    return f.slice(6, f.indexOf('-')).map((x) => x.replace(/:\d+$/, ''));
  }
  return undefined;
}

/** A container as root of its namespaces with CAP_SYS_ADMIN and mount(2) allowed (runtimetest's setup). */
function mounter(script: string, propagation: Propagation): Spec {
  const s = spec(['/bin/sh', '-c', script], { uid: 0, gid: 0, security: { seccomp: 'unconfined' } });
  const caps = s.process!.capabilities!;
  for (const set of ['bounding', 'effective', 'permitted'] as const)
    caps[set] = [...(caps[set] ?? []), 'CAP_SYS_ADMIN'];
  s.linux!.rootfsPropagation = propagation;
  return s;
}

const hostLines = (needle: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(needle));

t.test('the host "/" is shared here, as the leak checks below assume', async (t) => {
  // A private host "/" would make the leak checks pass without the fix.
  t.same(optional(readFileSync('/proc/self/mountinfo', 'utf8'), '/'), ['shared'], 'host / is shared');
});

const EXPECT: Record<Propagation, { root: string[]; proc: string[] }> = {
  // The container's "/" stays a slave of the host's (host mounts still come in) and gets a peer group of its own.
  shared: { root: ['shared', 'master'], proc: [] },
  rshared: { root: ['shared', 'master'], proc: ['shared'] },
  slave: { root: ['master'], proc: [] },
  rslave: { root: ['master'], proc: [] },
  private: { root: [], proc: [] },
  rprivate: { root: [], proc: [] },
  unbindable: { root: ['unbindable'], proc: [] },
  runbindable: { root: ['unbindable'], proc: ['unbindable'] },
};

for (const [p, want] of Object.entries(EXPECT) as [Propagation, (typeof EXPECT)[Propagation]][]) {
  t.test(`rootfsPropagation ${p}: the propagation of / (and /proc) inside`, async (t) => {
    const s = spec(['/bin/cat', '/proc/self/mountinfo']);
    s.linux!.rootfsPropagation = p;
    const r = await capture(s);
    t.equal(r.exitCode, 0, r.err);
    t.same(optional(r.out, '/')?.sort(), [...want.root].sort(), `/ is ${want.root.join('+') || 'private'}`);
    t.same(optional(r.out, '/proc')?.sort(), [...want.proc].sort(), `/proc is ${want.proc.join('+') || 'private'}`);
  });
}

// runtimetest's check: "/" bound recursively onto a directory of itself, then
// a tmpfs mounted inside; a shared "/" exposes it under the bind too.
for (const [p, exposed] of [
  ['shared', true],
  ['rshared', true],
  ['slave', false],
  ['private', false],
] as const) {
  t.test(
    `rootfsPropagation ${p}: a mount inside ${exposed ? 'reaches' : 'does not reach'} a bind of /, never the host`,
    async (t) => {
      const tag = `nodularity-prop-${randomBytes(4).toString('hex')}`;
      const rootfs = testRootfs();
      const before = hostLines(rootfs).length;
      const script = `mount -o rbind / /home && mount -t tmpfs ${tag} /mnt && grep -c ${tag} /proc/self/mountinfo && test -d /proc/1`;
      const r = await capture(mounter(script, p));
      t.equal(r.exitCode, 0, r.err);
      t.equal(
        r.out.trim(),
        exposed ? '2' : '1',
        exposed ? 'the tmpfs at /mnt and /home/mnt' : 'the tmpfs at /mnt only',
      );
      t.same(hostLines(tag), [], 'no mount of the container on the host');
      t.equal(hostLines(rootfs).length, before, 'no mount left under the rootfs on the host');
    },
  );
}

t.test('rootfsPropagation unbindable: / cannot be bound inside', async (t) => {
  const r = await capture(mounter('mount -o rbind / /home 2>&1; echo rc=$?', 'unbindable'));
  t.equal(r.exitCode, 0, r.err);
  t.match(r.out, /Invalid argument/, 'EINVAL, as runtimetest wants');
  t.match(r.out, /rc=[1-9]/);
});
