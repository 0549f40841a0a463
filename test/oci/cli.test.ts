// nodularity-oci's command line as runc's clients see it: version, features,
// spec, the refusals, and runc's error lines and exit status for a missing
// container (containerd and Podman match "does not exist"; the shim reads the
// last {"level":"error"} line of the --log file).
import t from 'tap';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SECCOMP_ACTIONS, SECCOMP_ARCHES, SECCOMP_OPERATORS } from '../../lib/seccomp/types.js';
import { scratch, uid } from '../helpers/env.js';
import { OCI_BIN, oci, runCmd } from './helpers.js';

t.test('--version: runc-like lines, the spec version this runtime follows', async (t) => {
  const r = await runCmd([OCI_BIN, '--version']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /^nodularity-oci version \d+\.\d+\.\d+\nspec: 1\.2\.0\n$/);
  const same = await runCmd([join(OCI_BIN, '..', 'nodularity'), 'oci', '--version']);
  t.equal(same.out, r.out, '`nodularity oci` is the same command');
});

t.test("features: runtime-spec's features document", async (t) => {
  const r = await runCmd([OCI_BIN, 'features']);
  t.equal(r.code, 0, r.err);
  const f = JSON.parse(r.out);
  t.equal(f.ociVersionMin, '1.0.0');
  t.equal(f.ociVersionMax, '1.2.0');
  t.same(
    f.hooks,
    ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
    'the hooks it runs: all six',
  );
  t.ok(
    ['bind', 'rbind', 'ro', 'nosuid', 'rshared'].every((o) => f.mountOptions.includes(o)),
    'mount options',
  );
  t.same(f.linux.namespaces, ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts']);
  t.ok(f.linux.capabilities.includes('CAP_SYS_ADMIN'), 'capabilities by name');
  t.equal(f.linux.seccomp.enabled, true);
  t.same(f.linux.seccomp.actions, [...SECCOMP_ACTIONS], 'the actions lib/seccomp validates');
  t.same(f.linux.seccomp.operators, [...SECCOMP_OPERATORS]);
  t.same(f.linux.seccomp.archs, [...SECCOMP_ARCHES]);
  t.ok(f.linux.seccomp.supportedFlags.includes('SECCOMP_FILTER_FLAG_LOG'), 'flags the kernel has');
  t.same(f.linux.apparmor, { enabled: false });
  t.same(f.linux.selinux, { enabled: false });
  t.same(f.linux.cgroup.v2, true, 'lib/cgroups manages v1 and v2');
});

t.test('spec: a default config.json in the bundle directory, never over an existing one', async (t) => {
  const dir = scratch(t);
  const r = await runCmd([OCI_BIN, 'spec', '--bundle', dir]);
  t.equal(r.code, 0, r.err);
  const s = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  t.equal(s.root.path, 'rootfs');
  t.same(s.process.args, ['sh']);
  t.equal(s.process.terminal, true);
  if (uid === 0)
    t.notOk(
      s.linux.namespaces.some((n: { type: string }) => n.type === 'user'),
      'rootful: no user namespace',
    );
  const again = await runCmd([OCI_BIN, 'spec', '--bundle', dir]);
  t.equal(again.code, 1);
  t.match(again.err, /config\.json exists\. Remove it first/);
  const rl = scratch(t);
  const r2 = await runCmd([OCI_BIN, 'spec', '--rootless'], { cwd: rl });
  t.equal(r2.code, 0, r2.err);
  const s2 = JSON.parse(readFileSync(join(rl, 'config.json'), 'utf8'));
  t.same(s2.linux.uidMappings, [{ containerID: 0, hostID: uid, size: 1 }], '--rootless maps the caller to root');
  t.ok(s2.linux.namespaces.some((n: { type: string }) => n.type === 'user'));
});

t.test(
  'a missing container: "container does not exist", exit 1, for every verb; delete --force is no error',
  async (t) => {
    const root = scratch(t);
    for (const verb of [['state'], ['start'], ['kill'], ['delete'], ['ps'], ['exec', '--cwd', '/']]) {
      const r = await oci(root, ...verb, 'ghost', ...(verb[0] === 'exec' ? ['true'] : []));
      t.equal(r.code, 1, `${verb[0]}: exit 1`);
      t.match(r.err, /^time="[^"]+" level=error msg="container does not exist: ghost"\n$/, `${verb[0]}: runc's line`);
    }
    const f = await oci(root, 'delete', '--force', 'ghost');
    t.equal(f.code, 0, f.err);
    t.same(readdirSync(root), [], 'nothing made in --root');
  },
);

t.test("--log FILE --log-format json: the shim's JSON lines in the file, the bare message on stderr", async (t) => {
  const dir = scratch(t);
  const log = join(dir, 'log.json');
  writeFileSync(log, '{"level":"info","msg":"earlier","time":"2020-01-01T00:00:00Z"}\n');
  const r = await runCmd([OCI_BIN, '--root', dir, '--log', log, '--log-format', 'json', 'kill', 'ghost', 'KILL']);
  t.equal(r.code, 1);
  t.equal(r.err, 'container does not exist: ghost\n');
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  t.equal(lines.length, 2, 'appended');
  const last = JSON.parse(lines[1]!);
  t.same(Object.keys(last), ['level', 'msg', 'time']);
  t.equal(last.level, 'error');
  t.equal(last.msg, 'container does not exist: ghost');
  t.ok(Date.now() - Date.parse(last.time) < 60_000, 'a time in RFC 3339');
  const text = await runCmd([OCI_BIN, '--root', dir, '--log-format', 'text', 'state', 'ghost']);
  t.match(text.err, /^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ" level=error msg="container does not exist: ghost"\n$/);
  const bad = await runCmd([OCI_BIN, '--log-format', 'xml', 'state', 'x']);
  t.not(bad.code, 0);
  t.match(bad.err, /--log-format.*xml.*(text|json)/s, 'a wrong format is named');
});

t.test('refusals name the option: --no-pivot, pause/resume of no container, a bad id, a bad signal', async (t) => {
  const root = scratch(t);
  const np = await oci(root, 'create', '--no-pivot', '--bundle', root, 'x');
  t.equal(np.code, 1);
  t.match(np.err, /--no-pivot is not supported/);
  for (const verb of ['pause', 'resume']) {
    const r = await oci(root, verb, 'x');
    t.equal(r.code, 1);
    t.match(r.err, /container does not exist: x/);
  }
  const id = await oci(root, 'state', '../etc');
  t.equal(id.code, 1);
  t.match(id.err, /invalid container id `\.\.\/etc`/);
  const sig = await oci(root, 'kill', 'x', 'NOPE');
  t.equal(sig.code, 1);
  t.match(sig.err, /unknown signal `NOPE`/);
  const missing = await oci(root, 'create', '--bundle', join(root, 'nope'), 'x');
  t.equal(missing.code, 1);
  t.match(missing.err, /cannot read .*nope\/config\.json: ENOENT/, 'the bundle file is named');
  t.notOk(existsSync(join(root, 'x')), 'a failed create leaves nothing');
  t.same(readdirSync(root), []);
});

t.test('global options runc clients pass are accepted', async (t) => {
  const root = scratch(t);
  const r = await runCmd([OCI_BIN, '--root', root, '--systemd-cgroup', '--rootless', 'true', '--debug', 'list', '-q']);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, '');
  const j = await oci(root, 'list', '--format', 'json');
  t.same(JSON.parse(j.out), []);
});
