// test-runner: serial — compares the whole host mount table before and after
// Each Apptainer option of exec(), checked from inside a real container.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, SpecError } from '../../lib/index.js';
import { compileLaunch } from '../../lib/internal.js';
import { gid, hostMounts, isRoot, scratch, uid } from '../helpers/env.js';
import { makeSandbox, sh } from './fixtures.js';

let image: string;
let home: string;
let cwd: string;
let hostEnv: NodeJS.ProcessEnv;
t.before(() => {
  image = makeSandbox(t);
  const d = scratch(t, 'nodularity-host-');
  home = join(d, 'home');
  cwd = join(d, 'work');
  mkdirSync(home);
  mkdirSync(cwd);
  writeFileSync(join(home, 'in-home'), 'h');
  writeFileSync(join(cwd, 'in-cwd'), 'c');
  hostEnv = { HOME: home, TERM: 'xterm-test', HOST_ONLY: 'from-host', PATH: '/host/bin', LD_LIBRARY_PATH: '/host/lib' };
});
const base = () => ({ hostEnv, hostCwd: cwd });

t.test(
  'defaults: the caller, home, cwd and /tmp from the host, read-only root, /etc from the caller and host',
  async (t) => {
    const marker = join('/tmp', `nodularity-tmp-marker-${process.pid}`);
    writeFileSync(marker, 'x');
    t.teardown(() => execFileSync('rm', ['-f', marker]));
    const before = readdirSync(image).sort();
    const r = await sh(
      image,
      `id -u; id -g; echo $HOME; pwd; ls $HOME; ls; test -e ${marker} && echo tmp-shared; touch /x 2>/dev/null || echo root-ro;
    grep "^[^:]*:x:${uid}:" /etc/passwd | cut -d: -f3,4,6; grep -c . /etc/group >/dev/null && echo group-ok; cat /etc/resolv.conf | md5sum; echo $HOST_ONLY $TERM $PATH $LD_LIBRARY_PATH`,
      base(),
    );
    t.equal(r.code, 0, r.err);
    const hostResolv = execFileSync('md5sum', ['/etc/resolv.conf'], { encoding: 'utf8' }).split(' ')[0];
    t.same(r.out.trim().split('\n'), [
      String(uid),
      String(gid),
      home,
      cwd,
      'in-home',
      'in-cwd',
      'tmp-shared',
      'root-ro',
      `${uid}:${gid}:${home}`,
      'group-ok',
      `${hostResolv}  -`,
      'from-host xterm-test /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /.singularity.d/libs',
    ]);
    t.same(readdirSync(image).sort(), before, 'nothing was created in the image (mount points went into an overlay)');
  },
);

t.test('contain: fresh /tmp, /var/tmp and home, cwd is home; containall also cleans the environment', async (t) => {
  // The home dir lives under the host's /tmp here: its mount point is the only entry of the fresh /tmp.
  const top = home.split('/')[2];
  const r = await sh(
    image,
    'pwd; ls -A $HOME | wc -l; ls -A /tmp; ls -A /var/tmp | wc -l; touch /tmp/w /var/tmp/w && echo writable; echo ${HOST_ONLY:-none}',
    { ...base(), contain: true },
  );
  t.equal(r.code, 0, r.err);
  t.same(
    r.out
      .trim()
      .split('\n')
      .map((s) => s.trim()),
    [home, '0', top, '0', 'writable', 'from-host'],
  );
  const all = await sh(image, 'echo ${HOST_ONLY:-none} $TERM; ls -A /tmp', { ...base(), containall: true });
  t.same(
    all.out
      .trim()
      .split('\n')
      .map((s) => s.trim()),
    ['none xterm-test', top],
    'containall = contain + cleanenv; TERM still passes',
  );
});

t.test('cleanenv drops the host environment, keeps TERM', async (t) => {
  const r = await sh(image, 'echo ${HOST_ONLY:-none} $TERM $HOME', { ...base(), cleanenv: true });
  t.equal(r.out.trim(), `none xterm-test ${home}`);
});

t.test('env, envFile and APPTAINERENV_/SINGULARITYENV_: --env wins, then the file, then the prefixes', async (t) => {
  const d = scratch(t);
  const file = join(d, 'vars.env');
  writeFileSync(file, '# a comment\nexport FROM_FILE="file value"\nBOTH=file\n');
  const r = await sh(image, 'echo "$A|$B|$C|$FROM_FILE|$BOTH|$PATH"', {
    ...base(),
    envFile: file,
    env: ['BOTH=env', 'A=env'],
    hostEnv: {
      ...hostEnv,
      APPTAINERENV_A: 'apptainer',
      APPTAINERENV_B: 'apptainer',
      SINGULARITYENV_B: 'singularity',
      SINGULARITYENV_C: 'singularity',
      APPTAINERENV_PREPEND_PATH: '/pre',
    },
  });
  t.equal(
    r.out.trim(),
    'env|apptainer|singularity|file value|env|/pre:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  );
  await t.rejects(
    sh(image, 'true', { ...base(), envFile: join(d, 'missing.env') }),
    /--env-file: cannot read .*missing\.env: ENOENT/,
  );
  await t.rejects(sh(image, 'true', { ...base(), env: ['NOEQUALS'] }), /--env: "NOEQUALS": expected NAME=VALUE/);
});

t.test('home src:dst, noHome, pwd', async (t) => {
  const r = await sh(image, 'echo $HOME; ls /home/job', { ...base(), home: `${home}:/home/job` });
  t.same(r.out.trim().split('\n'), ['/home/job', 'in-home']);
  const n = await sh(image, 'echo $HOME; test -e $HOME/in-home || echo not-bound', {
    ...base(),
    contain: true,
    noHome: true,
  });
  t.same(
    n.out.trim().split('\n'),
    [home, 'not-bound'],
    "with noHome (and contain, so /tmp is not the host's) home is not there",
  );
  const p = await sh(image, 'pwd', { ...base(), pwd: '/opt/somewhere' });
  t.equal(p.out.trim(), home, 'a missing --pwd is not created: home instead, as Apptainer');
  t.same((p.container as unknown as { warnings: string[] }).warnings, [
    `--pwd /opt/somewhere is not a directory in the container: starting in ${home}`,
  ]);
  t.notOk(existsSync(join(image, 'opt')));
});

t.test('workdir backs /tmp and /var/tmp with contain; scratch dirs are fresh', async (t) => {
  const w = scratch(t);
  const r = await sh(
    image,
    'echo a > /tmp/from-inside; echo b > /var/tmp/v; echo c > /scratch1/s; ls -A /scratch2 | wc -l',
    { ...base(), contain: true, workdir: w, scratch: ['/scratch1', '/scratch2'] },
  );
  t.equal(r.code, 0, r.err);
  t.equal(readFileSync(join(w, 'tmp', 'from-inside'), 'utf8'), 'a\n');
  t.equal(readFileSync(join(w, 'var_tmp', 'v'), 'utf8'), 'b\n');
  t.equal(readFileSync(join(w, 'scratch', '_scratch1', 's'), 'utf8'), 'c\n');
  const tm = await sh(
    image,
    'echo x > /scratch1/s && echo ok; grep " /scratch1 " /proc/self/mountinfo | grep -c tmpfs',
    { ...base(), scratch: ['/scratch1'] },
  );
  t.same(tm.out.trim().split('\n'), ['ok', '1'], 'without workdir a scratch dir is a tmpfs');
  await t.rejects(sh(image, 'true', { ...base(), workdir: join(w, 'nope') }), /--workdir: .*nope does not exist/);
});

t.test('binds: ro and rw, comma lists, --mount, a target missing in the image', async (t) => {
  const d = scratch(t);
  mkdirSync(join(d, 'ro'));
  mkdirSync(join(d, 'rw'));
  writeFileSync(join(d, 'ro', 'f'), 'ro-file\n');
  const r = await sh(
    image,
    'cat /data/ro/f; touch /data/ro/x 2>/dev/null || echo ro-refused; touch /data/rw/y && echo rw-ok; ls /m',
    {
      ...base(),
      binds: [`${d}/ro:/data/ro:ro,${d}/rw:/data/rw`],
      mounts: [`type=bind,source=${d}/ro,destination=/m,ro`],
    },
  );
  t.equal(r.code, 0, r.err);
  t.same(r.out.trim().split('\n'), ['ro-file', 'ro-refused', 'rw-ok', 'f']);
  t.ok(existsSync(join(d, 'rw', 'y')));
  t.notOk(existsSync(join(image, 'data')), '/data made in the overlay, not in the image');
  await t.rejects(
    sh(image, 'true', { ...base(), binds: [`${d}/absent:/x`] }),
    /--bind: bind source .*absent does not exist \(ENOENT\)/,
  );
  await t.rejects(
    sh(image, 'true', { ...base(), binds: ['/cvmfs/nosuch.example.org'] }),
    /nosuch\.example\.org.*CernVM-FS/,
  );
  // A relative source is the working directory's, as in Apptainer.
  await t.rejects(
    sh(image, 'true', { ...base(), binds: ['relative:/x'] }),
    /--bind: bind source \/\S*\/relative does not exist/,
  );
  await t.rejects(sh(image, 'true', { ...base(), binds: [`${d}:/x:rx`] }), /unknown bind option "rx"/);
  await t.rejects(
    sh(image, 'true', { ...base(), mounts: ['type=tmpfs,destination=/x'] }),
    /--mount\[0\]: .*only type=bind/,
  );
});

t.test('namespaces: network none, pid, ipc, hostname, userns; init off', async (t) => {
  const r = await sh(
    image,
    'ls /sys/class/net | tr "\\n" " "; echo; echo $$; cat /proc/1/comm; readlink /proc/self/ns/ipc; hostname; cat /proc/self/uid_map | wc -l',
    { ...base(), network: 'none', pid: true, ipc: true, userns: true, hostname: 'job-42' },
  );
  t.equal(r.code, 0, r.err);
  const [net, pid, comm, ipc, host, maps] = r.out.trim().split('\n');
  t.equal(net.trim(), 'lo', 'only lo');
  t.ok(Number(pid) > 1 && Number(pid) < 10, 'the payload runs under an init in a new PID namespace');
  t.not(comm, 'node');
  t.not(ipc, readlinkSync('/proc/self/ns/ipc'), 'a new IPC namespace');
  t.equal(host, 'job-42');
  t.equal(maps.trim(), '1', 'a user namespace with one mapped id');
  const n = await sh(image, 'echo $$', { ...base(), init: false });
  t.equal(n.out.trim(), '1', 'without init the payload is PID 1');
  await t.rejects(sh(image, 'true', { ...base(), network: 'bridge' as 'none' }), /--network: must be host or none/);
});

t.test('fakeroot: root inside, home at /root', async (t) => {
  const r = await sh(image, 'id -u; id -g; echo $HOME; grep "^root:" /etc/passwd | cut -d: -f1,3,6', {
    ...base(),
    fakeroot: true,
  });
  t.equal(r.code, 0, r.err);
  t.same(r.out.trim().split('\n'), ['0', '0', '/root', 'root:0:/root']);
});

t.test('writableTmpfs: the root takes writes, the image is untouched', async (t) => {
  const r = await sh(image, 'echo w > /new-file && cat /new-file; rm /bin/true && echo removed', {
    ...base(),
    writableTmpfs: true,
  });
  t.equal(r.code, 0, r.err);
  t.same(r.out.trim().split('\n'), ['w', 'removed']);
  t.notOk(existsSync(join(image, 'new-file')));
  t.ok(existsSync(join(image, 'bin', 'true')) || existsSync(join(image, 'bin', 'busybox')));
});

t.test('bad input names the option and leaves no mount and no session file behind', async (t) => {
  const mounts = hostMounts();
  const sessions = () => readdirSync('/tmp').filter((f) => f.startsWith('nodularity-session-')).length;
  const before = sessions();
  await t.rejects(exec(join(image, 'nope'), ['true']), /image: image .*nope does not exist/);
  await t.rejects(exec(join(image, 'bin', 'busybox'), ['true']), /SIF and other image files are not supported/);
  await t.rejects(exec(image, []), /command: exec needs a command/);
  await t.rejects(exec(image, ['/no/such/binary'], base()), /executable "\/no\/such\/binary" not found in the image/);
  await t.rejects(exec(image, ['true'], { ...base(), pwd: 'relative' }), SpecError);
  t.equal(sessions(), before, 'no session files left');
  t.equal(hostMounts(), mounts, 'host mount table unchanged');
});

t.test('compileLaunch: the spec is the single model (read-only root, overlay only when needed)', async (t) => {
  const c = await compileLaunch(image, ['true'], { ...base(), binds: [`${home}:/srv/missing`] }, 'exec');
  t.teardown(() => c.dispose());
  t.equal(c.spec.root!.readonly, true);
  t.equal(c.spawnOptions.rootOverlay, 'auto');
  t.ok(
    c.spec.mounts!.some((m) => m.destination === '/srv/missing' && m.source === home && m.options!.includes('rslave')),
  );
  t.ok(c.spec.mounts!.some((m) => m.destination === '/etc/passwd'));
  t.equal(isRoot ? c.spec.process!.user.uid : uid, uid);
});
