// --security on the Apptainer verbs, through the built CLI as a pilot runs
// it: seccomp:FILE applies the file's profile (OCI or Docker format),
// seccomp:unconfined turns the default filter off, seccomp:docker-default
// loads Podman's copy of Docker's profile, and every bad value is one line
// naming the flag or the file (and the field inside it).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { constants as osc } from 'node:os';
import { join } from 'node:path';
import { createSpec } from '../../lib/index.js';
import { isRoot, scratch, testRootfs, type Tap } from '../helpers/env.js';
import { bare, binPath, cli, requireBuiltCli, type CliResult } from '../hostile/fixtures.js';

t.before(() => requireBuiltCli());

function oneLine(t: Tap, r: CliResult, re: RegExp, what: string): void {
  t.equal(r.code, 255, `${what}: exit status 255 (stderr: ${r.err})`);
  t.notMatch(r.err, /^\s+at /m, `${what}: no stack trace`);
  t.match(r.err, /^(nodularity: |FATAL: {3})[^\n]+\n$/, `${what}: exactly one line: ${JSON.stringify(r.err)}`);
  t.match(r.err, re, what);
}

t.test('the default filter, seccomp:unconfined and seccomp:docker-default', async (t) => {
  const rootfs = testRootfs();
  const grep = ['/bin/grep', '^Seccomp:', '/proc/self/status'];
  const d = cli(['exec', rootfs, ...grep]);
  t.equal(d.code, 0, d.err);
  t.match(d.out, /Seccomp:\s+2/, 'a filter by default');
  const dd = cli(['exec', rootfs, '/payload', 'trysys', 'bpf', 'keyctl']);
  t.equal(
    dd.out,
    `bpf=${osc.errno.EPERM}\nkeyctl=${osc.errno.ENOSYS}\n`,
    'the default profile refuses bpf (EPERM) and keyctl (ENOSYS)',
  );
  const u = cli(['exec', '--security', 'seccomp:unconfined', rootfs, ...grep]);
  t.equal(u.code, 0, u.err);
  t.match(u.out, /Seccomp:\s+0/, 'seccomp:unconfined: no filter');
  const dk = cli(['exec', '--security', 'seccomp:docker-default', rootfs, ...grep]);
  t.equal(dk.code, 0, dk.err);
  t.match(dk.out, /Seccomp:\s+2/, 'seccomp:docker-default');
});

t.test('--security seccomp:FILE applies the file (OCI and Docker format); the last one wins', async (t) => {
  const dir = scratch(t);
  const oci = join(dir, 'oci.json');
  writeFileSync(
    oci,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 42 }],
    }),
  );
  const docker = join(dir, 'docker.json');
  writeFileSync(
    docker,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      archMap: [
        { architecture: 'SCMP_ARCH_X86_64', subArchitectures: [] },
        { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: [] },
      ],
      syscalls: [
        { names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 43, comment: 'applies' },
        { names: ['umask'], action: 'SCMP_ACT_ERRNO', errnoRet: 44, includes: { caps: ['CAP_SYS_ADMIN'] } },
      ],
    }),
  );
  const r = cli(['exec', '--security', `seccomp:${oci}`, testRootfs(), '/payload', 'trysys', 'getppid', 'keyctl']);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, 'getppid=42\nkeyctl=0\n', "the file's rule, and nothing of the default profile");
  const d = cli([
    'exec',
    '--security',
    `seccomp:${oci}`,
    '--security',
    `seccomp:${docker}`,
    testRootfs(),
    '/payload',
    'trysys',
    'getppid',
    'umask',
  ]);
  t.equal(d.code, 0, d.err);
  t.equal(d.out, 'getppid=43\numask=0\n', 'Docker format: a rule for a capability the container lacks is left out');
  const kill = join(dir, 'kill.json');
  writeFileSync(
    kill,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['getppid'], action: 'SCMP_ACT_KILL_PROCESS' }],
    }),
  );
  const k = cli(['exec', '--security', `seccomp:${kill}`, testRootfs(), '/payload', 'trysys', 'getppid']);
  t.equal(k.code, 128 + osc.signals.SIGSYS, 'KILL_PROCESS: the CLI exits 128+SIGSYS, as Apptainer reports a signal');
  t.equal(k.out, '', 'the call never returned');
  const unknown = join(dir, 'unknown.json');
  writeFileSync(
    unknown,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['getppid', 'frobnicate_xyz'], action: 'SCMP_ACT_ERRNO', errnoRet: 42 }],
    }),
  );
  const w = cli(['exec', '--security', `seccomp:${unknown}`, testRootfs(), '/payload', 'trysys', 'getppid']);
  t.equal(w.out, 'getppid=42\n');
  t.match(
    w.err,
    /^WARNING: \/linux\/seccomp: ignoring syscall names libseccomp [\d.]+ does not know: frobnicate_xyz\n$/,
    'one warning line for the unknown name',
  );
});

t.test('bad --security values: one line naming the flag or the file', async (t) => {
  const dir = scratch(t);
  const rootfs = testRootfs();
  const bad = join(dir, 'bad.json');
  writeFileSync(
    bad,
    JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['getppid'], action: 'SCMP_ACT_SOMETIMES' }],
    }),
  );
  const invalid = join(dir, 'invalid.json');
  writeFileSync(invalid, '{"defaultAction": ');
  const arch = join(dir, 'arch.json');
  writeFileSync(arch, JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_Z80'] }));
  const cases: [string, RegExp][] = [
    [
      `seccomp:${join(dir, 'missing.json')}`,
      /^FATAL: {3}--security: cannot read the seccomp profile .*missing\.json \(ENOENT\)/,
    ],
    [`seccomp:${dir}`, /^FATAL: {3}--security: cannot read the seccomp profile .* \(EISDIR\)/],
    [`seccomp:${invalid}`, /^FATAL: {3}--security: the seccomp profile .*invalid\.json is not valid JSON/],
    [`seccomp:${bad}`, /^FATAL: {3}.*bad\.json#\/syscalls\/0\/action: unknown action "SCMP_ACT_SOMETIMES"/],
    [`seccomp:${arch}`, /^FATAL: {3}.*arch\.json#\/architectures\/0: unknown architecture "SCMP_ARCH_Z80"/],
    ['seccomp:', /^FATAL: {3}--security: "seccomp:": seccomp: needs a profile file/],
    ['apparmor:unconfined', /^FATAL: {3}--security: "apparmor:unconfined": apparmor: is not supported by nodularity/],
    ['selinux:foo', /^FATAL: {3}--security: "selinux:foo": selinux: is not supported/],
    ['uid:0', /^FATAL: {3}--security: "uid:0": uid: is not supported/],
    ['sandbox', /^FATAL: {3}--security: "sandbox" is not a security option/],
  ];
  for (const [value, re] of cases)
    oneLine(t, cli(['exec', '--security', value, rootfs, '/bin/true']), re, `--security ${value}`);
});

t.test('seccomp:docker-default without the package: one line naming the file', async (t) => {
  // The file hidden under an empty tmpfs in a mount namespace of our own
  // (a user namespace too when unprivileged); nothing of the host changes.
  const sq = (x: string) => `'${x.replace(/'/g, `'\\''`)}'`;
  const cmd = `mount -t tmpfs none /usr/share/containers && exec ${sq(binPath)} exec --security seccomp:docker-default ${sq(testRootfs())} /bin/true`;
  const r = spawnSync(
    ...bare(['unshare', ...(isRoot ? [] : ['-r']), '-m', '--propagation', 'private', '/bin/sh', '-c', cmd]),
    { encoding: 'utf8', timeout: 60_000 },
  );
  oneLine(
    t,
    { code: r.status, signal: r.signal, out: r.stdout, err: r.stderr },
    /^FATAL: {3}--security: docker-default needs \/usr\/share\/containers\/seccomp\.json \(Debian package golang-github-containers-common\): ENOENT/,
    'missing profile',
  );
});

t.test("run-bundle: config.json's linux.seccomp is applied exactly, and a bad one names the field", async (t) => {
  const dir = scratch(t);
  const spec = createSpec({
    rootfs: testRootfs(),
    args: ['/bin/sh', '-c', 'grep ^Seccomp: /proc/self/status; /payload trysys getppid keyctl'],
  });
  spec.linux!.seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 42 }],
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  const r = cli(['run-bundle', dir]);
  t.equal(r.code, 0, r.err);
  t.equal(
    r.out,
    'Seccomp:\t2\ngetppid=42\nkeyctl=0\n',
    "only the bundle's rule: keyctl is allowed, not the default profile's EPERM",
  );
  spec.linux!.seccomp.syscalls![0].args = [{ index: 0, value: 1, op: 'SCMP_CMP_SOMEWHAT' as never }];
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec));
  oneLine(
    t,
    cli(['run-bundle', dir]),
    /^nodularity: \/linux\/seccomp\/syscalls\/0\/args\/0\/op: unknown operator "SCMP_CMP_SOMEWHAT"/,
    'bad operator',
  );
});
