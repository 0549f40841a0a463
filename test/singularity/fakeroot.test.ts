// --fakeroot as Apptainer's (issue 13, item 4), through the CLI installed as
// `apptainer`, in a real Debian image (debootstrap minbase, built once per
// machine by scripts/debian-image.sh and cached in /var/tmp): uid 0 in a user
// namespace mapping the caller's /etc/subuid and /etc/subgid ranges, with the
// namespace's capabilities, so that dpkg -i, apt-get install ./x.deb, chown
// and su work under --writable-tmpfs, and the image on the host is untouched.
// Without ranges, Apptainer's root-mapped namespace (uid 0 only), said as INFO.
//
// The unprivileged pass uses the copy of the image made for the test user
// (ids shifted into its subuid range, as a rootless unpack leaves them). The
// root pass maps ids 1..65535 to themselves through a subuid file of its own
// (NODULARITY_SUBUID_FILE): root has no /etc/subuid entry on a CI machine,
// and the base image's files are owned by the host's ids.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { userInfo } from 'node:os';
import { haveCommand, isRoot, scratch } from '../helpers/env.js';
import { installAs, run } from './apptainer-cli.js';
import { debianImage, fakerootIdEnv, makeDeb, treeState } from './debian.js';

let image: string;
let cli: string;
let job: string;
let idEnv: NodeJS.ProcessEnv;

t.before(() => {
  if (!haveCommand('dpkg-deb')) throw new Error('dpkg-deb is needed (Debian package dpkg)');
  image = debianImage();
  cli = installAs(t, 'apptainer');
  job = scratch(t, 'nodularity-fakeroot-');
  chmodSync(job, 0o755);
  makeDeb(job, 'nodularity-hello');
  makeDeb(job, 'nodularity-apt');
  idEnv = fakerootIdEnv(job);
});

t.test('dpkg -i, apt-get install ./x.deb, chown, su and setpriv as fakeroot; the image untouched', async (t) => {
  const before = treeState(image);
  const script = [
    'set -e',
    'id -u',
    'dpkg -i /job/nodularity-hello.deb >/dev/null 2>&1',
    'nodularity-hello',
    'apt-get install -y -q /job/nodularity-apt.deb >/dev/null 2>&1',
    'nodularity-apt',
    'dpkg-query -W -f "\\${Status}\\n" nodularity-hello',
    'echo x > /var/tmp/f; chown 42:43 /var/tmp/f; stat -c %u:%g /var/tmp/f',
    'setpriv --reuid 1000 --regid 1000 --clear-groups id -u',
    'su -s /bin/sh nobody -c "id -u"',
    'awk \'$1 == "CapEff:" { print ($2 == "0000000000000000" ? "no caps" : "caps") }\' /proc/self/status',
  ].join('\n');
  const r = run(
    cli,
    ['exec', '--fakeroot', '--writable-tmpfs', '-C', '-B', `${job}:/job`, image, '/bin/sh', '-c', script],
    idEnv,
  );
  t.equal(r.code, 0, r.err);
  t.equal(
    r.out,
    [
      '0',
      'nodularity-hello installed',
      'nodularity-apt installed',
      'install ok installed',
      '42:43',
      '1000',
      '65534',
      'caps',
      '',
    ].join('\n'),
  );
  t.notMatch(r.err, /INFO: .*root-mapped/, 'the ranges were used');
  t.equal(treeState(image), before, 'the image on the host is unchanged (owners, modes, sizes, times)');
});

t.test("the id maps: 0 -> the caller, 1..N -> the caller's range", async (t) => {
  const r = run(cli, ['exec', '--fakeroot', image, '/bin/cat', '/proc/self/uid_map', '/proc/self/gid_map'], idEnv);
  t.equal(r.code, 0, r.err);
  const lines = r.out
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).map(Number));
  const me = process.geteuid!(),
    myGid = process.getegid!();
  const range = isRoot
    ? [1, 65535]
    : (() => {
        const line = execFileSync('sh', ['-c', `grep -m1 -E "^(${userInfo().username}|${me}):" /etc/subuid`], {
          encoding: 'utf8',
        })
          .trim()
          .split(':');
        return [Number(line[1]), Number(line[2])];
      })();
  t.same(lines, [
    [0, me, 1],
    [1, range[0], range[1]],
    [0, myGid, 1],
    [1, isRoot ? 1 : lines[3]![1], isRoot ? 65535 : lines[3]![2]],
  ]);
});

t.test("no ranges: Apptainer's root-mapped namespace, said as INFO; chown to another id fails", async (t) => {
  const r = run(
    cli,
    [
      'exec',
      '--fakeroot',
      '--writable-tmpfs',
      image,
      '/bin/sh',
      '-c',
      'id -u; cat /proc/self/uid_map; touch /f; chown 42 /f 2>/dev/null || echo "chown refused"',
    ],
    { NODULARITY_SUBUID_FILE: '/dev/null', NODULARITY_SUBGID_FILE: '/dev/null' },
  );
  t.equal(r.code, 0, r.err);
  t.match(r.out, new RegExp(`^0\\n\\s*0\\s+${process.geteuid!()}\\s+1\\nchown refused\\n$`));
  t.match(r.err, /^INFO: {4}User not listed in \/dev\/null, using a root-mapped namespace/m);
});

t.test('--writable-tmpfs-size: the writable layer holds that much, default 64 MiB', async (t) => {
  const write = (mib: number, extra: string[]) =>
    run(cli, [
      'exec',
      '--writable-tmpfs',
      ...extra,
      image,
      '/bin/sh',
      '-c',
      `dd if=/dev/zero of=/big bs=1M count=${mib} 2>&1 >/dev/null | grep -o "No space left" || echo fits`,
    ]);
  t.equal(write(80, []).out, 'No space left\n', 'default: 80 MiB do not fit');
  t.equal(write(48, []).out, 'fits\n', 'default: 48 MiB fit');
  t.equal(write(80, ['--writable-tmpfs-size', '128']).out, 'fits\n', '128 (MiB) holds 80 MiB');
  t.equal(write(16, ['--writable-tmpfs-size', '8m']).out, 'No space left\n', '8m does not hold 16 MiB');
  const bad = run(cli, ['exec', '--writable-tmpfs', '--writable-tmpfs-size', 'lots', image, '/bin/true']);
  t.equal(bad.code, 255);
  t.match(bad.err, /^FATAL: {3}--writable-tmpfs-size: "lots": expected a size in MiB/);
});
