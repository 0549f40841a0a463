// cgroup v2 device rules (issue 17): a BPF_PROG_TYPE_CGROUP_DEVICE program
// assembled from the rules (lib/cgroups/bpf-devices.ts) and attached to the
// container's v2 cgroup (native/bpf_devices.cc). On this hybrid host the
// cgroup2 tree at /sys/fs/cgroup/unified takes it (cgroup BPF needs no
// controller); a host process moved into the cgroup is denied what the rules
// deny (EPERM from open) and allowed what they allow. The host's own /dev is
// untouched: a process outside the cgroup opens everything afterwards.
import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, openSync, closeSync } from 'node:fs';
import { Cgroup, hierarchies } from '../../lib/cgroups/index.js';
import { deviceProgram, effectiveRules } from '../../lib/cgroups/bpf-devices.js';
import { isRoot } from '../helpers/env.js';

const h = hierarchies();
/** Only the v2 tree: the rules must go to the BPF program, not to the v1 devices controller. */
const v2only = { ...h, v1: new Map(), mode: 'unified' as const };
const TAG = `nodularity-bpfdev-${process.pid}`;
let n = 0;

/** Try to open each device read-write from a process inside CG; "ok" or the error code, per path. */
async function opens(cg: Cgroup, paths: string[]): Promise<string[]> {
  // A subshell: a failed redirection of a special builtin ends the shell itself.
  const script = paths.map((p) => `if (: <> ${p}); then echo ok; else echo denied; fi`).join('; ');
  const c = spawn('sh', ['-c', `read go; ${script}`, TAG], { stdio: ['pipe', 'pipe', 'ignore'] });
  cg.addProcess(c.pid!);
  let out = '';
  c.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  c.stdin!.end('go\n');
  await once(c, 'close');
  return out.trim().split('\n');
}

t.test('the program: v1 meaning (an "a" rule resets, exceptions keyed by node), runc-style encoding', async (t) => {
  const r = effectiveRules([
    { allow: true, rule: 'c 1:3 rw' },
    { allow: false, rule: 'a' },
    { allow: true, rule: 'c 1:5 rwm' },
    { allow: false, rule: 'c 1:5 w' },
  ]);
  t.equal(r.defaultAllow, false);
  t.same(
    r.exceptions,
    [{ allow: true, type: 2, major: 1, minor: 5, access: 3 }],
    'what came before the "a" rule is gone; the deny took w off c 1:5 rwm',
  );
  const prog = deviceProgram([{ allow: false, rule: 'a' }]);
  t.equal(prog.length, 8 * 8, 'six loads and the default (mov, exit)');
  t.equal(prog.readUInt8(prog.length - 8), 0x95, 'ends with exit');
  t.equal(prog.readInt32LE(prog.length - 12), 0, 'deny by default');
  // "c 1:3 rw" allowed under deny: type, access (3 insns), major, minor tests, then mov+exit: 8 insns, each
  // jump to the block's end. The access test is "asked for a bit outside the rule" (jne r1, r3).
  const one = deviceProgram([
    { allow: false, rule: 'a' },
    { allow: true, rule: 'c 1:3 rw' },
  ]).subarray(6 * 8, 14 * 8);
  const offs = [0, 1, 2, 3, 4, 5].map((i) => one.readInt16LE(i * 8 + 2));
  t.same(offs, [7, 0, 0, 4, 3, 2], 'each failed test skips the rest of its block');
  t.equal(one.readUInt8(3 * 8), 0x5d, 'an allow exception must hold every bit asked for');
  // "c 1:3 w" denied under allow: the access test is "no bit asked for is in the rule" (jeq r1, 0).
  const den = deviceProgram([
    { allow: true, rule: 'a' },
    { allow: false, rule: 'c 1:3 w' },
  ]).subarray(6 * 8, 14 * 8);
  t.equal(den.readUInt8(3 * 8), 0x15, 'a deny exception fires on any bit asked for');
  t.equal(den.readInt32LE(6 * 8 + 4), 0, 'and denies');
  t.same(deviceProgram([{ allow: true, rule: 'c 1:3 rw' }]), deviceProgram([]), 'allow under allow: nothing to check');
});

t.test('attached to a v2 cgroup: denied what the rules deny, allowed what they allow', async (t) => {
  if (!isRoot) {
    // An unprivileged caller cannot load the program: it is a warning, as
    // rootless runc and crun go without, and no cgroup is made here anyway.
    t.throws(
      () =>
        Cgroup.create({
          id: `${TAG}-${++n}`,
          hierarchies: v2only,
          resources: { devices: [{ allow: false, access: 'rwm' }] },
        }),
      { name: 'CgroupError', code: 'EACCES' },
    );
    return;
  }
  // Exactly the rules given (no default nodes): deny c 1:3 rw, allow the rest.
  const low = Cgroup.create({ id: `${TAG}-${++n}`, hierarchies: v2only });
  t.teardown(() => low.destroy());
  const { loadBinding } = await import('../../lib/native.js');
  const r = loadBinding().attachDeviceProgram(
    low.v2!,
    deviceProgram([
      { allow: true, rule: 'a' },
      { allow: false, rule: 'c 1:3 rw' },
    ]),
  );
  t.same(r, { errno: 0 }, 'loaded and attached');
  t.same(await opens(low, ['/dev/null', '/dev/zero']), ['denied', 'ok'], 'c 1:3 denied, c 1:5 allowed');

  // Through Cgroup.create, as a spec gives them: deny all, then the defaults every container gets.
  const cg = Cgroup.create({
    id: `${TAG}-${++n}`,
    hierarchies: v2only,
    resources: { devices: [{ allow: false, access: 'rwm' }] },
  });
  t.teardown(() => cg.destroy());
  t.same(cg.warnings, [], 'no "not applied" warning');
  t.ok(existsSync('/dev/kmsg'));
  t.same(
    await opens(cg, ['/dev/null', '/dev/zero', '/dev/kmsg']),
    ['ok', 'ok', 'denied'],
    'the default nodes open; /dev/kmsg (c 1:11) is denied',
  );
  const again = Cgroup.create({
    id: `${TAG}-${++n}`,
    hierarchies: v2only,
    resources: {
      devices: [
        { allow: false, access: 'rwm' },
        { allow: true, type: 'c', major: 1, minor: 11, access: 'rw' },
      ],
    },
  });
  t.teardown(() => again.destroy());
  t.same(await opens(again, ['/dev/kmsg']), ['ok'], 'an allow rule opens it');
  // The host is untouched: outside those cgroups everything opens.
  for (const p of ['/dev/null', '/dev/kmsg']) closeSync(openSync(p, 'r+'));
  t.pass('the host still opens /dev/null and /dev/kmsg');
});
