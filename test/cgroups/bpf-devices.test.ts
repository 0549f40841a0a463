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
import { existsSync, openSync, closeSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { Cgroup, hierarchies } from '../../lib/cgroups/index.js';
import { deviceProgram, effectiveRules, type DeviceRule } from '../../lib/cgroups/bpf-devices.js';
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

/**
 * From a process inside each cgroup directory of DIRS, try each redirection of OPS
 * ("< /dev/null" O_RDONLY, "> /dev/null" O_WRONLY, "<> /dev/null" O_RDWR): "ok" or "denied", per op.
 */
async function tries(dirs: string[], ops: string[]): Promise<string[]> {
  const script = ops.map((o) => `if (: ${o}); then echo ok; else echo denied; fi`).join('; ');
  const c = spawn('sh', ['-c', `read go; ${script}`, TAG], { stdio: ['pipe', 'pipe', 'ignore'] });
  for (const d of dirs) writeFileSync(join(d, 'cgroup.procs'), String(c.pid));
  let out = '';
  c.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  c.stdin!.end('go\n');
  await once(c, 'close');
  return out.trim().split('\n');
}

// The reviewer's cases (finding 4), each through the BPF program on v2 and through the v1 devices
// controller with the same rules written in the same order: both refuse and allow the same opens.
const CASES: [string, DeviceRule[], [string, string][]][] = [
  [
    'allow all, deny c 1:3 w',
    [
      { allow: true, rule: 'a' },
      { allow: false, rule: 'c 1:3 w' },
    ],
    [
      ['<> /dev/null', 'denied'],
      ['> /dev/null', 'denied'],
      ['< /dev/null', 'ok'],
      ['<> /dev/zero', 'ok'],
    ],
  ],
  [
    'deny all, allow c 1:3 rw, deny c 1:3 w',
    [
      { allow: false, rule: 'a' },
      { allow: true, rule: 'c 1:3 rw' },
      { allow: false, rule: 'c 1:3 w' },
    ],
    [
      ['< /dev/null', 'ok'],
      ['<> /dev/null', 'denied'],
      ['> /dev/null', 'denied'],
      ['< /dev/zero', 'denied'],
    ],
  ],
];

t.test('a deny rule refuses any access that has a bit of it (O_RDWR against "w"), on v2 as on v1', async (t) => {
  if (!isRoot) {
    // Loading a cgroup device program needs CAP_BPF or CAP_SYS_ADMIN: the kernel's decisions are root's to test.
    // Here: the load is refused, so an unprivileged caller cannot attach a weaker (or any) program either.
    const r = (await import('../../lib/native.js'))
      .loadBinding()
      .attachDeviceProgram(h.v2!.own, deviceProgram(CASES[0][1]));
    t.equal(r.step, 'load');
    t.equal(r.errno, constants.errno.EPERM, 'EPERM from BPF_PROG_LOAD');
    return;
  }
  const { loadBinding } = await import('../../lib/native.js');
  const dev = h.v1.get('devices');
  t.ok(dev, 'this host has the v1 devices controller (the two paths are compared)');
  for (const [name, rules, expect] of CASES) {
    const ops = expect.map(([o]) => o);
    const want = expect.map(([, w]) => w);
    const v2 = Cgroup.create({ id: `${TAG}-${++n}`, hierarchies: v2only });
    t.teardown(() => v2.destroy());
    t.same(loadBinding().attachDeviceProgram(v2.v2!, deviceProgram(rules)), { errno: 0 }, `${name}: attached`);
    t.same(await tries([v2.v2!], ops), want, `v2 (BPF): ${name}: ${ops.join(', ')}`);

    const v1dir = join(dev!.own, `${TAG}-v1-${++n}`);
    mkdirSync(v1dir);
    t.teardown(() => rmdirSync(v1dir));
    for (const r of rules) writeFileSync(join(v1dir, r.allow ? 'devices.allow' : 'devices.deny'), r.rule);
    t.same(await tries([v1dir], ops), want, `v1 (devices controller): ${name}: ${ops.join(', ')}`);
  }

  // As a spec gives them, through Cgroup.create on each path alone: allow all but writing /dev/kmsg (c 1:11).
  const resources = {
    devices: [
      { allow: true, access: 'rwm' },
      { allow: false, type: 'c' as const, major: 1, minor: 11, access: 'w' },
    ],
  };
  const v1only = { ...h, v2: null, v1: new Map([['devices', dev!]]), mode: 'legacy' as const };
  const kmsg = ['< /dev/kmsg', '<> /dev/kmsg', '> /dev/kmsg'];
  for (const [path, hierarchies] of [
    ['v2', v2only],
    ['v1', v1only],
  ] as const) {
    const cg = Cgroup.create({ id: `${TAG}-${++n}`, hierarchies, resources });
    t.teardown(() => cg.destroy());
    const dirs = path === 'v2' ? [cg.v2!] : [cg.v1.get('devices')!];
    t.same(await tries(dirs, kmsg), ['ok', 'denied', 'denied'], `${path}: /dev/kmsg read, not written`);
  }
  for (const p of ['/dev/null', '/dev/kmsg']) closeSync(openSync(p, 'r+'));
  t.pass('the host still opens /dev/null and /dev/kmsg read-write');
});
